"""Old path of ``compiler.common.fp16_emulation``, kept for users' imports: the same module object, private names included."""
import sys

from .common import fp16_emulation

sys.modules[__name__] = fp16_emulation
