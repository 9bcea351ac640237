"""user_rules: apply the rules from ``--rules FILE.py`` (the same rule API as the built-in catalogue).

Rewrite: whatever the user's rules say (for example, a subgraph replaced by a
TensorRT plugin node). Runs before ``rewrite_tensorrt``, so a user rule sees
the graph before the built-in rewrites and can take precedence over them.
Does nothing when no rules file was given.
"""
from __future__ import annotations

import onnx_graphsurgeon as gs

from .infra import Pass, PassContext, PassError, PassResult
from .rules import RuleFailed, apply_rules


class UserRuleError(PassError):
    """A rule from the user's --rules file raised (the message names the rule, the method and the node)."""


class UserRules(Pass):
    name = "user_rules"

    def run(self, graph: gs.Graph, ctx: PassContext) -> PassResult:
        if not ctx.rules:
            return PassResult(changed=False)
        try:
            stats = apply_rules(graph, list(ctx.rules))
        except RuleFailed as e:
            raise UserRuleError(f"user {e}") from e
        return PassResult(changed=bool(stats["applied"]), stats=stats)
