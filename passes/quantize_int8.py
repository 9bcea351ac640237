"""Old path of ``passes.precision.quantize_int8``, kept for users' imports."""
from .precision.quantize_int8 import INT8_OPS, QDQ_OPTIONS, QuantizeInt8, quantizable  # noqa: F401
