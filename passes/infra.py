"""Pass base class, results, and the manager that runs a pipeline to a fixed point.

A pass mutates a ``gs.Graph`` in place and says honestly whether it changed
anything. The manager trusts but verifies: it fingerprints the graph around
every pass and treats a claim that disagrees with the fingerprint as a bug in
that pass. It also records time, node counts and op deltas per pass, can dump
the graph after each pass, and can run a numerics check after each pass so a
pass that breaks semantics is named rather than guessed.
"""
from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import onnx
import onnx_graphsurgeon as gs

from compiler.common.onnxutil import save

Shape = tuple[int, ...]

# IR version 3 requires every initializer to be listed as a graph input; onnx-graphsurgeon lists none, and
# shape inference then cannot see the weights folding made. Version 4 only drops that rule.
MIN_IR_VERSION = 4


# Model metadata key under which the manager records which pass created each node (nodes the exporter made are
# absent). It survives every later stage that keeps ONNX metadata (the precision passes, onnxruntime's ORT
# format), so a build error or a divergent node can be traced back to the pass that made it.
PROVENANCE_KEY = "tf2trt.provenance"


def provenance(model: onnx.ModelProto) -> dict[str, str]:
    """node name -> the pass that created it, as recorded in ``model``'s metadata ({} if none)."""
    for prop in model.metadata_props:
        if prop.key == PROVENANCE_KEY:
            return {node: name for name, nodes in json.loads(prop.value).items() for node in nodes}
    return {}


def write_provenance(model: onnx.ModelProto, origin: dict[str, str]) -> None:
    """Store ``origin`` (node -> pass) for the nodes ``model`` still has, grouped by pass."""
    present = {n.name for n in model.graph.node}
    grouped: dict[str, list[str]] = {}
    for node, name in origin.items():
        if node in present:
            grouped.setdefault(name, []).append(node)
    for i, prop in enumerate(list(model.metadata_props)):
        if prop.key == PROVENANCE_KEY:
            del model.metadata_props[i]
            break
    if grouped:
        entry = model.metadata_props.add()
        entry.key, entry.value = PROVENANCE_KEY, json.dumps(grouped, sort_keys=True)


class PassError(Exception):
    """A pass could not do its job; the message names the pass and the reason."""


class PassBug(PassError):
    """A pass broke the contract (e.g. misreported ``changed``): a bug in that pass, not in the input."""

    def __init__(self, pass_name: str, message: str):
        self.pass_name = pass_name
        super().__init__(message)


@dataclass
class PassResult:
    changed: bool
    stats: dict = field(default_factory=dict)


class Pass:
    """Subclasses set ``name`` (== their file name) and implement ``run``; settings come through ``__init__``.

    ``once``: the pass changes the interface or is not idempotent by nature (freezing shapes, NCHW IO, the
    precision conversions), so the manager runs it once, before the fixed-point loop over the others.
    """

    name: str = ""
    once: bool = False

    def run(self, graph: gs.Graph) -> PassResult:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self):
        return f"<pass {self.name}>"


@dataclass
class PassRecord:
    name: str
    iteration: int
    changed: bool
    seconds: float
    nodes_before: int
    nodes_after: int
    op_delta: dict[str, int]
    stats: dict

    def to_json(self) -> dict:
        return {"name": self.name, "iteration": self.iteration, "changed": self.changed,
                "seconds": round(self.seconds, 6), "nodes_before": self.nodes_before,
                "nodes_after": self.nodes_after, "op_delta": self.op_delta, "stats": self.stats}


def _shape_key(t) -> tuple | None:
    return None if t.shape is None else tuple(t.shape)


def fingerprint(graph: gs.Graph) -> tuple:
    """A structural summary that changes whenever a pass changes the graph.

    Covers node order, ops, attributes, connections, graph IO, and every
    tensor's shape and dtype. Constant payloads are summarised by name, shape
    and dtype (a rewrite that changes values also renames or reshapes).
    """
    def attr_key(v):
        if isinstance(v, gs.Tensor):
            return ("tensor", v.name, _shape_key(v), str(v.dtype))
        if isinstance(v, gs.Graph):
            return ("graph", fingerprint(v))
        return repr(v)

    nodes = tuple(
        (n.op, n.name, n.domain, tuple(sorted((k, attr_key(v)) for k, v in n.attrs.items())),
         tuple(t.name for t in n.inputs), tuple(t.name for t in n.outputs))
        for n in graph.nodes)
    tensors = tuple(sorted((name, _shape_key(t), str(t.dtype), isinstance(t, gs.Constant))
                           for name, t in graph.tensors().items()))
    io = (tuple(t.name for t in graph.inputs), tuple(t.name for t in graph.outputs))
    return nodes, tensors, io


def structure(graph: gs.Graph) -> tuple:
    """Node identities and tensor names of the graph and every subgraph (Loop/If bodies, recursively).

    Cheap enough for a pass to compare before and after itself; the passes
    that clean or fold recurse into subgraphs, so their ``changed`` must too.
    """
    graphs = [graph, *graph.subgraphs(recursive=True)]
    return tuple((tuple(id(n) for n in g.nodes), frozenset(g.tensors())) for g in graphs)


