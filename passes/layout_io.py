"""layout_io: present chosen graph inputs and outputs channels-first (``--inputs-as-nchw``/``--outputs-as-nchw``).

Rewrite, for an input ``x`` of rank r laid out channels-last (``N, D1..Dk, C``):
``x`` becomes ``x: [N, C, D1..Dk]`` followed by ``Transpose(perm=[0, 2..r-1, 1])``
that restores the old layout for the graph's nodes; for an output ``y``, the
old value is renamed and ``y = Transpose(old, perm=[0, r-1, 1..r-2])``. The
graph computes the same numbers; ``eliminate_transposes`` then cancels the new
Transposes against tf2onnx's own ones. Runs once (``once``), since the
interface change is not idempotent by nature; its stats say what changed
(``perms``: per input and output, candidate = transpose(original, perm)),
which the optimize stage records as the model's interface change.

Refuses (PassError) a name that is not a graph input/output, or a tensor whose
rank is unknown or below 3.
"""
from __future__ import annotations

import onnx_graphsurgeon as gs

from .infra import Pass, PassError, PassResult, reconnect


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


class LayoutIO(Pass):
    name = "layout_io"
    once = True

    def __init__(self, nchw_in: tuple[str, ...] = (), nchw_out: tuple[str, ...] = ()):
        self.nchw_in, self.nchw_out = tuple(nchw_in), tuple(nchw_out)  # --inputs-as-nchw, --outputs-as-nchw

    def run(self, graph: gs.Graph) -> PassResult:
        # What changed at the interface, for callers who feed the model (validation, runtime):
        # candidate tensor = transpose(original tensor, perm).
        perms = {"inputs": {}, "outputs": {}}
        wanted = {"inputs": self.nchw_in, "outputs": self.nchw_out}
        available = {"inputs": {t.name: t for t in graph.inputs}, "outputs": {t.name: t for t in graph.outputs}}
        for kind, names in wanted.items():
            unknown = [n for n in names if n not in available[kind]]
            if unknown:
                raise PassError(f"--{kind}-as-nchw names {', '.join(unknown)}, not a graph {kind[:-1]} "
                                f"(available: {', '.join(available[kind])})")
        changed = []
        for kind, names in wanted.items():
            for name in names:
                t = available[kind][name]
                r = _rank(t, f"--{kind}-as-nchw")
                # The graph's own nodes keep reading and writing the old layout, as ``inner``.
                inner = gs.Variable(f"{name}/nhwc", dtype=t.dtype, shape=list(t.shape))
                reconnect(t.outputs, "inputs", t, inner)
                if kind == "inputs":
                    transpose = gs.Node("Transpose", f"{name}/layout_io", attrs={"perm": to_nhwc_perm(r)},
                                        inputs=[t], outputs=[inner])
                else:
                    reconnect(t.inputs, "outputs", t, inner)
                    transpose = gs.Node("Transpose", f"{name}/layout_io", attrs={"perm": to_nchw_perm(r)},
                                        inputs=[inner], outputs=[t])
                graph.nodes.append(transpose)
                t.shape = [inner.shape[i] for i in to_nchw_perm(r)]
                perms[kind][name] = to_nchw_perm(r)
                changed.append(f"{kind[:-1]} {name}")
        if changed:
            graph.toposort()
        return PassResult(changed=bool(changed), stats={"nchw": changed, "perms": perms})
