"""The precision stage's passes: float16 (``to_fp16``) and INT8 Q/DQ (``quantize_int8``); ``cleanup_casts`` (one
level up) tidies the Casts float16 leaves. compiler/stages/precision.py runs them after the pipeline."""
from __future__ import annotations

from .quantize_int8 import QuantizeInt8
from .to_fp16 import ToFp16

__all__ = ["QuantizeInt8", "ToFp16"]