def reconnect(nodes, field: str, old: gs.Tensor, new: gs.Tensor) -> None:
    """In each of ``nodes``, put ``new`` wherever ``field`` ("inputs" or "outputs") holds ``old``."""
    for node in list(nodes):
        slots = getattr(node, field)
        for i, t in enumerate(list(slots)):
            if t is old:
                slots[i] = new


class UniqueNames:
    """Fresh node/tensor names for a graph: ``names("a/b")`` → ``"a/b_<n>"``, never one already in use."""

    def __init__(self, graph: gs.Graph):
        self.taken = set(graph.tensors()) | {n.name for n in graph.nodes}
        self.n = 0

    def __call__(self, base: str) -> str:
        while True:
            name = f"{base}_{self.n}"
            self.n += 1
            if name not in self.taken:
                self.taken.add(name)
                return name


def op_counts(graph: gs.Graph) -> Counter:
    return Counter(n.op for n in graph.nodes)


CheckFn = Callable[[onnx.ModelProto, str], None]


class PassManager:
    """Runs ``passes`` in order, repeating the whole list until a round changes nothing."""

    def __init__(self, passes: list[Pass], max_iterations: int = 4, check: CheckFn | None = None,
                 dump_dir: Path | None = None, verify_changed: bool = True):
        names = [p.name for p in passes]
        if len(set(names)) != len(names):
            raise PassError(f"pipeline lists a pass twice: {names}")
        self.passes, self.max_iterations = passes, max_iterations
        self.check, self.dump_dir, self.verify_changed = check, dump_dir, verify_changed
        self.records: list[PassRecord] = []
        self._dumped = 0

    def _export(self, graph: gs.Graph, template: onnx.ModelProto) -> onnx.ModelProto:
        model = gs.export_onnx(graph, do_type_check=False)
        model.ir_version = max(template.ir_version, MIN_IR_VERSION)
        model.producer_name = template.producer_name
        model.producer_version = template.producer_version
        return model

    def _dump(self, graph, template, name):
        if self.dump_dir is None:
            return
        self.dump_dir.mkdir(parents=True, exist_ok=True)
        path = self.dump_dir / f"{self._dumped:03d}_{name}.onnx"
        save(self._export(graph, template), path, "pass dump")  # a model over 1 GiB: with external data
        self._dumped += 1

    def run(self, model: onnx.ModelProto) -> onnx.ModelProto:
        """The passes over ``model`` (a copy): the ``once`` passes in their order, then the others repeated until a
        round changes nothing (at most ``max_iterations`` rounds). Provenance goes into the result's metadata."""
        source = onnx.ModelProto()
        source.CopyFrom(model)  # graphsurgeon may write renamed initializers back into the proto it imports
        graph = gs.import_onnx(source)
        if graph.ir_version is not None and graph.ir_version < MIN_IR_VERSION:
            graph.ir_version = MIN_IR_VERSION
        self._dump(graph, model, "input")
        origin = provenance(model)
        for p in self.passes:
            if p.once:
                self._run_pass(p, graph, 1, origin, model)
        looped = [p for p in self.passes if not p.once]
        for iteration in range(1, self.max_iterations + 1):
            changed = [self._run_pass(p, graph, iteration, origin, model) for p in looped]
            if not any(changed):
                break
        result = self._export(graph, model)
        write_provenance(result, origin)
        return result

    def _run_pass(self, p: Pass, graph: gs.Graph, iteration: int, origin: dict, template) -> bool:
        """Run one pass, verify its ``changed`` against the fingerprint, record it; whether it changed the graph."""
        before_names = {n.name for n in graph.nodes}
        before_ops = op_counts(graph)
        before_fp = fingerprint(graph) if self.verify_changed else None
        start = time.perf_counter()
        result = p.run(graph)
        seconds = time.perf_counter() - start
        if not isinstance(result, PassResult):
            raise PassError(f"pass '{p.name}' returned {type(result).__name__}, not PassResult")
        if before_fp is not None:
            really = fingerprint(graph) != before_fp
            if really != result.changed:
                raise PassBug(p.name, f"pass '{p.name}' reported changed={result.changed} but the graph "
                                      f"{'did' if really else 'did not'} change")
        after_ops = op_counts(graph)
        delta = {op: after_ops[op] - before_ops[op] for op in sorted(set(before_ops) | set(after_ops))
                 if after_ops[op] != before_ops[op]}
        self.records.append(PassRecord(p.name, iteration, result.changed, seconds, sum(before_ops.values()),
                                       sum(after_ops.values()), delta, result.stats))
        if result.changed:
            origin.update((n.name, p.name) for n in graph.nodes if n.name and n.name not in before_names)
            self._dump(graph, template, p.name)
            if self.check is not None:
                self.check(self._export(graph, template), p.name)
        return result.changed
