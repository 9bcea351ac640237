"""Load any artifact the compiler produces and run it.

The format is recognised from the file's content, never its name: a TensorRT
plan starts with ``ftrt``; our onnxruntime artifact is onnxruntime's own ORT
format, a flatbuffer whose file identifier ``ORTM`` sits at bytes 4-8; an ONNX
model is a protobuf ``ModelProto`` (recognised by parsing).
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np

from .artifacts import TensorSpec
from .errors import RunError

TENSORRT_PLAN = "tensorrt-plan"
ORT_FORMAT = "onnxruntime-ort"
ONNX_MODEL = "onnx"

_TRT_MAGIC = b"ftrt"
_ORT_IDENT = b"ORTM"


def detect_format(path: Path) -> str:
    path = Path(path)
    if not path.is_file():
        raise RunError(f"artifact '{path}' does not exist or is not a file", "pass the file written by compile/build")
    with open(path, "rb") as f:
        head = f.read(8)
    if head[:4] == _TRT_MAGIC:
        return TENSORRT_PLAN
    if len(head) == 8 and head[4:8] == _ORT_IDENT:
        return ORT_FORMAT
    try:
        import onnx

        model = onnx.load(str(path), load_external_data=False)
        if model.graph.node or model.graph.output:
            return ONNX_MODEL
    except Exception:  # any parse failure means "not ONNX"; we say what it is not, below
        pass
    raise RunError(f"'{path}' is not a TensorRT plan, an onnxruntime ORT artifact or an ONNX model "
                   f"(first bytes: {head!r})", "pass an engine built by this compiler, or rebuild it")


def ort_session(model: Path | bytes, fmt: str = ONNX_MODEL):
    """An onnxruntime CPU session that runs the model exactly as written: no graph optimizations.

    An ORT artifact was optimized when it was built. An ONNX model on either
    side of a validation seam must run as written: onnxruntime's own fusions
    (e.g. folding BatchNormalization into Conv) change float32 rounding, by
    3.7e-4 on a random-weight ResNet50V2, and would be blamed on the export
    or the passes.
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if fmt == ORT_FORMAT:
        so.add_session_config_entry("session.load_model_format", "ORT")
    source = model if isinstance(model, bytes) else str(model)
    path = "<in-memory model>" if isinstance(model, bytes) else model
    try:
        return ort.InferenceSession(source, sess_options=so, providers=["CPUExecutionProvider"])
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


class OrtRunner:
    """Runs an ONNX model or an ORT-format artifact on onnxruntime's CPU provider."""

    def __init__(self, path: Path, fmt: str):
        self.path, self.format, self.backend = Path(path), fmt, "onnxruntime"
        self.session = ort_session(self.path, fmt)
        self.inputs = _specs(self.session.get_inputs())
        self.outputs = _specs(self.session.get_outputs())

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = sorted({t.name for t in self.inputs} - set(feed))
        if missing:
            raise RunError(f"missing input(s) {', '.join(missing)}",
                           f"provide every input: {', '.join(t.name for t in self.inputs)}")
        names = [o.name for o in self.outputs]
        values = self.session.run(names, {t.name: feed[t.name] for t in self.inputs})
        return OrderedDict(zip(names, values))

    def polygraphy_runner(self, name: str):
        from polygraphy.backend.onnxrt import OnnxrtRunner

        return OnnxrtRunner(self.session, name=name)


def load(path: Path):
    """A runner for the artifact at ``path``, chosen by its content."""
    fmt = detect_format(path)
    if fmt == TENSORRT_PLAN:
        from .backends import tensorrt

        return tensorrt.TrtPlanRunner(Path(path))
    return OrtRunner(Path(path), fmt)
