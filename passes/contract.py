"""The pass pipeline's output contract: it passes ``onnx.checker`` full check and loads in onnxruntime (a bfloat16
graph: its storage emulation, compiler/common/fp16_emulation.py).

``violation`` says why a model breaks it (None when it holds). The optimize stage checks the pipeline's
output; when it fails, it runs the pipeline again with this check after every changing pass, so the error
names the first pass whose output breaks the contract (compiler/optimize.py).

A model over 2 GB cannot be serialized into one message: it is checked where it lies on disk with its external
data (``violation(path)``), and one held in memory is first written to a scratch directory that way.
"""
from __future__ import annotations

from pathlib import Path

import onnx

from compiler.artifacts import scratch_dir
from compiler.common.onnxutil import PROTOBUF_LIMIT, write


def _first_line(e: Exception) -> str:
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    return (lines[0] if lines else type(e).__name__)[:300]


def violation(model: onnx.ModelProto | Path) -> str | None:
    """None when ``model`` (a proto, or the path of a file with its external data) passes the full checker and
    onnxruntime builds a session for it, else why not."""
    if isinstance(model, onnx.ModelProto) and model.ByteSize() > PROTOBUF_LIMIT:
        copy = onnx.ModelProto()
        copy.CopyFrom(model)  # writing moves the weights out of the proto it writes
        with scratch_dir("tf2trt-contract-") as tmp:
            write(copy, tmp / "model.onnx")
            del copy
            return violation(tmp / "model.onnx")
    source = str(model) if isinstance(model, Path) else model
    try:
        onnx.checker.check_model(source, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        return f"onnx.checker: {_first_line(e)}"
    from compiler.common.ort import session

    try:  # load only (no optimizations), quickly
        session(_loadable(model))
    except Exception as e:  # onnxruntime's error types differ across versions; its first line says why
        return f"onnxruntime: {_first_line(e)}"
    return None


def _loadable(model: onnx.ModelProto | Path):
    """What onnxruntime loads to check ``model``: its path or its bytes, or for a bfloat16 graph (onnxruntime's CPU
    provider has no bfloat16 kernels) the bytes of its storage emulation (compiler/common/fp16_emulation.py)."""
    from compiler.common.fp16_emulation import has_bfloat16, storage_emulation

    header = onnx.load(str(model), load_external_data=False) if isinstance(model, Path) else model
    if not has_bfloat16(header):
        return model if isinstance(model, Path) else model.SerializeToString()
    full = onnx.load(str(model)) if isinstance(model, Path) else model
    return storage_emulation(full).SerializeToString()


class ContractBroken(Exception):
    """Raised by ``check_after_each_pass`` at the first pass whose output breaks the contract."""

    def __init__(self, pass_name: str, problem: str):
        super().__init__(problem)
        self.pass_name, self.problem = pass_name, problem


def check_after_each_pass(model: onnx.ModelProto, pass_name: str) -> None:
    """A ``PassManager`` check: raise ``ContractBroken`` naming ``pass_name`` when its output breaks it."""
    problem = violation(model)
    if problem:
        raise ContractBroken(pass_name, problem)
