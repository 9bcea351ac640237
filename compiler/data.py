"""Old path of ``compiler.common.samples``, kept for users' imports: the same module object, private names included."""
import sys

from .common import samples

sys.modules[__name__] = samples
