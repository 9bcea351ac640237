"""Rewrite rules: the API every rule follows, the TensorRT catalogue, and loading user rules.

A rule is data in three parts (DESIGN.md, style 3):

- **pattern**: ``op`` (the node type it anchors on; ``""`` for any) and
  ``wants(node, graph)``: does this node have the problem the rule fixes?
- **check**: ``check(node, graph)`` returns ``None`` when the rewrite applies,
  or the reason it does not. Refusals are recorded (pass stats, report,
  ``check-trt``), never silent.
- **replacement**: ``apply(node, graph)`` rewires the graph. Build new nodes
  with :class:`Builder`, so their names say which rule made them. Nodes left
  dangling are removed by the pass afterwards.

The rule's docstring states the rewrite and its algebra. Users write rules the
same way in a file passed with ``--rules FILE.py``, which defines
``RULES = [MyRule(), ...]``.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import onnx_graphsurgeon as gs

from ..infra import UniqueNames, reconnect


class Rule:
    """Subclass, set ``name`` and ``op``, implement ``apply`` (and ``wants``/``check`` where needed)."""

    name: str = ""
    op: str = ""  # anchor op type; "" matches every node

    def wants(self, node: gs.Node, graph: gs.Graph) -> bool:
        """Does ``node`` have the problem this rule fixes? Nodes it doesn't want are not recorded."""
        return True

    def check(self, node: gs.Node, graph: gs.Graph) -> str | None:
        """None: rewrite this node. A string: why this rule cannot (recorded as a refusal)."""
        return None

    def apply(self, node: gs.Node, graph: gs.Graph) -> dict | None:  # pragma: no cover - abstract
        """Rewrite; may return facts for the pass stats (e.g. which graph IO changed dtype)."""
        raise NotImplementedError

    @property
    def summary(self) -> str:
        doc = (type(self).__doc__ or "").strip()
        return doc.splitlines()[0] if doc else self.name

    def __repr__(self):
        return f"<rule {self.name}>"


class Builder:
    """Makes nodes and constants for a rewrite of ``anchor``, named ``<anchor>/<rule>/<op>_<n>``."""

    def __init__(self, graph: gs.Graph, anchor: gs.Node, rule: str):
        self.graph, self.prefix = graph, f"{anchor.name or anchor.op}/{rule}"
        self._names = UniqueNames(graph)

    def name(self, stem: str) -> str:
        """A fresh name under this rewrite's prefix, for nodes and tensors you build yourself."""
        return self._name(stem)

    def _name(self, stem: str) -> str:
        return self._names(f"{self.prefix}/{stem}")

    def var(self, stem: str, dtype=None, shape=None) -> gs.Variable:
        """A new, uniquely named tensor (for outputs you wire yourself)."""
        return gs.Variable(self._name(stem), dtype=dtype, shape=shape)

    def const(self, values, dtype=None) -> gs.Constant:
        return gs.Constant(self._name("const"), np.asarray(values, dtype=dtype))

    def op(self, op: str, inputs: list, attrs: dict | None = None, dtype=None, shape=None,
           outputs: int | list = 1, domain: str | None = None):
        """Add a node; returns its output Variable (or a list when ``outputs`` > 1 or is a list of tensors)."""
        ins = [t if isinstance(t, gs.Tensor) else self.const(t) for t in inputs]
        if isinstance(outputs, int):
            outs = [gs.Variable(self._name(f"{op.lower()}_out"), dtype=dtype, shape=shape) for _ in range(outputs)]
        else:
            outs = outputs
        node = gs.Node(op, self._name(op), attrs=attrs or {}, inputs=ins, outputs=outs, domain=domain)
        self.graph.nodes.append(node)
        return outs[0] if len(outs) == 1 and isinstance(outputs, int) else outs


def replace_output(graph: gs.Graph, old: gs.Tensor, new: gs.Tensor) -> None:
    """Make every consumer of ``old`` (and the graph outputs) read ``new`` instead.

    When ``old`` is a graph output, the output keeps its name: ``new`` takes
    over the name and ``old`` is renamed, so the model's interface is unchanged.
    """
    reconnect(old.outputs, "inputs", old, new)
    for i, t in enumerate(graph.outputs):
        if t is old:
            name = old.name
            old.name = f"{name}/replaced"
            new.name = name
            if new.dtype is None:
                new.dtype = old.dtype
            if new.shape is None:
                new.shape = old.shape
            graph.outputs[i] = new


