"""Old path of ``compiler.common.onnxutil``, kept for users' imports: the same module object, private names included."""
import sys

from .common import onnxutil

sys.modules[__name__] = onnxutil
