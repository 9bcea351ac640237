"""eliminate_transposes: cancel, merge, fold and push Transposes down the graph until they meet and vanish.

tf2onnx keeps TensorFlow's NHWC layout at the graph edges and puts a
Transpose around every layout-sensitive op; TensorRT runs each one as a copy.
With ``T_p`` a Transpose by ``perm = p`` (``y.shape[i] = x.shape[p[i]]``), ``r`` the rank:

- identity: ``T_id(x) = x``;
- merge: ``T_p(T_q(x)) = T_s(x)`` with ``s[i] = q[p[i]]`` (identity ``s``: both vanish);
- fold: ``T_p(C) = C'`` for a constant ``C`` (the transposed values);
- push down: for an op ``f`` that commutes with layout, ``f(T_p(x)) = T_p(f'(x))`` where ``f'``
  has its axis-bearing attributes/inputs mapped through ``p``:

  - unary and elementwise ops: other inputs that are constants are inverse-transposed
    (after right-aligning them to rank ``r``, as broadcasting does), ``T_p(x2)`` inputs are unwrapped;
  - Concat/Split/Softmax/Slice: axis ``a → p[a]``; Pad and Resize: per-axis values re-ordered;
  - Reduce* and Squeeze: axes ``a → p[a]``; with dropped axes the remaining ones get the induced
    permutation;
  - MatMul with a rank-2 ``B`` when ``p`` keeps the last axis (``p[r-1] = r-1``): the product
    acts on the last axis only, so ``T_p(x)·B = T_p(x·B)``;
  - MatMul with a constant ``W: [K, N]`` when ``p`` takes the channels axis 1 last
    (``p[0] = 0, p[r-1] = 1``, ``3 ≤ r ≤ 5``, the NCHW → NHWC family):
    ``(T_p(x)·W)[n, s.., o] = Σ_c x[n, c, s'..] W[c, o] = Conv(x, Wᵀ[o, c, 1, .., 1])[n, o, s'..]``,
    so ``T_p(x)·W = T_p(Conv1x1(x, Wᵀ))``. A 1×1 Conv rather than a MatMul on a moved axis
    (``Wᵀ · x[n, c, HW]``) because it needs no Reshapes around it, both TensorRT (its 1×1
    convolution tactics, bias and activation fused) and onnxruntime (NCHWc kernels at
    ``ORT_ENABLE_ALL``) run NCHW Conv at full speed, and ``fuse_into_conv`` then folds the
    following bias and scale (Keras Dense bias, ConvNeXt's layer scale) into its weights;
  - LayerNormalization over the last axis only: with ``p[r-1] = r-1`` it is a plain push; otherwise
    ONNX's LayerNormalization cannot normalise axis ``a = p[r-1]`` alone, so it becomes the
    mean-variance chain ``d = x − mean_a(x)``, ``y = d / sqrt(mean_a(d·d) + ε) · γ' + β'``
    (``γ', β'``: scale and bias reshaped to broadcast on axis ``a``), the form tf2onnx
    itself exports Keras' LayerNormalization in;
  - Reshape that only merges axes: ``Reshape(T_p(x), s) = T_q(Reshape(x, s'))`` when every
    output axis ``j`` is the product of a run ``g_j`` of consecutive axes of ``T_p(x)`` and
    ``p`` maps each run onto consecutive increasing axes of ``x`` (the runs keep their
    row-major order); ``s'`` lists the runs in ``x``'s order and ``q`` puts them back
    (ViT's patch stem: ``[N, C, H, W] → [N, H, W, C] → [N, HW, C]`` is
    ``[N, C, H, W] → [N, C, HW] → [N, HW, C]``).

A Transpose is pushed only when every consumer accepts it and it does not feed
a graph output. The sweep runs twice: first pushing only Transposes with one
consumer, so the count of Transposes never grows; then, on a copy, also
Transposes read by several consumers (a copy behind each), which is how the
branches of GELU, LayerNorm and residual blocks meet again at their join (a
consumer that does not accept yet keeps reading the Transpose, e.g.
``Sub(y, mean(y))`` until the mean's branch is pushed). The copy also turns
tf2onnx's Reshapes that stand for a Transpose of size-1 axes
(``[N, H, W, 1] → [N, 1, H, W]``) into that Transpose, so they can meet their
partners, and turns every Transpose left that moves only size-1 axes into a
Reshape (it moves no data). The copy's result is kept only if it has fewer
Transposes than the first sweep's.
Pushed copies cancel where two layouts meet (NHWC input made NCHW with
``--inputs-as-nchw`` against tf2onnx's first NCHW Transpose, for example).
Every rewrite but three only moves data, so those results are bit-identical;
the 1×1 Conv and a global pool turned ReduceMean sum in another order, and the
decomposed LayerNormalization rounds differently (float32: about 1e-7 relative). Other
consumers and opsets it does not understand are left alone.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import onnx_graphsurgeon as gs

from .infra import Pass, PassResult, UniqueNames, reconnect
from .rules import constant_value as _const
from .rules import static_shape

UNARY = {"Relu", "LeakyRelu", "Elu", "Selu", "Celu", "Gelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Softplus",
         "Softsign", "Abs", "Neg", "Exp", "Log", "Sqrt", "Reciprocal", "Floor", "Ceil", "Round", "Sign", "Erf", "Not",
         "Cast", "Identity", "Sin", "Cos", "IsNaN", "IsInf", "Mish", "ThresholdedRelu"}
ELEMENTWISE = {"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "Equal", "Greater", "GreaterOrEqual",
               "Less", "LessOrEqual", "And", "Or", "Xor", "Where", "Mod", "BitShift", "PRelu"}
# Clip's min/max are scalars: it behaves as a unary op on input 0.
SCALAR_OPERANDS = {"Clip"}
REDUCE = {"ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
          "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"}
PAD_MODES = ("constant", "reflect", "edge", b"constant", b"reflect", b"edge")


def inverse(p):
    q = [0] * len(p)
    for i, v in enumerate(p):
        q[v] = i
    return q


def _perm(node: gs.Node, rank: int | None):
    perm = node.attrs.get("perm")
    if perm is None:
        return None if rank is None else list(range(rank))[::-1]
    return [int(v) for v in perm]


def _axis(a: int, rank: int) -> int:
    return a + rank if a < 0 else a


@dataclass
class _Site:
    """One Transpose being pushed: ``y = T_p(x)`` in ``graph``; ``names`` makes fresh names."""
    graph: gs.Graph
    y: gs.Tensor
    x: gs.Tensor
    p: list
    names: Callable[[str], str]

    def constant(self, like: gs.Tensor, values) -> gs.Constant:
        return gs.Constant(self.names(like.name), np.ascontiguousarray(values))

    def variable(self, stem: str, shape) -> gs.Variable:
        return gs.Variable(self.names(stem), dtype=self.x.dtype, shape=shape)


class EliminateTransposes(Pass):
    name = "eliminate_transposes"

    def __init__(self, max_rounds: int = 64):
        self.max_rounds = max_rounds

    def run(self, graph: gs.Graph) -> PassResult:
        self.opset = graph.opset
        before = _count(graph)
        stats = self._sweep(graph, branches=False)
        changed = any(stats.values())
        if _count(graph):
            trial = graph.copy()
            as_transposes = _unit_reshapes_to_transposes(trial)
            trial_stats = self._sweep(trial, branches=True)
            as_reshapes = _unit_transposes_to_reshapes(trial)
            if _count(trial) < _count(graph):
                graph.nodes, graph.inputs, graph.outputs = trial.nodes, trial.inputs, trial.outputs
                stats = {k: stats[k] + trial_stats[k] for k in stats}
                stats.update(unit_reshapes_as_transposes=as_transposes, unit_transposes_as_reshapes=as_reshapes)
                changed = True
        if changed:
            graph.cleanup(remove_unused_graph_inputs=False).toposort()
        stats["transposes_before"] = before
        stats["transposes_after"] = _count(graph)
        return PassResult(changed=changed, stats=stats)

    def _sweep(self, graph: gs.Graph, branches: bool) -> dict:
        """Simplify every Transpose, round after round, until a round changes nothing; the counts by kind."""
        stats = {"removed_identity": 0, "merged": 0, "folded": 0, "pushed": 0}
        unique = UniqueNames(graph)

        def names(stem: str) -> str:
            return unique(f"{stem}/{self.name}")
        for _ in range(self.max_rounds):
            progress = False
            for node in list(graph.nodes):
                if node.op != "Transpose" or not node.outputs or not node.inputs:
                    continue
                y = node.outputs[0]
                if not y.outputs and y not in graph.outputs:
                    continue  # dead: cleanup below
                kind = self._simplify(graph, node, names, branches)
                if kind:
                    stats[kind] += 1
                    progress = True
            if not progress:
                break
            graph.cleanup(remove_unused_graph_inputs=False)
        return stats

    # -- one Transpose --------------------------------------------------------------------------
    def _simplify(self, graph, node, names, branches: bool) -> str | None:
        x, y = node.inputs[0], node.outputs[0]
        p = _perm(node, len(x.shape) if x.shape is not None else None)
        if p is None:
            return None
        if p == list(range(len(p))):
            return "removed_identity" if self._remove(graph, node, x) else None
        if self._merge(graph, node, p):
            return "merged"
        values = _const(x)
        if values is not None and y not in graph.outputs and values.ndim == len(p):
            reconnect(y.outputs, "inputs", y, gs.Constant(names(x.name), np.ascontiguousarray(np.transpose(values, p))))
            return "folded"
        if y in graph.outputs or not y.outputs:
            return None
        consumers = list({id(c): c for c in y.outputs}.values())
        if len(consumers) != 1 and not branches:
            return None  # one copy per consumer would add Transposes
        plans = [(c, self._plan(c, y, p)) for c in consumers]
        # Single-consumer sweep: all or nothing. Branch sweep: into every consumer that accepts; the rest
        # keep reading y (e.g. Sub(y, mean(y)) accepts once the mean's branch has been pushed).
        if any(plan is None for _, plan in plans) and not branches:
            return None
        plans = [(c, plan) for c, plan in plans if plan is not None]
        if not plans:
            return None
        site = _Site(graph, y, x, p, names)
        for consumer, plan in plans:
            self._push(site, consumer, plan)
        return "pushed"

    def _merge(self, graph, node, p) -> bool:
        """``T_p(T_q(x))`` → ``T_s(x)``, or nothing where ``s`` is the identity."""
        x = node.inputs[0]
        producer = x.inputs[0] if len(x.inputs) == 1 else None
        if producer is None or producer.op != "Transpose" or not producer.inputs:
            return False
        q = _perm(producer, len(p))
        if q is None or len(q) != len(p):
            return False
        s = [q[p[i]] for i in range(len(p))]
        inner = producer.inputs[0]
        if s == list(range(len(s))):
            self._remove(graph, node, inner)
        else:
            node.inputs[0] = inner
            node.attrs["perm"] = s
        return True

    def _remove(self, graph, node, source: gs.Tensor) -> bool:
        """Drop ``node`` (an identity Transpose) so its output's readers read ``source``.

        A graph output keeps its name: the node producing ``source`` writes it
        directly; where ``source`` has no producer to rename (a graph input or
        output), the node becomes an Identity. Returns False when nothing changed.
        """
        y = node.outputs[0]
        if y not in graph.outputs:
            reconnect(y.outputs, "inputs", y, source)
            return True
        producer = source.inputs[0] if len(source.inputs) == 1 else None
        if producer is None or source in graph.outputs or source in graph.inputs:
            if node.op == "Identity":
                return False
            node.op, node.attrs = "Identity", {}
            node.inputs[0] = source
            return True
        reconnect(source.outputs, "inputs", source, y)
        node.outputs.clear()
        producer.outputs[producer.outputs.index(source)] = y
        return True

    # -- planning: how one consumer changes -----------------------------------------------------------
    def _plan(self, c: gs.Node, y, p):
        """How ``c`` changes when its input ``y = T_p(x)`` is replaced by ``x``: ``(kind, data)``, or None
        where it can't."""
        slots = [i for i, t in enumerate(c.inputs) if t is y]
        if (c.domain or "") not in ("", "ai.onnx") or len(c.outputs) < 1:
            return None
        if c.op in UNARY or c.op in SCALAR_OPERANDS:
            return ("same", None) if slots == [0] and len(c.outputs) == 1 else None
        if c.op in ELEMENTWISE:
            return self._plan_elementwise(c, y, p)
        if c.op == "Concat":
            return self._plan_concat(c, y, p)
        if c.op == "Transpose":  # a branch's partner: T_q(T_p(x)) = T_s(x)
            q = _perm(c, len(p))
            return None if q is None or len(q) != len(p) else ("transpose", [p[q[i]] for i in range(len(p))])
        if slots != [0]:
            return None
        planner = {"Split": self._plan_split, "Slice": self._plan_slice, "Pad": self._plan_pad,
                   "Resize": self._plan_resize, "Squeeze": self._plan_reduce, "MatMul": self._plan_matmul,
                   "LayerNormalization": self._plan_layernorm, "Reshape": self._plan_reshape,
                   "GlobalAveragePool": self._plan_global_pool, "GlobalMaxPool": self._plan_global_pool,
                   **{op: self._plan_reduce for op in REDUCE},
                   **{op: self._plan_softmax for op in ("Softmax", "LogSoftmax", "Hardmax")}}.get(c.op)
        return None if planner is None else planner(c, p)

    def _plan_elementwise(self, c, y, p):
        if len(c.outputs) != 1:
            return None
        r, operands = len(p), {}
        for i, t in enumerate(c.inputs):
            if t is y:
                continue
            unwrapped = self._unwrap(t, p)
            if unwrapped is not None:
                operands[i] = unwrapped
                continue
            v = _const(t)
            if v is None or v.ndim > r:
                return None
            if v.size == 1 and v.ndim <= 1:
                continue  # a scalar broadcasts the same in any layout
            operands[i] = np.transpose(v.reshape((1,) * (r - v.ndim) + v.shape), inverse(p))
        return ("elementwise", operands)

    def _plan_concat(self, c, y, p):
        r, operands = len(p), {}
        for i, t in enumerate(c.inputs):
            if t is y:
                continue
            unwrapped = self._unwrap(t, p)
            v = _const(t) if unwrapped is None else None
            if unwrapped is None and (v is None or v.ndim != r):
                return None
            operands[i] = unwrapped if unwrapped is not None else np.transpose(v, inverse(p))
        return ("axis", {"axis": p[_axis(c.attrs["axis"], r)], "operands": operands})

    def _plan_softmax(self, c, p):
        if self.opset < 13:
            return None  # before 13 Softmax flattens from its axis on: not a per-axis op
        return ("axis", {"axis": p[_axis(c.attrs.get("axis", -1), len(p))], "operands": {}})

    def _plan_split(self, c, p):
        # One copy per output; worth it only where each copy meets a Transpose to merge with.
        if not all(z.outputs and all(n.op == "Transpose" for n in z.outputs) for z in c.outputs):
            return None
        return ("axis", {"axis": p[_axis(c.attrs.get("axis", 0), len(p))], "operands": {}})

    def _plan_slice(self, c, p):
        axes = _const(c.inputs[3]) if len(c.inputs) >= 4 else None
        if axes is None:
            return None
        return ("slice", [p[_axis(int(a), len(p))] for a in axes.reshape(-1)])

    def _plan_pad(self, c, p):
        r = len(p)
        if not 2 <= len(c.inputs) < 4 or c.attrs.get("mode", "constant") not in PAD_MODES:
            return None
        pads = _const(c.inputs[1])
        if pads is None or pads.size != 2 * r:
            return None
        q = inverse(p)
        return ("pad", np.concatenate([pads[:r][q], pads[r:][q]]).astype(pads.dtype))

    @staticmethod
    def _unwrap(t: gs.Tensor, p):
        """``x2`` if ``t = T_p(x2)``, else None."""
        prod = t.inputs[0] if len(t.inputs) == 1 else None
        if prod is not None and prod.op == "Transpose" and prod.inputs:
            return prod.inputs[0] if _perm(prod, len(p)) == list(p) else None
        return None

    def _plan_resize(self, c, p):
        q, r = inverse(p), len(p)
        if c.attrs.get("axes") is not None:
            return None
        new_inputs = {}
        for slot in (1, 2, 3):  # roi, scales, sizes
            if len(c.inputs) <= slot or (isinstance(c.inputs[slot], gs.Variable) and not c.inputs[slot].name):
                continue
            v = _const(c.inputs[slot])
            if v is None:
                return None
            if v.size == 0:
                continue
            if v.size != (2 * r if slot == 1 else r):
                return None
            new_inputs[slot] = (np.concatenate([v[:r][q], v[r:][q]]) if slot == 1 else v[q]).astype(v.dtype)
        return ("resize", new_inputs)

    def _plan_reduce(self, c, p):
        r = len(p)
        if (c.op in ("Squeeze", "ReduceSum") and self.opset >= 13) or self.opset >= 18:
            axes_t = c.inputs[1] if len(c.inputs) > 1 and c.inputs[1].name else None
            axes = None if axes_t is None else _const(axes_t)
            if axes_t is not None and axes is None:
                return None
            where = "input"
        else:
            axes = c.attrs.get("axes")
            where = "attr"
        if axes is None:
            if c.op == "Squeeze" or c.attrs.get("noop_with_empty_axes", 0):
                return None  # which axes a Squeeze drops depends on the shape; not worth it
            axes = list(range(r))
        axes = sorted(_axis(int(a), r) for a in np.asarray(axes).reshape(-1))
        new_axes = sorted(p[a] for a in axes)
        if c.op != "Squeeze" and c.attrs.get("keepdims", 1):
            out_perm = list(p)
        else:
            kept_y = [i for i in range(r) if i not in axes]
            kept_x = [d for d in range(r) if d not in new_axes]
            out_perm = [kept_x.index(p[i]) for i in kept_y]
        return ("reduce", {"axes": new_axes, "where": where, "out_perm": out_perm})

    def _plan_global_pool(self, c, p):
        """``GlobalAveragePool(y)`` is ``ReduceMean(y, axes=[2..r-1], keepdims=1)`` (Max alike): axes ``p[2:]``."""
        if p[:2] == [0, 1]:
            return ("same", None)
        op = {"GlobalAveragePool": "ReduceMean", "GlobalMaxPool": "ReduceMax"}[c.op]
        where = "input" if self.opset >= 18 else "attr"
        return ("global_pool", {"op": op, "axes": sorted(p[2:]), "where": where, "out_perm": list(p)})

    def _plan_matmul(self, c, p):
        r, b = len(p), c.inputs[1]
        if b.shape is None or len(b.shape) != 2 or len(c.outputs) != 1:
            return None
        if p[-1] == r - 1:
            return ("same", None)  # the product acts on the last axis alone
        w = _const(b)
        if w is None or w.dtype.kind != "f" or not 3 <= r <= 5 or p[0] != 0 or p[-1] != 1:
            return None
        return ("conv1x1", np.ascontiguousarray(w.T).reshape(w.shape[1], w.shape[0], *([1] * (r - 2))))

    def _plan_layernorm(self, c, p):
        r = len(p)
        if _axis(int(c.attrs.get("axis", -1)), r) != r - 1 or len(c.outputs) != 1:
            return None  # (its optional Mean and InvStdDev outputs have no decomposed counterpart here)
        if p[-1] == r - 1:
            return ("same", None)
        a = p[-1]
        scale, bias = _const(c.inputs[1]), _const(c.inputs[2]) if len(c.inputs) > 2 and c.inputs[2].name else None
        if scale is None or (bias is None and len(c.inputs) > 2 and c.inputs[2].name) or c.inputs[0].dtype != np.float32:
            return None  # float32 only: LayerNormalization's stash_type computes in float32 whatever the input
        shape = [1] * r
        shape[a] = -1
        return ("layernorm", {"axis": a, "eps": float(c.attrs.get("epsilon", 1e-5)), "scale": scale.reshape(shape),
                              "bias": None if bias is None else bias.reshape(shape)})

    def _plan_reshape(self, c, p):
        ys, out = static_shape(c.inputs[0]), static_shape(c.outputs[0])
        if ys is None or out is None or c.attrs.get("allowzero", 0) or 0 in ys:
            return None
        if _moves_only_unit_axes([ys[inverse(p)[d]] for d in range(len(p))], p):
            return ("reshape", {"shape": list(out), "out_perm": list(range(len(out)))})  # T_p moved no data
        groups = _merge_groups(list(ys), list(out))
        if groups is None:
            return None
        runs = [[p[i] for i in g] for g in groups]
        if any(g != list(range(g[0], g[0] + len(g))) for g in runs):
            return None
        order = sorted(range(len(groups)), key=lambda j: runs[j][0])
        return ("reshape", {"shape": [out[j] for j in order], "out_perm": [order.index(j) for j in range(len(out))]})

    # -- applying a plan -------------------------------------------------------------------------------
    def _push(self, site: _Site, c: gs.Node, plan) -> None:
        """Move ``site``'s Transpose past its consumer ``c`` as ``plan`` says, then put ``T`` back behind
        each of ``c``'s outputs (in the permutation the plan leaves them in)."""
        kind, data = plan
        for i, t in enumerate(c.inputs):
            if t is site.y:
                c.inputs[i] = site.x
        apply = {"same": _apply_same, "elementwise": _apply_operands, "axis": _apply_axis, "slice": _apply_slice,
                 "pad": _apply_pad, "resize": _apply_resize, "reduce": _apply_reduce, "transpose": _apply_transpose,
                 "conv1x1": _apply_conv1x1, "layernorm": _apply_layernorm, "reshape": _apply_reshape,
                 "global_pool": _apply_global_pool}[kind]
        out_perm = apply(site, c, data)
        if out_perm == list(range(len(out_perm))):
            return  # e.g. reduced to a scalar, or the layouts agree again: nothing to put back
        for k, z in enumerate(list(c.outputs)):
            inner_shape = None
            if z.shape is not None and len(z.shape) == len(out_perm):
                inner_shape = [z.shape[i] for i in inverse(out_perm)]
            inner = gs.Variable(site.names(z.name), dtype=z.dtype, shape=inner_shape)
            c.outputs[k] = inner
            site.graph.nodes.append(gs.Node("Transpose", site.names(c.name + "/Transpose"),
                                            attrs={"perm": list(out_perm)}, inputs=[inner], outputs=[z]))


