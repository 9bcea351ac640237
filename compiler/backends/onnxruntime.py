"""The embedded default backend: a pre-optimized onnxruntime model in ORT format.

onnxruntime applies its graph optimizations once at build time (level
EXTENDED: fusions that are valid on any CPU, no hardware-specific layouts) and
serializes the result in its ORT flatbuffer format, which later loads without
re-optimizing. The file is recognisable from its content (``ORTM`` at bytes
4-8), so nothing mistakes it for a TensorRT plan.
"""
from __future__ import annotations

from pathlib import Path

from .. import limits
from ..artifacts import EngineArtifact, atomic_output
from ..config import BuildConfig
from ..errors import BuildError
from ..runtime import ORT_FORMAT, detect_format, session_io
from ..sandbox import check_onnx_file

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


def cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The feature flags of the first CPU listed in ``cpuinfo`` (the text of /proc/cpuinfo)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def disabled_optimizers(flags: frozenset[str] | None = None) -> tuple[str, ...]:
    """The onnxruntime rewrites this machine's build refuses (see above); ``flags`` default to /proc/cpuinfo's.
    Where the flags cannot be read, the VNNI-only rewrite is refused too: exact beats fast."""
    if flags is None:
        try:
            flags = cpu_flags(Path("/proc/cpuinfo").read_text())
        except OSError:
            flags = frozenset()
    return DISABLED_OPTIMIZERS + (() if flags & VNNI_FLAGS else NO_VNNI_DISABLED)


def huge_constants(onnx_path: Path) -> list[str]:
    """Nodes computed from constants alone whose output would exceed ``limits.FOLD_CAP_BYTES`` (the ones
    fold_constants refused): onnxruntime's own ConstantFolding would materialize them while building."""
    import onnx

    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception:  # onnxruntime will say what is wrong with the file
        return []
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


def build(onnx_path: Path, out: Path, cfg: BuildConfig = BuildConfig()) -> EngineArtifact:
    import onnxruntime as ort

    out = Path(out)
    check_onnx_file(onnx_path)  # onnxruntime reads external data from beside the file
    with atomic_output(out, "engine") as tmp:
        limits.quiet_onnxruntime()
        so = ort.SessionOptions()
        so.log_severity_level = limits.ORT_QUIET
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        so.optimized_model_filepath = str(tmp)
        so.add_session_config_entry("session.save_model_format", "ORT")
        huge = huge_constants(Path(onnx_path))
        disabled = disabled_optimizers() + (("ConstantFolding",) if huge else ())
        try:
            session = ort.InferenceSession(str(onnx_path), sess_options=so, providers=["CPUExecutionProvider"],
                                           disabled_optimizers=list(disabled))
        except Exception as e:  # onnxruntime's exception types are not importable portably
            raise BuildError(f"onnxruntime cannot build the model ({type(e).__name__}: "
                             f"{str(e).splitlines()[0][:300]})",
                             "run with --check-each-pass to find the pass that broke it, or --debug") from e
        if detect_format(tmp) != ORT_FORMAT:
            raise BuildError("onnxruntime did not write an ORT-format model", "report this as a bug")
    return EngineArtifact(path=out, backend="onnxruntime", format=ORT_FORMAT,
                          summary={"bytes": out.stat().st_size, "optimization_level": "extended",
                                   "disabled_optimizers": list(disabled),
                                   **({"not_folded": huge} if huge else {}),
                                   "onnxruntime": ort.__version__, "providers": ["CPUExecutionProvider"],
                                   "io": session_io(session)})
