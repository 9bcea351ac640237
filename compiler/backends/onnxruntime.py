"""The embedded default backend: a pre-optimized onnxruntime model in ORT format, and its runner.

onnxruntime applies its graph optimizations once at build time and serializes the result in its ORT flatbuffer
format, which later loads without re-optimizing. Two builds (``BuildConfig.ort_build``, ``--ort-build``):

* ``native`` (default): level ALL, i.e. EXTENDED plus the layout optimizations (the NCHWc transformer, which
  rewrites Conv/Pool chains into onnxruntime's blocked-channel ``com.microsoft.nchwc`` kernels). onnxruntime
  documents that a model saved at that level holds hardware-specific optimizations and should only run where it
  was optimized: the blocked layout has the vector width of the CPU's instruction set (8 floats with AVX2, 16 with
  AVX-512), and the nchwc ops are not part of the stable ORT-format contract. Like a TensorRT plan, the
  artifact records the onnxruntime version and the CPU features it was built for, and ``load`` refuses it
  (RunError: rebuild, or build portable) where either differs.
* ``portable``: level EXTENDED, fusions that are valid on any CPU, no hardware-specific layouts; any onnxruntime
  that reads the ORT format version runs it.

The file is recognisable from its content (``ORTM`` at bytes 4-8), so nothing mistakes it for a TensorRT plan.
``OrtRunner`` runs that artifact, and plain ONNX models as written.

Its CPU provider has no bfloat16 kernels (beyond Cast and data movement), so a bfloat16 graph is built from its
storage emulation (``compiler/common/fp16_emulation.py``: float32 arithmetic, a bfloat16 rounding of every tensor
the graph stores in bfloat16): an artifact for checking bfloat16 accuracy on any CPU, not for bfloat16 speed.

A flatbuffer cannot exceed 2 GB and the ORT format has no external data, so a model whose weights are external
data (the form of models over 1 GiB of weights, ``common.onnxutil``) is optimized at the portable level and written
as ONNX, its weights in ``<artifact name>.data`` beside it (README, "Models over 2 GB"); it runs as written.
"""
from __future__ import annotations

import json
import os
import platform
from collections import OrderedDict
from pathlib import Path

import numpy as np

from .. import limits
from ..artifacts import ONNX_MODEL, ORT_FORMAT, EngineArtifact, TensorSpec, atomic_output, companion_path, \
    detect_format
from ..common import ort
from ..common.fp16_emulation import has_bfloat16, storage_emulation
from ..config import BuildConfig
from ..errors import BuildError, RunError, ValidationError
from ..common.io_change import KEY, Interface
from ..common.onnxutil import DATA_SUFFIX
from ..sandbox import check_onnx_file, external_tensors

# onnxruntime rewrites we refuse, each with the reason. Pad_Fusion folds a
# constant-zero Pad into the next op's `pads`; for MaxPool those pads act as
# -inf, not 0, so on negative inputs (ResNetV2's stem: ZeroPadding2D then
# MaxPool, no ReLU between) the border maxima change: 3.7e-4 on a random-weight
# ResNet50V2, found by the engine seam. Without it the artifact matches the
# unoptimized graph exactly.
DISABLED_OPTIMIZERS = ("Pad_Fusion",)

# QDQS8ToU8Transformer shifts int8 weights to uint8 so that x86 kernels can use u8u8 arithmetic. On x86 CPUs
# without VNNI (AVX2 only, e.g. an AMD EPYC of the Zen 2/3 generations) the MatMulIntegerToFloat it leads to
# differs from the Q/DQ graph's own semantics by up to 1.0 on per-channel weights (the dtypes fixture at int8,
# found by the engine seam); without the shift onnxruntime keeps those MatMuls dequantized, which is exact.
# CPUs with VNNI (AVX512-VNNI, AVX-VNNI, AMX) run the fused kernels correctly, so they keep the rewrite.
NO_VNNI_DISABLED = ("QDQS8ToU8Transformer",)
VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})

# The CPU features onnxruntime's kernels (MLAS) choose code paths and the NCHWc block size by, x86 and Arm. A
# native artifact records the ones its CPU has and runs only on a CPU with the same ones: a missing feature
# means missing kernels, an added one (AVX-512) another NCHWc block size than the one baked into the artifact.
ISA_FLAGS = frozenset({"sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512dq",
                       "avx512vl", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni_int8",
                       "amx_tile", "amx_int8", "amx_bf16", "amx_fp16", "asimd", "asimddp", "asimdhp", "i8mm",
                       "bf16", "sve", "sve2"})