def _count(graph: gs.Graph) -> int:
    return sum(n.op == "Transpose" for n in graph.nodes)


def _moves_only_unit_axes(xs, p) -> bool:
    """Does ``T_p`` on a tensor of shape ``xs`` keep every axis of size > 1 in its order (move no data)?"""
    moved = [a for a in p if xs[a] != 1]
    return moved == sorted(moved)


def _unit_reshapes_to_transposes(graph: gs.Graph) -> int:
    """tf2onnx writes a Transpose that only moves size-1 axes as a Reshape (``[N, H, W, 1] → [N, 1, H, W]``);
    as a Transpose again, it can meet its partner. Returns how many it rewrote."""
    done = 0
    for node in graph.nodes:
        xs = static_shape(node.inputs[0]) if node.op == "Reshape" and node.inputs else None
        ys = static_shape(node.outputs[0]) if xs is not None else None
        if ys is None or len(xs) != len(ys) or xs == ys or node.attrs.get("allowzero", 0):
            continue
        big_x, big_y = [i for i, d in enumerate(xs) if d != 1], [i for i, d in enumerate(ys) if d != 1]
        if [xs[i] for i in big_x] != [ys[i] for i in big_y]:
            continue
        units = iter(i for i, d in enumerate(xs) if d == 1)
        bigs = iter(big_x)
        perm = [next(bigs) if d != 1 else next(units) for d in ys]
        node.op, node.attrs = "Transpose", {"perm": perm}
        while len(node.inputs) > 1:  # (graphsurgeon's synchronised lists take no slices)
            node.inputs.pop()
        done += 1
    return done


