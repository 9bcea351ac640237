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
from ..runtime import ORT_FORMAT, detect_format

# onnxruntime rewrites we refuse, each with the reason. Pad_Fusion folds a
# constant-zero Pad into the next op's `pads`; for MaxPool those pads act as
# -inf, not 0, so on negative inputs (ResNetV2's stem: ZeroPadding2D then
# MaxPool, no ReLU between) the border maxima change: 3.7e-4 on a random-weight
# ResNet50V2, found by the engine seam. Without it the artifact matches the
# unoptimized graph exactly.
DISABLED_OPTIMIZERS = ("Pad_Fusion",)


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
    with atomic_output(out, "engine") as tmp:
        so = ort.SessionOptions()
        so.log_severity_level = limits.ORT_QUIET
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        so.optimized_model_filepath = str(tmp)
        so.add_session_config_entry("session.save_model_format", "ORT")
        huge = huge_constants(Path(onnx_path))
        disabled = list(DISABLED_OPTIMIZERS) + (["ConstantFolding"] if huge else [])
        try:
            ort.InferenceSession(str(onnx_path), sess_options=so, providers=["CPUExecutionProvider"],
                                 disabled_optimizers=disabled)
        except Exception as e:  # onnxruntime's exception types are not importable portably
            raise BuildError(f"onnxruntime cannot build the model ({type(e).__name__}: "
                             f"{str(e).splitlines()[0][:300]})",
                             "run with --check-each-pass to find the pass that broke it, or --debug") from e
        if detect_format(tmp) != ORT_FORMAT:
            raise BuildError("onnxruntime did not write an ORT-format model", "report this as a bug")
    return EngineArtifact(path=out, backend="onnxruntime", format=ORT_FORMAT,
                          summary={"bytes": out.stat().st_size, "optimization_level": "extended",
                                   "disabled_optimizers": disabled,
                                   **({"not_folded": huge} if huge else {}),
                                   "onnxruntime": ort.__version__, "providers": ["CPUExecutionProvider"]})
