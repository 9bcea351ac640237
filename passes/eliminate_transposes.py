"""eliminate_transposes: cancel, merge, fold and push Transposes down the graph until they meet and vanish.

tf2onnx keeps TensorFlow's NHWC layout at the graph edges and puts a
Transpose around every layout-sensitive op; TensorRT runs each one as a copy.
With ``T_p`` a Transpose by ``perm = p`` (``y.shape[i] = x.shape[p[i]]``):

- identity: ``T_id(x) = x``;
- merge: ``T_p(T_q(x)) = T_r(x)`` with ``r[i] = q[p[i]]`` (identity ``r``: both vanish);
- fold: ``T_p(C) = C'`` for a constant ``C`` (the transposed values);
- push down: for an op ``f`` that commutes with layout, ``f(T_p(x)) = T_p(f'(x))`` where ``f'``
  has its axis-bearing attributes/inputs mapped through ``p``: unary and
  elementwise ops (other inputs: constants are inverse-transposed,
  ``T_p(x2)`` inputs are unwrapped), Concat/Split/Softmax/Slice (axis
  ``a → p[a]``), Pad and Resize (per-axis values re-ordered), Reduce* and
  Squeeze (axes ``a → p[a]``; with dropped axes the remaining ones get the
  induced permutation).

A Transpose is pushed only when all its consumers accept it and it does not
feed a graph output, so the count of Transposes never grows; the pushed copies
cancel where two layouts meet (NHWC input made NCHW with ``--inputs-as-nchw``
against tf2onnx's first NCHW Transpose, for example). Every rewrite only moves
data, so the results are bit-identical. Other consumers and opsets it does not
understand are left alone.
"""
from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from .infra import Pass, PassResult, UniqueNames, reconnect
from .rules import constant_value as _const

UNARY = {"Relu", "LeakyRelu", "Elu", "Selu", "Celu", "Gelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Softplus",
         "Softsign", "Abs", "Neg", "Exp", "Log", "Sqrt", "Reciprocal", "Floor", "Ceil", "Round", "Sign", "Erf", "Not",
         "Cast", "Identity", "Sin", "Cos", "IsNaN", "IsInf", "Mish", "ThresholdedRelu"}
ELEMENTWISE = {"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "Equal", "Greater", "GreaterOrEqual",
               "Less", "LessOrEqual", "And", "Or", "Xor", "Where", "Mod", "BitShift", "PRelu"}
# Clip's min/max are scalars: it behaves as a unary op on input 0.
SCALAR_OPERANDS = {"Clip"}
REDUCE = {"ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
          "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"}


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