def _unit_transposes_to_reshapes(graph: gs.Graph) -> int:
    """The Transposes left that move no data (only size-1 axes) back to Reshapes; how many."""
    names, done = UniqueNames(graph), 0
    for node in graph.nodes:
        xs = static_shape(node.inputs[0]) if node.op == "Transpose" and node.inputs else None
        ys = static_shape(node.outputs[0]) if xs is not None and node.outputs else None
        p = _perm(node, len(xs)) if ys is not None else None
        if p is None or len(p) != len(xs) or not _moves_only_unit_axes(xs, p):
            continue
        node.op, node.attrs = "Reshape", {}
        node.inputs.append(gs.Constant(names(f"{node.name}/shape"), np.asarray(ys, dtype=np.int64)))
        done += 1
    return done


def _merge_groups(ys: list, out: list) -> list[list[int]] | None:
    """For a Reshape from ``ys`` to ``out`` that only merges axes: the run of input axes behind each output
    axis (size-1 input axes join the run before them); None for any other Reshape."""
    groups, i = [], 0
    for d in out:
        group, size = [], 1
        while i < len(ys) and (not group or size < d):
            group.append(i)
            size *= ys[i]
            i += 1
        if not group or size != d:
            return None
        groups.append(group)
    while i < len(ys) and ys[i] == 1 and groups:
        groups[-1].append(i)
        i += 1
    return groups if i == len(ys) else None


