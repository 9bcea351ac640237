"""Old path of ``compiler.tools.localize``, kept for users' imports: the same module object, private names included."""
import sys

from .tools import localize

sys.modules[__name__] = localize