def constant_value(t: gs.Tensor):
    """The numpy value of ``t`` if it is a constant (initializer or Constant node), else None."""
    if isinstance(t, gs.Constant):
        return t.values
    if len(t.inputs) == 1 and t.inputs[0].op == "Constant" and "value" in t.inputs[0].attrs:
        return t.inputs[0].attrs["value"].values
    return None


def static_shape(t: gs.Tensor) -> tuple[int, ...] | None:
    """``t``'s shape when every dimension is a known non-negative int, else None."""
    if t.shape is None or any(not isinstance(d, (int, np.integer)) or d < 0 for d in t.shape):
        return None
    return tuple(int(d) for d in t.shape)


def apply_rules(graph: gs.Graph, rules: list[Rule]) -> dict:
    """Run every rule over every node of ``graph`` and its subgraphs, once; returns the stats.

    Stats: ``applied`` maps rule name to the nodes it rewrote; ``refused``
    lists ``{"rule", "node", "reason"}`` for nodes a rule wanted but refused.
    Dangling nodes are cleaned up afterwards (only when something was applied).
    """
    applied: dict[str, list[str]] = {}
    refused: list[dict] = []
    notes: dict[str, list] = {}
    for g in [graph, *graph.subgraphs(recursive=True)]:
        for node in list(g.nodes):
            for rule in rules:
                if rule.op and node.op != rule.op:
                    continue
                if not any(out.outputs or out in g.outputs for out in node.outputs):
                    break  # an earlier rule already replaced this node
                if not _call(rule, "wants", node, g):
                    continue
                reason = _call(rule, "check", node, g)
                if reason:
                    refused.append({"rule": rule.name, "node": node.name, "reason": reason})
                    continue
                note = _call(rule, "apply", node, g)
                applied.setdefault(rule.name, []).append(node.name)
                if note:
                    notes.setdefault(rule.name, []).append(note)
    if applied:
        graph.cleanup(remove_unused_graph_inputs=False).toposort()
    return {"applied": applied, "refused": refused, **({"notes": notes} if notes else {})}


class RuleFailed(Exception):
    """A rule's ``wants``, ``check`` or ``apply`` raised; names the rule, the method and the node."""

    def __init__(self, rule: str, method: str, node: str, error: BaseException):
        self.rule, self.method, self.node = rule, method, node
        lines = str(error).strip().splitlines()
        super().__init__(f"rule '{rule}' raised {type(error).__name__}" + (f" ({lines[0][:200]})" if lines else "")
                         + f" in {method}() on node '{node}'")


def _call(rule: Rule, method: str, node: gs.Node, graph: gs.Graph):
    try:
        return getattr(rule, method)(node, graph)
    except Exception as e:  # the rule's bug, not the graph's: say whose
        raise RuleFailed(rule.name, method, node.name, e) from e


class RuleFileError(Exception):
    """A ``--rules`` file that cannot be used; the message names the file and what is wrong."""


def load_rules_file(path: Path) -> list[Rule]:
    """Import ``path`` and return its ``RULES`` list, checking each entry follows the rule API."""
    path = Path(path)
    if not path.is_file():
        raise RuleFileError(f"rules file {path} does not exist")
    spec = importlib.util.spec_from_file_location(f"tf2trt_user_rules_{abs(hash(str(path.resolve())))}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        raise RuleFileError(f"rules file {path} failed to import: {type(e).__name__}: {e}") from e
    rules = getattr(module, "RULES", None)
    if not isinstance(rules, (list, tuple)) or not rules:
        raise RuleFileError(f"rules file {path} defines no RULES list (write RULES = [MyRule(), ...])")
    for r in rules:
        if not isinstance(r, Rule):
            raise RuleFileError(f"rules file {path}: RULES holds {r!r}, which is not a passes.rules.Rule instance")
        if not r.name:
            raise RuleFileError(f"rules file {path}: rule {type(r).__name__} has no name")
    names = [r.name for r in rules]
    if len(set(names)) != len(names):
        raise RuleFileError(f"rules file {path} names a rule twice: {names}")
    return list(rules)


__all__ = ["Builder", "Rule", "RuleFileError", "apply_rules", "constant_value", "load_rules_file", "replace_output",
           "static_shape"]
