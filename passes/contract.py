"""The pass pipeline's output contract: it passes ``onnx.checker`` full check and loads in onnxruntime (a bfloat16
graph: its storage emulation, compiler/common/fp16_emulation.py).

``violation`` says why a model breaks it (None when it holds). The optimize stage checks the pipeline's
output; when it fails, it runs the pipeline again with this check after every changing pass, so the error
names the first pass whose output breaks the contract (compiler/optimize.py).
"""
from __future__ import annotations

import onnx


def _first_line(e: Exception) -> str:
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    return (lines[0] if lines else type(e).__name__)[:300]


def violation(model: onnx.ModelProto) -> str | None:
    """None when ``model`` passes the full checker and onnxruntime builds a session for it, else why not."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        return f"onnx.checker: {_first_line(e)}"
    from compiler.common.fp16_emulation import has_bfloat16, storage_emulation
    from compiler.common.ort import session

    try:
        # onnxruntime's CPU provider has no bfloat16 kernels: a bfloat16 graph loads as its storage emulation
        session((storage_emulation(model) if has_bfloat16(model) else model).SerializeToString())  # load only
    except Exception as e:  # onnxruntime's error types differ across versions; its first line says why
        return f"onnxruntime: {_first_line(e)}"
    return None


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
