"""rewrite_tensorrt: apply the TensorRT rewrite catalogue (``passes/rules/catalogue.py``).

Rewrite: every node some rule wants (a TopK with K > 3840, a Resize mode the
parser rejects, ...) is replaced by the rule's TensorRT-supported equivalent;
see each rule's docstring for its algebra. A rule that cannot apply records
why (``stats["refused"]``), and the node is left for ``check-trt`` to report.
"""
from __future__ import annotations

import onnx_graphsurgeon as gs

from .infra import Pass, PassResult
from .rules import apply_rules
from .rules.catalogue import CATALOGUE


class RewriteTensorRT(Pass):
    name = "rewrite_tensorrt"

    def __init__(self, rules=None):
        self.rules = list(CATALOGUE if rules is None else rules)

    def run(self, graph: gs.Graph) -> PassResult:
        stats = apply_rules(graph, self.rules)
        return PassResult(changed=bool(stats["applied"]), stats=stats)
