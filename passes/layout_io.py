"""layout_io: present chosen graph inputs and outputs channels-first (``--inputs-as-nchw``/``--outputs-as-nchw``).

Rewrite, for an input ``x`` of rank r laid out channels-last (``N, D1..Dk, C``):
``x`` becomes ``x: [N, C, D1..Dk]`` followed by ``Transpose(perm=[0, 2..r-1, 1])``
that restores the old layout for the graph's nodes; for an output ``y``, the
old value is renamed and ``y = Transpose(old, perm=[0, r-1, 1..r-2])``. The
graph computes the same numbers; ``eliminate_transposes`` then cancels the new
Transposes against tf2onnx's own ones. Acts once per run (``ctx.state``), since
the interface change is not idempotent by nature.

Refuses (PassError) a name that is not a graph input/output, or a tensor whose
rank is unknown or below 3.
"""
from __future__ import annotations

import onnx_graphsurgeon as gs

from .infra import Pass, PassContext, PassError, PassResult


def to_nchw_perm(rank: int) -> list[int]:
    """perm taking channels-last to channels-first: ``[0, r-1, 1, ..., r-2]``."""
    return [0, rank - 1, *range(1, rank - 1)]


def to_nhwc_perm(rank: int) -> list[int]:
    return [0, *range(2, rank), 1]


def _rank(t: gs.Tensor, flag: str) -> int:
    if t.shape is None or len(t.shape) < 3:
        got = "unknown" if t.shape is None else len(t.shape)
        raise PassError(f"{flag} names '{t.name}', whose rank is {got}; only tensors of rank 3 or more "
                        "have a channels axis to move")
    return len(t.shape)


def _rewire(nodes, field: str, old: gs.Tensor, new: gs.Tensor) -> None:
    for node in list(nodes):
        slots = getattr(node, field)
        for i, t in enumerate(list(slots)):
            if t is old:
                slots[i] = new


class LayoutIO(Pass):
    name = "layout_io"

    def run(self, graph: gs.Graph, ctx: PassContext) -> PassResult:
        done = ctx.state.setdefault(self.name, set())
        # What changed at the interface, for callers who feed the model (validation, runtime):
        # candidate tensor = transpose(original tensor, perm).
        perms = ctx.state.setdefault("interface_perms", {"inputs": {}, "outputs": {}})
        inputs, outputs = {t.name: t for t in graph.inputs}, {t.name: t for t in graph.outputs}
        for flag, wanted, available in (("--inputs-as-nchw", ctx.inputs_as_nchw, inputs),
                                        ("--outputs-as-nchw", ctx.outputs_as_nchw, outputs)):
            unknown = [n for n in wanted if n not in available]
            if unknown:
                raise PassError(f"{flag} names {', '.join(unknown)}, not a graph {flag[2:-8]} "
                                f"(available: {', '.join(available)})")
        changed = []
        for name in ctx.inputs_as_nchw:
            if ("in", name) in done:
                continue
            x = inputs[name]
            r = _rank(x, "--inputs-as-nchw")
            inner = gs.Variable(f"{name}/nhwc", dtype=x.dtype, shape=list(x.shape))
            _rewire(x.outputs, "inputs", x, inner)
            graph.nodes.append(gs.Node("Transpose", f"{name}/layout_io", attrs={"perm": to_nhwc_perm(r)},
                                       inputs=[x], outputs=[inner]))
            x.shape = [x.shape[i] for i in to_nchw_perm(r)]
            done.add(("in", name))
            perms["inputs"][name] = to_nchw_perm(r)
            changed.append(f"input {name}")
        for name in ctx.outputs_as_nchw:
            if ("out", name) in done:
                continue
            y = outputs[name]
            r = _rank(y, "--outputs-as-nchw")
            inner = gs.Variable(f"{name}/nhwc", dtype=y.dtype, shape=list(y.shape))
            _rewire(y.inputs, "outputs", y, inner)
            _rewire(y.outputs, "inputs", y, inner)
            graph.nodes.append(gs.Node("Transpose", f"{name}/layout_io", attrs={"perm": to_nchw_perm(r)},
                                       inputs=[inner], outputs=[y]))
            y.shape = [inner.shape[i] for i in to_nchw_perm(r)]
            done.add(("out", name))
            perms["outputs"][name] = to_nchw_perm(r)
            changed.append(f"output {name}")
        if changed:
            graph.toposort()
        return PassResult(changed=bool(changed), stats={"nchw": changed})
