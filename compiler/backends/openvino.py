"""The OpenVINO CPU backend: an OpenVINO compiled model, exported into the engine file behind a header of ours.

OpenVINO is the CPU counterpart of TensorRT: ``Core().read_model`` reads the final ONNX (fp32, fp16, or the
INT8 Q/DQ graph, which its CPU plugin runs as int8), ``compile_model`` tunes it for this CPU, and
``export_model`` writes the compiled model as a blob that loads back without compiling again. The precision is
never left to OpenVINO: ``INFERENCE_PRECISION_HINT`` is set to f32 unless the settings ask for bf16 (its CPU
plugin would otherwise pick bf16 by itself on CPUs that have it), and the precision it really runs in
(``compiled.get_property``) goes into the summary, since a CPU without bf16 runs a bf16 hint in f32.

The engine file (format ``openvino-blob``, recognised by content, see ``artifacts.detect_format``)::

    MAGIC (8 bytes) | header length (4 bytes, little-endian) | header (UTF-8 JSON) | OpenVINO's exported blob

The header records the format version, the OpenVINO version and CPU ISA the blob was compiled for (a blob
imports only into the OpenVINO version that wrote it), the precision hint, mode and threads, the IO specs and
the interface change of the ONNX model it came from (``tf2trt.interface``), and the blob's size, so a truncated
file is refused before OpenVINO reads it. OpenVINO runs dynamic shapes, and its blob keeps them: no reshape.
"""
from __future__ import annotations

import functools
import io
import json
import shutil
import struct
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np

from .. import limits
from ..artifacts import OPENVINO_BLOB, OPENVINO_MAGIC, EngineArtifact, TensorSpec, atomic_output, scratch_dir
from ..common import io_change
from ..common.io_change import Interface
from ..config import INFERENCE_PRECISIONS, BuildConfig
from ..errors import BuildError, RunError, ValidationError
from ..sandbox import check_onnx_file
from .onnxruntime import VNNI_FLAGS, cpu_flags

FORMAT_VERSION = 1  # of our header; a reader refuses a later one
DEVICE = "CPU"
INSTALL_HINT = "pip install openvino (wheels exist for x86-64 and arm64 machines), or use --backend onnxruntime"
_LENGTH = struct.Struct("<I")
MODES = {"latency": "LATENCY", "throughput": "THROUGHPUT"}  # BuildConfig.cpu_mode -> PERFORMANCE_HINT
REBUILD = "rebuild the engine here with --backend openvino (a blob is tied to the OpenVINO version and CPU ISA " \
          "it was compiled for)"


@functools.lru_cache(maxsize=1)
def availability() -> tuple[bool, str]:
    """Whether OpenVINO's CPU plugin runs here (asked once per process: every stage resolves the backend)."""
    try:
        import openvino
    except ImportError as e:
        return False, f"openvino is not installed ({e})"
    try:
        devices = openvino.Core().available_devices
    except Exception as e:  # OpenVINO raises RuntimeError for a plugin it cannot load
        return False, f"OpenVINO cannot list its devices ({limits.first_line(e, 200)})"
    if DEVICE not in devices:
        return False, f"OpenVINO's CPU plugin does not support this CPU (devices: {', '.join(devices) or 'none'})"
    return True, f"OpenVINO {version()} on CPU"


def version() -> str:
    """OpenVINO's release ('2026.4.1'): what its CPU plugin checks before importing a blob."""
    import openvino

    return openvino.__version__.split("-")[0]


def _type_name(value) -> str:
    """'f32', 'bf16', ... for an OpenVINO element type (properties return ``Type`` objects)."""
    return value.get_type_name() if hasattr(value, "get_type_name") else str(value).lower()


def _port_spec(port, name: str) -> TensorSpec:
    shape = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
    return TensorSpec(name, np.dtype(port.get_element_type().to_dtype()).name, shape)


