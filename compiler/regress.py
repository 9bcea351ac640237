"""Old path of ``compiler.tools.goldens``, kept for users' imports: the same module object, private names included."""
import sys

from .tools import goldens

sys.modules[__name__] = goldens