BUILD_KEY = "tf2trt.ort_build"  # the artifact's build record (``build_record``), in its model metadata
PORTABILITY = {
    "native": "runs only with the same onnxruntime version on a CPU with the same instruction-set features "
              "(rebuild elsewhere, or build with --ort-build portable)",
    "portable": "runs on any CPU, with any onnxruntime that reads its ORT format version",
}
# onnxruntime does not turn our Q/DQ graph (per-channel int8 weights, TensorRT's form) into integer kernels: at
# level ALL on an AVX2 CPU it fuses 0 of MobileNetV2's 52 Convs into QLinearConv (2 with the u8 weight shift,
# which is slower still) and runs the rest dequantized, 3.4x the fp32 native artifact's latency (issue 15
# measured 1.9-3.2x on a CPU with AMX). Said in the engine summary and the report of every int8 build.
INT8_NOTICE = ("precision: int8 on the onnxruntime backend is for checking accuracy, not speed (onnxruntime runs "
               "the Q/DQ graph's convolutions dequantized, slower than fp32); use --backend openvino or tensorrt "
               "for int8 speed")


def cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The feature flags of the first CPU listed in ``cpuinfo`` (the text of /proc/cpuinfo: ``flags`` on x86,
    ``Features`` on Arm)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def machine_flags() -> frozenset[str]:
    """This machine's CPU feature flags; empty where /proc/cpuinfo cannot be read."""
    try:
        return cpu_flags(Path("/proc/cpuinfo").read_text())
    except OSError:
        return frozenset()


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def build_record(kind: str, flags: frozenset[str] | None = None) -> dict:
    """What an artifact of build ``kind`` is tied to: the onnxruntime version, the CPU architecture and its
    features in ``ISA_FLAGS`` (``flags`` default to this machine's)."""
    flags = machine_flags() if flags is None else flags
    return {"build": kind, "onnxruntime": _ort_version(), "machine": platform.machine(),
            "isa": sorted(flags & ISA_FLAGS)}


def incompatibility(record: dict, here: dict) -> str | None:
    """Why an artifact built as ``record`` cannot run where ``build_record`` says ``here``; None when it can
    (a portable artifact runs anywhere)."""
    if record.get("build") != "native":
        return None
    if record.get("onnxruntime") != here["onnxruntime"]:
        return f"it was built for onnxruntime {record.get('onnxruntime')}, this is onnxruntime {here['onnxruntime']}"
    if record.get("machine") != here["machine"]:
        return f"it was built on a {record.get('machine')} CPU, this is {here['machine']}"
    built, now = set(record.get("isa", ())), set(here["isa"])
    if built != now:
        parts = [f"lacks {', '.join(sorted(built - now))}"] if built - now else []
        parts += [f"adds {', '.join(sorted(now - built))}"] if now - built else []
        return f"this CPU {' and '.join(parts)} against the CPU it was built for"
    return None


def disabled_optimizers(flags: frozenset[str] | None = None) -> tuple[str, ...]:
    """The onnxruntime rewrites this machine's build refuses (see above); ``flags`` default to /proc/cpuinfo's.
    Where the flags cannot be read, the VNNI-only rewrite is refused too: exact beats fast."""
    if flags is None:
        flags = machine_flags()
    return DISABLED_OPTIMIZERS + (() if flags & VNNI_FLAGS else NO_VNNI_DISABLED)


def huge_constants(model) -> list[str]:
    """Nodes computed from constants alone whose output would exceed ``limits.FOLD_CAP_BYTES`` (the ones
    fold_constants refused): onnxruntime's own ConstantFolding would materialize them while building.
    ``model``: a ModelProto without its external data."""
    const = {i.name for i in model.graph.initializer} | {""}
    candidates = []
    for node in model.graph.node:
        if all(name in const for name in node.input) and node.op_type not in ("Loop", "If", "Scan"):
            const.update(node.output)
            candidates.append(node)
    if not candidates:
        return []
    sizes = limits.tensor_sizes(model)
    return [n.name or n.output[0] for n in candidates
            if any(sizes.get(o, (0,))[0] > limits.FOLD_CAP_BYTES for o in n.output)]


BF16_EMULATED = ("emulated: float32 arithmetic with a bfloat16 rounding of each tensor the graph stores in bfloat16 "
                 "(onnxruntime's CPU provider has no bfloat16 kernels)")


def _buildable(onnx_path: Path, header=None):
    """What onnxruntime builds from ``onnx_path``: the path itself, or (bfloat16 graphs) the serialized storage
    emulation, external data inlined; and the summary's note on bfloat16 ({} when none). ``header``: the file's
    proto without external data, when the caller has read it already (``_read_proto``)."""
    import onnx

    header = header if header is not None else _read_proto(onnx_path)
    if header is None or not has_bfloat16(header):  # unparsable: onnxruntime will say what is wrong with the file
        return onnx_path, {}
    return storage_emulation(onnx.load(str(onnx_path))).SerializeToString(), {"bfloat16": BF16_EMULATED}


