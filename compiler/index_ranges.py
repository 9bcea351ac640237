"""Old path of ``compiler.common.index_ranges``, kept for users' imports: the same module object, private names included."""
import sys

from .common import index_ranges

sys.modules[__name__] = index_ranges
