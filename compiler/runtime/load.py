"""Load any artifact the compiler produces, chosen by its content (``artifacts.detect_format``).

Every runner has ``inputs``/``outputs`` (TensorSpecs), ``format``, ``backend``,
``interface`` (how the artifact's IO differs from the SavedModel's, see
compiler/interface.py) and ``infer(feed) -> dict``, which takes exactly what
the artifact takes (``feeds.prepare_feed`` adapts what a user has).
"""
from __future__ import annotations

import json
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ..artifacts import ONNX_MODEL, ORT_FORMAT, TENSORRT_PLAN, TensorSpec, detect_format
from ..backends import tensorrt
from ..common import ort
from ..errors import RunError
from ..interface import KEY, Interface


def ort_session(model: Path | bytes, fmt: str = ONNX_MODEL):
    """An onnxruntime CPU session that runs the model exactly as written: no graph optimizations.

    An ORT artifact was optimized when it was built. An ONNX model on either
    side of a validation seam must run as written: onnxruntime's own fusions
    (e.g. folding BatchNormalization into Conv) change float32 rounding, by
    3.7e-4 on a random-weight ResNet50V2, and would be blamed on the export
    or the passes.
    """
    path = "<in-memory model>" if isinstance(model, bytes) else model
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


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class OrtRunner:
    """Runs an ONNX model or an ORT-format artifact on onnxruntime's CPU provider."""

    def __init__(self, path: Path, fmt: str):
        self.path, self.format, self.backend = Path(path), fmt, "onnxruntime"
        self.session = ort_session(self.path, fmt)
        self.inputs = _specs(self.session.get_inputs())
        self.outputs = _specs(self.session.get_outputs())
        raw = self.session.get_modelmeta().custom_metadata_map.get(KEY)
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
        try:
            values = self.session.run(names, {t.name: feed[t.name] for t in self.inputs})
        except Exception as e:  # onnxruntime's own error types (InvalidArgument, RuntimeException, ...)
            raise RunError(f"onnxruntime failed to run '{self.path}' ({type(e).__name__}: "
                           f"{str(e).strip().splitlines()[0][:300] if str(e).strip() else ''})",
                           "check the inputs' shapes and values; rerun with --debug for details") from e
        return OrderedDict(zip(names, values))

    def polygraphy_runner(self, name: str):
        from polygraphy.backend.onnxrt import OnnxrtRunner

        return OnnxrtRunner(self.session, name=name)


def load(path: Path, plugins=()):
    """A runner for the artifact at ``path``, chosen by its content.

    ``plugins`` (TensorRT plugin libraries) are loaded for a TensorRT plan; onnxruntime needs none.
    """
    fmt = detect_format(path)
    if fmt == TENSORRT_PLAN:
        ok, why = tensorrt.availability()
        if not ok:  # say what the file is: the user may not know it is a plan
            raise RunError(f"'{path}' is a TensorRT plan, but TensorRT cannot run here: {why}", tensorrt.INSTALL_HINT)
        return tensorrt.TrtPlanRunner(Path(path), plugins=tuple(plugins))  # its interface is empty: no metadata
    return OrtRunner(Path(path), fmt)
