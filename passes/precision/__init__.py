"""The precision stage's passes: float16 (``to_fp16``), bfloat16 (``to_bf16``, the same lowering retyped) and INT8
Q/DQ (``quantize_int8``); ``cleanup_casts`` (one level up) tidies the Casts they leave. compiler/stages/precision.py
runs them after the pipeline."""
from __future__ import annotations

from .quantize_int8 import QuantizeInt8
from .to_bf16 import ToBf16
from .to_fp16 import ToFp16

__all__ = ["QuantizeInt8", "ToBf16", "ToFp16"]