def _read_proto(onnx_path: Path):
    """The ModelProto at ``onnx_path`` without its external data; None where onnx cannot parse it (onnxruntime
    will say what is wrong with the file)."""
    import onnx

    try:
        return onnx.load(str(onnx_path), load_external_data=False)
    except Exception:
        return None


def _stamped(model, record: dict) -> bytes:
    """``model`` serialized with the build record in its metadata (the ORT format keeps it), for ``load``."""
    props = [p for p in model.metadata_props if p.key != BUILD_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(props)
    entry = model.metadata_props.add()
    entry.key, entry.value = BUILD_KEY, json.dumps(record, sort_keys=True)
    return model.SerializeToString()


def is_int8(model) -> bool:
    """The graph holds Q/DQ pairs (``--precision int8``)."""
    return model is not None and any(n.op_type == "QuantizeLinear" for n in model.graph.node)


def _build_source(onnx_path: Path, model, record: dict, external: bool):
    """(what onnxruntime builds from, the summary's bfloat16 note): a bfloat16 graph's storage emulation, else
    the model stamped with its build record; a model with external data builds from its path (its artifact is
    ONNX, which carries no build record)."""
    emulated, note = _buildable(onnx_path, model)  # the header build() read, not parsed again
    if isinstance(emulated, bytes):
        return emulated, note
    if external or model is None:
        return onnx_path, note
    return _stamped(model, record), note


def build(onnx_path: Path, out: Path, cfg: BuildConfig = BuildConfig()) -> EngineArtifact:
    """The ORT artifact of ``cfg.ort_build`` (native: level ALL for this CPU; portable: EXTENDED) at ``out``; a
    model with external data gives a portable ONNX artifact with its ``.data`` file beside it."""
    out = Path(out)
    check_onnx_file(onnx_path)  # onnxruntime reads external data from beside the file
    model = _read_proto(Path(onnx_path))
    external = model is not None and any(True for _ in external_tensors(model))
    kind = "portable" if external else cfg.ort_build
    native, record, fmt = kind == "native", build_record(kind), ONNX_MODEL if external else ORT_FORMAT
    with atomic_output(out, "engine") as tmp:
        huge = huge_constants(model) if model is not None else []
        disabled = disabled_optimizers() + (("ConstantFolding",) if huge else ())
        source, bf16_note = _build_source(Path(onnx_path), model, record, external)
        data = companion_path(tmp, DATA_SUFFIX) if external else None
        saving = {"save_onnx_to": tmp, "external_data": data.name} if external else {"save_ort_to": tmp}
        try:
            session = ort.session(source, ort.NATIVE if native else ort.BUILD, disabled_optimizers=disabled,
                                  external_data_dir=Path(onnx_path).resolve().parent, **saving)
        except Exception as e:  # onnxruntime's exception types are not importable portably
            raise BuildError(f"onnxruntime cannot build the model ({type(e).__name__}: "
                             f"{str(e).splitlines()[0][:300]})",
                             "run with --check-each-pass to find the pass that broke it, or --debug") from e
        if detect_format(tmp) != fmt:
            raise BuildError(f"onnxruntime did not write an {'ONNX' if external else 'ORT-format'} model",
                             "report this as a bug")
    extra = {"external_data": data.name, "external_data_bytes": data.stat().st_size} if external else {}
    return EngineArtifact(path=out, backend="onnxruntime", format=fmt,
                          summary={"bytes": out.stat().st_size, **extra, "ort_build": kind,
                                   "optimization_level": "all" if native else "extended",
                                   "portability": PORTABILITY[kind], "isa": record["isa"],
                                   "machine": record["machine"], "disabled_optimizers": list(disabled),
                                   **({"not_folded": huge} if huge else {}), **bf16_note,
                                   **({"precision_notice": INT8_NOTICE} if is_int8(model) else {}),
                                   "onnxruntime": record["onnxruntime"], "providers": ["CPUExecutionProvider"],
                                   "io": session_io(session)})


def ort_session(model: Path | bytes, fmt: str = ONNX_MODEL):
    """An onnxruntime CPU session that runs the model exactly as written: no graph optimizations.

    An ORT artifact was optimized when it was built. An ONNX model on either
    side of a validation seam must run as written: onnxruntime's own fusions
    (e.g. folding BatchNormalization into Conv) change float32 rounding, by
    3.7e-4 on a random-weight ResNet50V2, and would be blamed on the export
    or the passes. A bfloat16 ONNX model runs as its storage emulation (see the module docstring).
    """
    path = "<in-memory model>" if isinstance(model, bytes) else model
    if fmt == ONNX_MODEL and not isinstance(model, bytes):
        model, _ = _buildable(Path(model))  # a bfloat16 graph runs as its storage emulation, or not at all
    try:
        return ort.session(model, ort.AS_WRITTEN, ort_format=fmt == ORT_FORMAT)
    except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph/... types
        raise RunError(f"onnxruntime cannot load '{path}' ({type(e).__name__}: {str(e).splitlines()[0][:200]})",
                       "the file may be truncated or built by an incompatible onnxruntime; rebuild it") from None


def _ort_dtype(type_str: str) -> str:
    inner = type_str[len("tensor("):-1] if type_str.startswith("tensor(") else type_str
    return {"float": "float32", "double": "float64", "float16": "float16"}.get(inner, inner)


def _specs(args) -> tuple[TensorSpec, ...]:
    """TensorSpecs of onnxruntime's NodeArgs (symbolic dims become None)."""
    return tuple(TensorSpec(a.name, _ort_dtype(a.type), tuple(d if isinstance(d, int) else None for d in a.shape))
                 for a in args)


def session_io(session) -> list[dict]:
    """An onnxruntime session's IO as the engine summary lists it (TensorRT's form: -1 marks a dynamic dim)."""
    return [{"name": t.name, "mode": mode, "dtype": t.dtype,
             "shape": [d if isinstance(d, int) and d >= 0 else -1 for d in t.shape]}
            for mode, args in (("input", session.get_inputs()), ("output", session.get_outputs()))
            for t in _specs(args)]


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def check_build(path: Path, raw: str | None) -> None:
    """Refuse (RunError, before anything runs) an artifact whose build record (``BUILD_KEY``) says it cannot run
    here. An artifact without one was built before native builds existed, at level EXTENDED: portable."""
    try:
        record = json.loads(raw) if raw else {"build": "portable"}
        problem = incompatibility(record, build_record("native"))
    except (ValueError, AttributeError, TypeError) as e:
        raise RunError(f"'{path}' records an unreadable build ({BUILD_KEY}: {e})", "rebuild the artifact") from None
    if problem:
        raise RunError(f"'{path}' is a native onnxruntime artifact that cannot run here: {problem}",
                       "rebuild it on this machine, or build it with --ort-build portable to run it on any CPU")


class OrtRunner:
    """Runs an ONNX model or an ORT-format artifact on onnxruntime's CPU provider."""

    def __init__(self, path: Path, fmt: str):
        self.path, self.format, self.backend = Path(path), fmt, "onnxruntime"
        self.session = limits.BoundedSession(ort_session(self.path, fmt), f"'{self.path}'", RunError,
                                             _onnx_proto(self.path) if fmt == ONNX_MODEL else None)
        self.inputs = _specs(self.session.get_inputs())
        self.outputs = _specs(self.session.get_outputs())
        meta = self.session.get_modelmeta().custom_metadata_map
        if fmt == ORT_FORMAT:
            check_build(self.path, meta.get(BUILD_KEY))
        raw = meta.get(KEY)
        try:
            self.interface = Interface.from_json(json.loads(raw)) if raw else Interface()
        except (ValueError, AttributeError) as e:
            raise RunError(f"'{path}' records an unreadable interface ({KEY}: {e})", "rebuild the artifact") from None
        intra = self.session.get_session_options().intra_op_num_threads
        # 0 is onnxruntime's default: one intra-op thread per physical core
        self.threads = {"intra_op_num_threads": intra, "cpus": _cpus()}

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = sorted({t.name for t in self.inputs} - set(feed))
        if missing:
            raise RunError(f"missing input(s) {', '.join(missing)}",
                           f"provide every input: {', '.join(t.name for t in self.inputs)}")
        names = [o.name for o in self.outputs]
        values = self.session.run(names, {t.name: feed[t.name] for t in self.inputs})  # bounded: RunError
        return OrderedDict(zip(names, values))

    def polygraphy_runner(self, name: str):
        from polygraphy.backend.onnxrt import OnnxrtRunner

        session = limits.BoundedSession(self.session.session, f"'{name}'", ValidationError, self.session.model)
        return OnnxrtRunner(session, name=name)


def _onnx_proto(path: Path):
    """The ModelProto at ``path`` without its external data (for the memory estimate), or None."""
    import onnx

    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception:  # onnxruntime loaded it; the estimate is only a guard
        return None


class OnnxruntimeBackend:
    name, label = "onnxruntime", "onnxruntime"
    formats = (ORT_FORMAT, ONNX_MODEL)
    install_hint = "pip install onnxruntime"
    runs_any_shape = True

    def availability(self) -> tuple[bool, str]:
        return True, "runs on any CPU"  # a dependency of the package

    def build(self, onnx_path: Path, out: Path, settings: BuildConfig, profiles: tuple = ()) -> EngineArtifact:
        return build(onnx_path, out, settings)  # onnxruntime runs any shape: profiles need nothing here

    def load(self, path: Path, plugins: tuple = ()) -> OrtRunner:
        return OrtRunner(path, detect_format(path))


BACKEND = OnnxruntimeBackend()
