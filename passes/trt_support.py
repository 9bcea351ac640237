"""Old path of ``passes.analysis.trt_support``, kept for users' imports: the same module object, private names included."""
import sys

from .analysis import trt_support

sys.modules[__name__] = trt_support