def _onnx_io(onnx_path: Path) -> tuple[list[str], list[str], Interface]:
    """The ONNX model's input and output names (OpenVINO keeps them as tensor names) and its interface change."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    const = {i.name for i in model.graph.initializer}
    inputs = [i.name for i in model.graph.input if i.name not in const]
    return inputs, [o.name for o in model.graph.output], io_change.read(model)


# On x86 CPUs without VNNI (AVX2 only, e.g. an AMD EPYC of the Zen 2/3 generations) OpenVINO's low-precision
# transformations run an int8 Q/DQ graph on u8×s8 kernels that differ from the graph's own semantics beyond the
# int8 tolerance: up to 0.55 (depth_to_space), 0.38 (keras_argmax logits) on 5 of the 17 fixtures, found by the
# engine seam. With them off (the CPU plugin's LP_TRANSFORMS_MODE, not in its public property list, so pinned by
# a test) OpenVINO computes the dequantized graph in f32, which matches it to 3e-8: exact, not faster. CPUs with
# VNNI (AVX512-VNNI, AVX-VNNI, AMX) keep the int8 kernels. The same trade as onnxruntime's QDQS8ToU8Transformer.
NO_VNNI_PROPERTIES = {"LP_TRANSFORMS_MODE": "NO"}


def int8_kernels(flags: frozenset[str] | None = None) -> bool:
    """Whether OpenVINO may run Q/DQ graphs on int8 kernels here (see above); ``flags`` default to /proc/cpuinfo's,
    and unreadable flags count as no VNNI: exact beats fast."""
    if flags is None:
        try:
            flags = cpu_flags(Path("/proc/cpuinfo").read_text())
        except OSError:
            flags = frozenset()
    return bool(flags & VNNI_FLAGS)


def properties(precision: str, mode: str, threads: int) -> dict:
    """The CPU plugin's settings, every one explicit. Import needs them again: a blob keeps the compiled graph
    (its precision included) but not the hint or threads, which an import without them resets to defaults."""
    return {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": MODES[mode], "INFERENCE_NUM_THREADS": threads}


def _compile(onnx_path: Path, props: dict, names: tuple[list[str], list[str]], blob_path: Path) -> dict:
    """Compile in this process (the build's child, see ``_compile_bounded``): write the blob to ``blob_path`` and
    return what the header and summary need of the compiled model."""
    import openvino

    core = openvino.Core()
    compiled = core.compile_model(core.read_model(str(onnx_path)), DEVICE, props)
    stream = io.BytesIO()  # export_model takes only a BytesIO
    compiled.export_model(stream)
    blob_path.write_bytes(stream.getbuffer())
    return {"runtime_requirements": str(compiled.get_property("RUNTIME_REQUIREMENTS")),
            "inference_precision": _type_name(compiled.get_property("INFERENCE_PRECISION_HINT")),
            "performance_hint": str(compiled.get_property("PERFORMANCE_HINT")),
            "threads_used": int(compiled.get_property("INFERENCE_NUM_THREADS")),
            "streams": int(compiled.get_property("NUM_STREAMS")),
            "inputs": [_port_spec(compiled.input(n), n).to_json() for n in names[0]],
            "outputs": [_port_spec(compiled.output(n), n).to_json() for n in names[1]],
            "layer_precisions": layer_precisions(compiled), "cpu": _cpu_name(core)}


def _compile_bounded(onnx_path: Path, cfg: BuildConfig, names, blob_path: Path) -> dict:
    """``_compile`` in a child process, bounded by the evaluation budget (--validate-timeout): OpenVINO evaluates
    constant subgraphs while it compiles (an endless constant Loop never returns, a huge ConstantOfShape is
    materialized), and only a process can be stopped from outside. Failures are one-line BuildErrors."""
    props = {**properties(cfg.inference_precision, cfg.cpu_mode, cfg.cpu_threads),
             **({} if int8_kernels() else NO_VNNI_PROPERTIES)}  # the blob keeps the graph this compiles
    request = json.dumps({"onnx": str(onnx_path), "blob": str(blob_path), "properties": props, "names": names})
    seconds = limits.budget()
    try:
        done = subprocess.run([sys.executable, "-m", __name__], input=request, capture_output=True, text=True,
                              timeout=seconds)
    except subprocess.TimeoutExpired:
        raise BuildError(f"OpenVINO's compile ran longer than {seconds:g} s (--validate-timeout) and was stopped "
                         "(it evaluates the graph's constant parts, e.g. a Loop over constants)",
                         limits.TIMEOUT_FIX) from None
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode != 0 or not lines:
        text = done.stderr.strip() or f"exit status {done.returncode}"
        if done.returncode < 0 or any(s in text for s in ("bad_alloc", "MemoryError", "cpu_memory.cpp")):
            raise BuildError(f"OpenVINO ran out of memory compiling the model ({text.splitlines()[-1][:200]})",
                             limits.MEMORY_FIX)
        raise BuildError(f"OpenVINO cannot build the model ({text.splitlines()[-1][:300]})",
                         "run with --check-each-pass to find the pass that broke it, or use --backend onnxruntime")
    return json.loads(lines[-1])


def _child() -> int:
    """The build child: a request (JSON) on stdin, the compiled model's summary (JSON) on stdout."""
    request = json.loads(sys.stdin.read())
    try:
        info = _compile(Path(request["onnx"]), request["properties"], tuple(request["names"]), Path(request["blob"]))
    except Exception as e:  # OpenVINO's RuntimeError/OpConversionFailure: its informative line goes to the parent
        print(f"{type(e).__name__}: {_cause(e)}", file=sys.stderr)
        return 1
    print(json.dumps(info))
    return 0


def _cause(e: BaseException) -> str:
    """The informative line of an OpenVINO exception (it leads with 'Exception from src/...cpp:N:' lines)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip() and not ln.startswith("Exception from")]
    return (lines[0] if lines else type(e).__name__)[:300]


def _header(info: dict, cfg: BuildConfig, interface: Interface, blob_bytes: int) -> dict:
    return {"format_version": FORMAT_VERSION, "openvino": version(), "device": DEVICE,
            **{k: info[k] for k in ("runtime_requirements", "inference_precision", "performance_hint",
                                    "threads_used", "streams", "inputs", "outputs")},
            "precision_hint": cfg.inference_precision, "mode": cfg.cpu_mode, "threads": cfg.cpu_threads,
            "interface": interface.to_json(), "blob_bytes": blob_bytes}


def build(onnx_path: Path, out: Path, cfg: BuildConfig = BuildConfig()) -> EngineArtifact:
    out = Path(out)
    check_onnx_file(onnx_path)  # OpenVINO reads external data from beside the file
    in_names, out_names, interface = _onnx_io(Path(onnx_path))
    with scratch_dir("tf2trt-openvino-") as tmp:
        blob_path = tmp / "model.blob"
        info = _compile_bounded(Path(onnx_path).resolve(), cfg, (in_names, out_names), blob_path)
        header = _header(info, cfg, interface, blob_path.stat().st_size)
        raw = json.dumps(header, sort_keys=True).encode()
        with atomic_output(out, "engine") as part, open(part, "wb") as f, open(blob_path, "rb") as blob:
            f.write(OPENVINO_MAGIC + _LENGTH.pack(len(raw)) + raw)
            shutil.copyfileobj(blob, f)
    summary = {k: header[k] for k in ("openvino", "device", "runtime_requirements", "precision_hint",
                                      "inference_precision", "mode", "performance_hint", "threads", "threads_used",
                                      "streams")}
    return EngineArtifact(path=out, backend="openvino", format=OPENVINO_BLOB,
                          summary={"bytes": out.stat().st_size, **summary, "shapes": "dynamic dimensions kept "
                                   "(OpenVINO runs and exports dynamic shapes)", "cpu": info["cpu"],
                                   "layer_precisions": info["layer_precisions"],
                                   "int8_kernels": int8_kernels() or "off: this CPU has no VNNI, where OpenVINO's "
                                   "int8 kernels differ from the Q/DQ graph; an int8 graph runs dequantized in f32",
                                   "io": [{"mode": mode, **t, "shape": [-1 if d is None else d for d in t["shape"]]}
                                          for mode in ("input", "output") for t in header[mode + "s"]]})


def layer_precisions(compiled) -> dict[str, int]:
    """How many of the compiled model's layers (constants, inputs and outputs left out) run in each precision:
    what OpenVINO really executes (an int8 Q/DQ graph's convolutions run in u8/i8, a bf16 hint's in bf16)."""
    counts: dict[str, int] = {}
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        if info["layerType"].astype(str) in ("Const", "Input", "Output"):
            continue
        precision = info["runtimePrecision"].astype(str)
        counts[precision] = counts.get(precision, 0) + 1
    return dict(sorted(counts.items()))


def _cpu_name(core) -> str:
    try:
        return str(core.get_property(DEVICE, "FULL_DEVICE_NAME"))
    except Exception:  # only descriptive
        return "unknown"


def read_header(path: Path) -> tuple[dict, int]:
    """(header, offset of the blob) of an engine file of ours; RunError naming what is wrong and the fix."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(len(OPENVINO_MAGIC) + _LENGTH.size)
        if head[:len(OPENVINO_MAGIC)] != OPENVINO_MAGIC:
            raise RunError(f"'{path}' is not an OpenVINO engine of this compiler (first bytes: {head[:8]!r})",
                           "pass the file written by compile/build --backend openvino, or rebuild it")
        if len(head) < len(OPENVINO_MAGIC) + _LENGTH.size:
            raise RunError(f"OpenVINO engine '{path}' is truncated (its header is cut off)", REBUILD)
        (length,) = _LENGTH.unpack(head[len(OPENVINO_MAGIC):])
        offset = len(head) + length
        if offset > size:
            raise RunError(f"OpenVINO engine '{path}' is truncated (its header is cut off)", REBUILD)
        try:
            header = json.loads(f.read(length).decode())
        except (UnicodeDecodeError, ValueError) as e:
            raise RunError(f"OpenVINO engine '{path}' has an unreadable header ({e})", REBUILD) from None
    _check_header(path, header, size - offset)
    return header, offset


def _check_header(path: Path, header, blob_bytes: int) -> None:
    if not isinstance(header, dict) or not isinstance(header.get("format_version"), int):
        raise RunError(f"OpenVINO engine '{path}' has a header without a format version", REBUILD)
    if header["format_version"] > FORMAT_VERSION:
        raise RunError(f"OpenVINO engine '{path}' has header format {header['format_version']}; this "
                       f"tf2trt-compiler reads format {FORMAT_VERSION} and earlier",
                       "upgrade tf2trt-compiler, or rebuild the engine with this one")
    if header.get("blob_bytes") != blob_bytes:
        raise RunError(f"OpenVINO engine '{path}' is truncated or padded (its blob has {blob_bytes} bytes, the "
                       f"header says {header.get('blob_bytes')})", REBUILD)
    if not _fields_ok(header):
        raise RunError(f"OpenVINO engine '{path}' has a header with missing or invalid fields", REBUILD)
    if header.get("openvino") != version():
        raise RunError(f"OpenVINO engine '{path}' was compiled by OpenVINO {header.get('openvino')}; this is "
                       f"OpenVINO {version()}, which cannot import it", REBUILD)


def _fields_ok(header: dict) -> bool:
    try:
        _specs(header["inputs"]), _specs(header["outputs"]), Interface.from_json(header.get("interface") or None)
    except (KeyError, TypeError, ValueError, AttributeError):
        return False
    return (header.get("mode") in MODES and header.get("precision_hint") in INFERENCE_PRECISIONS
            and isinstance(header.get("threads"), int) and header["threads"] >= 0)


def _specs(items) -> tuple[TensorSpec, ...]:
    return tuple(TensorSpec(t["name"], t["dtype"], tuple(t["shape"])) for t in items)


class OpenVinoRunner:
    """Runs an OpenVINO engine file of ours: its blob imported into OpenVINO's CPU plugin, one infer request."""

    backend, format = "openvino", OPENVINO_BLOB

    def __init__(self, path: Path):
        import openvino

        self.path = Path(path)
        self.header, offset = read_header(self.path)
        with open(self.path, "rb") as f:
            f.seek(offset)
            blob = f.read()
        try:
            self.compiled = openvino.Core().import_model(io.BytesIO(blob), DEVICE, properties(
                self.header["precision_hint"], self.header["mode"], self.header["threads"]))
        except Exception as e:  # OpenVINO's RuntimeError: a corrupt blob, another ISA
            raise RunError(f"OpenVINO cannot import '{path}' ({_cause(e)}; compiled for "
                           f"{self.header.get('runtime_requirements')})", REBUILD) from None
        self.inputs, self.outputs = _specs(self.header["inputs"]), _specs(self.header["outputs"])
        self.interface = Interface.from_json(self.header.get("interface") or None)
        self.threads = {"inference_num_threads": int(self.compiled.get_property("INFERENCE_NUM_THREADS")),
                        "streams": int(self.compiled.get_property("NUM_STREAMS")), "mode": self.header.get("mode")}
        self._in_ports = [self.compiled.input(t.name) for t in self.inputs]
        self._ports = [self.compiled.output(t.name) for t in self.outputs]
        self._request = self.compiled.create_infer_request()
        self._tensor = openvino.Tensor

    def infer(self, feed: dict[str, np.ndarray], error: type = RunError) -> dict[str, np.ndarray]:
        missing = sorted({t.name for t in self.inputs} - set(feed))
        if missing:
            raise error(f"missing input(s) {', '.join(missing)}",
                        f"provide every input: {', '.join(t.name for t in self.inputs)}")
        what = f"'{self.path}'"
        # Tensors share the arrays' memory (OpenVINO refuses a read-only one): contiguous, writeable copies (of a
        # transposed or read-only feed) must outlive the run, so they are held here until it ends.
        arrays = [np.require(feed[t.name], requirements=("C", "W")) for t in self.inputs]
        try:  # async, so that the wait is bounded
            for array, port in zip(arrays, self._in_ports):
                self._request.set_tensor(port, self._tensor(array, shared_memory=True))
            self._request.start_async()
            finished = self._request.wait_for(max(1, int(limits.budget() * 1000)))
        except Exception as e:  # OpenVINO's RuntimeError: wrong shape or dtype, a failing kernel
            raise error(f"{what} failed in OpenVINO ({_cause(e)})",
                        "check the inputs' shapes and values; rerun with --debug for details") from e
        if not finished:
            self._request.cancel()
            raise error(str(limits.EvaluationTimeout(what, limits.budget())), limits.TIMEOUT_FIX)
        return OrderedDict((t.name, np.array(self._request.get_tensor(p).data, copy=True))
                           for t, p in zip(self.outputs, self._ports))

    def polygraphy_runner(self, name: str):
        return _polygraphy_runner(self, name)


def _polygraphy_runner(runner: OpenVinoRunner, name: str):
    """A Polygraphy runner (for a validation seam) over the runner's compiled model; its errors are seam errors."""
    from polygraphy.backend.base import BaseRunner
    from polygraphy.common import TensorMetadata

    class OpenVinoPolygraphyRunner(BaseRunner):
        def __init__(self):
            super().__init__(name=name, prefix="openvino-runner")
            self.name = name

        def activate_impl(self):
            pass

        def deactivate_impl(self):
            pass

        def get_input_metadata_impl(self):
            meta = TensorMetadata()
            for t in runner.inputs:
                meta.add(t.name, np.dtype(t.dtype), [-1 if d is None else d for d in t.shape])
            return meta

        def infer_impl(self, feed_dict):
            import time

            start = time.perf_counter()
            outputs = runner.infer(feed_dict, error=ValidationError)
            self.inference_time = time.perf_counter() - start
            return outputs

    return OpenVinoPolygraphyRunner()


class OpenVinoBackend:
    name, label = "openvino", "OpenVINO"
    formats = (OPENVINO_BLOB,)
    install_hint = INSTALL_HINT
    runs_any_shape = True  # dynamic dimensions stay dynamic in the compiled model and its blob

    def availability(self) -> tuple[bool, str]:
        return availability()

    def build(self, onnx_path: Path, out: Path, settings: BuildConfig, profiles: tuple = ()) -> EngineArtifact:
        return build(onnx_path, out, settings)  # OpenVINO runs any shape: profiles need nothing here

    def load(self, path: Path, plugins: tuple = ()) -> OpenVinoRunner:
        return OpenVinoRunner(path)


BACKEND = OpenVinoBackend()


if __name__ == "__main__":  # the build child (``_compile_bounded``)
    sys.exit(_child())
