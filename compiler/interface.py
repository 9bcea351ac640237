"""Old path of ``compiler.common.io_change``, kept for users' imports: the same module object, private names included."""
import sys

from .common import io_change

sys.modules[__name__] = io_change