# Each applier rewrites ``c`` (whose ``y`` inputs already read ``x``) and returns the permutation its
# outputs are left in relative to the originals.
def _apply_same(site, c, data):
    return list(site.p)


def _apply_operands(site, c, operands):
    for i, v in operands.items():
        c.inputs[i] = v if isinstance(v, gs.Tensor) else site.constant(c.inputs[i], v)
    return list(site.p)


def _apply_axis(site, c, data):
    c.attrs["axis"] = data["axis"]
    return _apply_operands(site, c, data["operands"])


def _apply_slice(site, c, axes):
    c.inputs[3] = site.constant(c.inputs[3], np.asarray(axes, dtype=np.int64))
    return list(site.p)


def _apply_pad(site, c, pads):
    c.inputs[1] = site.constant(c.inputs[1], pads)
    return list(site.p)


def _apply_resize(site, c, new_inputs):
    for slot, v in new_inputs.items():
        c.inputs[slot] = site.constant(c.inputs[slot], v)
    return list(site.p)


def _apply_reduce(site, c, data):
    axes = np.asarray(data["axes"], dtype=np.int64)
    if data["where"] == "attr":
        c.attrs["axes"] = [int(a) for a in axes]
    elif len(c.inputs) > 1 and c.inputs[1].name:
        c.inputs[1] = site.constant(c.inputs[1], axes)
    elif c.op != "Squeeze":
        c.inputs.append(gs.Constant(site.names(c.name + "/axes"), axes))
    return data["out_perm"]


