"""Old path of ``compiler.tools.batch``, kept for users' imports: the same module object, private names included."""
import sys

from .tools import batch

sys.modules[__name__] = batch
