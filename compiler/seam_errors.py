"""A seam side that fails to run is a failed seam, not an internal error.

TensorFlow and onnxruntime both refuse inputs a model cannot take (an index
outside its table is the usual one). ``run_sides`` runs each side of a seam
on the same seeded data, one runner at a time, so the side that failed is
known; ``SeamRunError`` carries which side, the node named in the runtime's
message (``failing_node``), and the runtime's first line.
"""
from __future__ import annotations

import re

from .errors import CompilerError
from .limits import MEMORY_FIX, TIMEOUT_FIX

RUNTIME_FIX = ("the validation inputs may be outside what the model accepts: give the input's valid range with "
               "--val-range NAME:LO,HI, or real inputs with --data")

# TensorFlow: "... Detected at node foo/GatherV2 defined at ..." or "[[{{node foo/GatherV2}}]]";
# onnxruntime: "... while running Gather node. Name:'foo' Status Message: ...".
_NODE_PATTERNS = (re.compile(r"\{\{node ([^}]+)\}\}"), re.compile(r"Detected at node '?([^\s']+?)'? defined at"),
                  re.compile(r"running (\w+) node\. Name:'([^']*)'"))


class SeamRunError(Exception):
    def __init__(self, side: str, label: str, node: str | None, message: str):
        super().__init__(message)
        self.side, self.label, self.node, self.message = side, label, node, message

    def note(self) -> str:
        where = f" at node '{self.node}'" if self.node else ""
        return f"{self.label} ({self.side}) failed to run on the validation inputs{where}: {self.message}"


def failing_node(text: str) -> str | None:
    """The node a TensorFlow or onnxruntime runtime error names, if it names one."""
    for pattern in _NODE_PATTERNS:
        m = pattern.search(text)
        if m:
            return m.group(m.lastindex)
    return None


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    # TensorFlow's message leads with "Graph execution error:" and a stack-trace preamble; its cause is last.
    cause = next((ln for ln in lines if re.search(r"indices|out of|invalid|must be|not in", ln, re.I)), None)
    return (cause or (lines[0] if lines else "no message"))[:300]


def run_sides(reference, candidate, loader, labels: tuple[str, str]):
    """Polygraphy ``RunResults`` of both runners over ``loader``; a runner that raises → ``SeamRunError``."""
    from polygraphy.comparator import Comparator, RunResults

    merged = RunResults()
    for runner, side, label in ((reference, "reference", labels[0]), (candidate, "candidate", labels[1])):
        try:
            results = Comparator.run([runner], data_loader=loader)
        except Exception as e:  # any runtime's refusal of the data: TensorFlow, onnxruntime, an engine
            if isinstance(e, MemoryError) or (isinstance(e, CompilerError) and e.fix in (TIMEOUT_FIX, MEMORY_FIX)):
                raise  # the evaluation bounds (compiler/limits.py) keep their own errors
            text = str(e.cause if isinstance(e, CompilerError) else e)
            raise SeamRunError(side, label, failing_node(text), f"{type(e).__name__}: {_first_line(text)}") from e
        # RunResults.update() in Polygraphy 0.53.6 indexes its list by name and fails; append pairs.
        merged.lst.extend(results.lst)
    return merged