def _apply_transpose(site, c, perm):
    c.attrs["perm"] = list(perm)
    return list(range(len(perm)))  # c itself restores (or moves on from) the layout


def _apply_conv1x1(site, c, kernel):
    c.op, c.attrs = "Conv", {"kernel_shape": [1] * (kernel.ndim - 2)}
    c.inputs[1] = site.constant(c.inputs[1], kernel)
    return list(site.p)


def _apply_global_pool(site, c, data):
    c.op, c.attrs = data["op"], {"keepdims": 1}
    return _apply_reduce(site, c, data)


def _apply_reshape(site, c, data):
    c.inputs[1] = gs.Constant(site.names(c.inputs[1].name), np.asarray(data["shape"], dtype=np.int64))
    return data["out_perm"]


def _apply_layernorm(site, c, data):
    """c becomes the last node of ``(x − mean) / sqrt(var + ε) · γ + β`` over axis ``data["axis"]``."""
    x, a = site.x, data["axis"]
    reduced = None if x.shape is None else [1 if i == a else d for i, d in enumerate(x.shape)]
    node = _Chain(site, c)
    mean = node.reduce_mean(x, a, reduced)
    d = node("Sub", [x, mean], x.shape)
    var = node.reduce_mean(node("Mul", [d, d], x.shape), a, reduced)
    eps = gs.Constant(site.names(c.name + "/eps"), np.asarray(data["eps"], np.float32))
    std = node("Sqrt", [node("Add", [var, eps], reduced)], reduced)
    scaled_in = [node("Div", [d, std], x.shape), site.constant(c.inputs[1], data["scale"].astype(np.float32))]
    bias = data["bias"]
    if bias is not None:
        scaled_in = [node("Mul", scaled_in, x.shape), site.constant(c.inputs[2], bias.astype(np.float32))]
    c.op, c.attrs = "Mul" if bias is None else "Add", {}
    c.inputs.clear()
    c.inputs.extend(scaled_in)
    return list(site.p)


class _Chain:
    """Appends the nodes of a decomposition in front of ``c``, named after it."""

    def __init__(self, site: _Site, c: gs.Node):
        self.site, self.c = site, c

    def __call__(self, op, inputs, shape, attrs=None):
        out = self.site.variable(f"{self.c.name}/{op}", shape)
        self.site.graph.nodes.append(gs.Node(op, self.site.names(f"{self.c.name}/{op}"), attrs=attrs or {},
                                             inputs=inputs, outputs=[out]))
        return out

    def reduce_mean(self, t, axis, shape):
        if self.site.graph.opset >= 18:
            axes = gs.Constant(self.site.names(f"{self.c.name}/axes"), np.asarray([axis], dtype=np.int64))
            return self("ReduceMean", [t, axes], shape, {"keepdims": 1})
        return self("ReduceMean", [t], shape, {"axes": [axis], "keepdims": 1})