class EliminateTransposes(Pass):
    name = "eliminate_transposes"

    def __init__(self, max_rounds: int = 64):
        self.max_rounds = max_rounds

    def run(self, graph: gs.Graph) -> PassResult:
        self.opset = graph.opset
        stats = {"removed_identity": 0, "merged": 0, "folded": 0, "pushed": 0}
        unique = UniqueNames(graph)

        def names(stem: str) -> str:
            return unique(f"{stem}/{self.name}")
        transposes_before = sum(n.op == "Transpose" for n in graph.nodes)
        for _ in range(self.max_rounds):
            progress = False
            for node in list(graph.nodes):
                if node.op != "Transpose" or not node.outputs or not node.inputs:
                    continue
                y = node.outputs[0]
                if not y.outputs and y not in graph.outputs:
                    continue  # dead: cleanup below
                kind = self._simplify(graph, node, names)
                if kind:
                    stats[kind] += 1
                    progress = True
            if not progress:
                break
            graph.cleanup(remove_unused_graph_inputs=False)
        changed = any(stats.values())
        if changed:
            graph.cleanup(remove_unused_graph_inputs=False).toposort()
        stats["transposes_before"] = transposes_before
        stats["transposes_after"] = sum(n.op == "Transpose" for n in graph.nodes)
        return PassResult(changed=changed, stats=stats)

    # -- one Transpose --------------------------------------------------------------------------
    def _simplify(self, graph, node, names) -> str | None:
        x, y = node.inputs[0], node.outputs[0]
        rank = len(x.shape) if x.shape is not None else None
        p = _perm(node, rank)
        if p is None:
            return None
        if p == list(range(len(p))):
            return "removed_identity" if self._remove(graph, node, x) else None
        producer = x.inputs[0] if len(x.inputs) == 1 else None
        if producer is not None and producer.op == "Transpose" and producer.inputs:
            q = _perm(producer, len(p))
            if q is not None and len(q) == len(p):
                r = [q[p[i]] for i in range(len(p))]
                inner = producer.inputs[0]
                if r == list(range(len(r))):
                    self._remove(graph, node, inner)
                else:
                    node.inputs[0] = inner
                    node.attrs["perm"] = r
                return "merged"
        values = _const(x)
        if values is not None and y not in graph.outputs and values.ndim == len(p):
            folded = gs.Constant(names(x.name), np.ascontiguousarray(np.transpose(values, p)))
            reconnect(y.outputs, "inputs", y, folded)
            return "folded"
        if y in graph.outputs or not y.outputs:
            return None
        consumers = list({id(c): c for c in y.outputs}.values())
        if len(consumers) != 1:
            return None  # one copy per consumer would add Transposes
        plans = [self._plan(c, y, p) for c in consumers]
        if any(plan is None for plan in plans):
            return None
        for consumer, plan in zip(consumers, plans):
            self._push(graph, consumer, y, x, p, plan, names)
        return "pushed"

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

    # -- pushing through one consumer ---------------------------------------------------------------
    def _plan(self, c: gs.Node, y, p):
        """How ``c`` changes when its input ``y = T_p(x)`` is replaced by ``x``; None if it can't."""
        r = len(p)
        slots = [i for i, t in enumerate(c.inputs) if t is y]
        if (c.domain or "") not in ("", "ai.onnx") or len(c.outputs) < 1:
            return None
        if c.op in UNARY or c.op in SCALAR_OPERANDS:
            return ("unary", None) if slots == [0] and len(c.outputs) == 1 else None
        if c.op in ELEMENTWISE:
            if len(c.outputs) != 1:
                return None
            operands = {}
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
        if c.op == "Concat":
            operands = {}
            for i, t in enumerate(c.inputs):
                if t is y:
                    continue
                unwrapped = self._unwrap(t, p)
                v = _const(t) if unwrapped is None else None
                if unwrapped is None and (v is None or v.ndim != r):
                    return None
                operands[i] = unwrapped if unwrapped is not None else np.transpose(v, inverse(p))
            return ("axis", {"axis": p[_axis(c.attrs["axis"], r)], "operands": operands})
        if slots != [0]:
            return None
        if c.op in ("Softmax", "LogSoftmax", "Hardmax") and self.opset >= 13:
            return ("axis", {"axis": p[_axis(c.attrs.get("axis", -1), r)], "operands": {}})
        if c.op == "Split":
            # One copy per output; worth it only where each copy meets a Transpose to merge with.
            if not all(z.outputs and all(n.op == "Transpose" for n in z.outputs) for z in c.outputs):
                return None
            return ("axis", {"axis": p[_axis(c.attrs.get("axis", 0), r)], "operands": {}})
        if c.op == "Slice" and len(c.inputs) >= 4:
            axes = _const(c.inputs[3])
            if axes is None:
                return None
            return ("slice", [p[_axis(int(a), r)] for a in axes.reshape(-1)])
        if c.op == "Pad" and len(c.inputs) >= 2 and len(c.inputs) < 4 and c.attrs.get("mode", "constant") in (
                "constant", "reflect", "edge", b"constant", b"reflect", b"edge"):
            pads = _const(c.inputs[1])
            if pads is None or pads.size != 2 * r:
                return None
            begin, end = pads[:r], pads[r:]
            q = inverse(p)
            return ("pad", np.concatenate([begin[q], end[q]]).astype(pads.dtype))
        if c.op == "Resize":
            return self._plan_resize(c, p)
        if c.op in REDUCE or c.op == "Squeeze":
            return self._plan_reduce(c, p)
        return None

    @staticmethod
    def _unwrap(t: gs.Tensor, p):
        """``x2`` if ``t = T_p(x2)``, else None."""
        prod = t.inputs[0] if len(t.inputs) == 1 else None
        if prod is not None and prod.op == "Transpose" and prod.inputs:
            return prod.inputs[0] if _perm(prod, len(p)) == list(p) else None
        return None

    def _plan_resize(self, c, p):
        q = inverse(p)
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
            r = len(p)
            if slot == 1:
                if v.size != 2 * r:
                    return None
                new_inputs[slot] = np.concatenate([v[:r][q], v[r:][q]]).astype(v.dtype)
            else:
                if v.size != r:
                    return None
                new_inputs[slot] = v[q].astype(v.dtype)
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
        keep = c.op != "Squeeze" and c.attrs.get("keepdims", 1)
        if keep:
            out_perm = list(p)
        else:
            kept_y = [i for i in range(r) if i not in axes]
            kept_x = [d for d in range(r) if d not in new_axes]
            out_perm = [kept_x.index(p[i]) for i in kept_y]
        return ("reduce", {"axes": new_axes, "where": where, "out_perm": out_perm})

    def _push(self, graph, c, y, x, p, plan, names):
        """Move Transpose(x, p) = y past its consumer ``c`` as ``plan`` says (seven parameters: the rewrite's
        whole context, passed from the one caller that found it, so nothing is looked up twice)."""
        kind, data = plan
        out_perm = list(p)
        for i, t in enumerate(c.inputs):
            if t is y:
                c.inputs[i] = x
        if kind == "elementwise":
            for i, v in data.items():
                c.inputs[i] = v if isinstance(v, gs.Tensor) else gs.Constant(names(c.inputs[i].name), np.ascontiguousarray(v))
        elif kind == "axis":
            c.attrs["axis"] = data["axis"]
            for i, v in data["operands"].items():
                c.inputs[i] = v if isinstance(v, gs.Tensor) else gs.Constant(names(c.inputs[i].name), np.ascontiguousarray(v))
        elif kind == "slice":
            c.inputs[3] = gs.Constant(names(c.inputs[3].name), np.asarray(data, dtype=np.int64))
        elif kind == "pad":
            c.inputs[1] = gs.Constant(names(c.inputs[1].name), data)
        elif kind == "resize":
            for slot, v in data.items():
                c.inputs[slot] = gs.Constant(names(c.inputs[slot].name), v)
        elif kind == "reduce":
            axes = np.asarray(data["axes"], dtype=np.int64)
            if data["where"] == "input":
                if len(c.inputs) > 1 and c.inputs[1].name:
                    c.inputs[1] = gs.Constant(names(c.inputs[1].name), axes)
                elif c.op != "Squeeze":
                    c.inputs.append(gs.Constant(names(c.name + "/axes"), axes))
            else:
                c.attrs["axes"] = [int(a) for a in axes]
            out_perm = data["out_perm"]
        if out_perm == list(range(len(out_perm))):
            return  # e.g. reduced to a scalar, or the layouts agree again: nothing to put back
        # Every output of c now comes out in x's layout: put T back behind each one.
        for k, z in enumerate(list(c.outputs)):
            inner_shape = None
            if z.shape is not None and len(z.shape) == len(out_perm):
                inner_shape = [z.shape[i] for i in inverse(out_perm)]
            inner = gs.Variable(names(z.name), dtype=z.dtype, shape=inner_shape)
            c.outputs[k] = inner
            t = gs.Node("Transpose", names(c.name + "/Transpose"), attrs={"perm": list(out_perm)},
                        inputs=[inner], outputs=[z])
            graph.nodes.append(t)
