"""Old path of ``compiler.tools.html_report``, kept for users' imports: the same module object, private names included."""
import sys

from .tools import html_report

sys.modules[__name__] = html_report
