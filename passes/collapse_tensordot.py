"""collapse_tensordot: ``Reshape → MatMul → Reshape`` (tf2onnx's Tensordot) as one broadcasting MatMul.

TensorFlow applies a Dense layer to a rank-``r`` tensor as ``tf.tensordot``, which
tf2onnx exports as

    a = Reshape(x, [M, K])        x: [d1, .., dk, K], M = d1·…·dk
    m = MatMul(a, B)              B: [K, N]
    z = Reshape(m, [d1, .., dk, N])

ONNX MatMul broadcasts a rank-2 ``B`` over ``x``'s leading axes
(``MatMul(x, B)[i.., n] = Σ_c x[i.., c] B[c, n]``), which is the same sum over the
same products for every row, so ``z = MatMul(x, B)``: two Reshapes fewer, and
the channels axis stays visible. That matters for layout: the flatten to
``[M, K]`` merges axes that are not neighbours in NCHW, so ``eliminate_transposes``
could not push a Transpose through it; on the broadcasting MatMul it can (as a
1×1 Conv, see there). Both TensorRT and onnxruntime run the broadcasting MatMul
with a rank-2 ``B`` as the same single GEMM.

Applies only where both shapes are static and agree (``x``'s leading axes equal
``z``'s, ``a`` is ``[M, K]``), ``B`` is rank 2, and ``a`` and ``m`` have no other
reader and are not graph outputs. Results are bit-identical.
"""
from __future__ import annotations

import math

import onnx_graphsurgeon as gs

from .infra import Pass, PassResult
from .rules import static_shape


def _only_reader(t: gs.Tensor, graph: gs.Graph) -> gs.Node | None:
    readers = list({id(n): n for n in t.outputs}.values())
    return readers[0] if len(readers) == 1 and t not in graph.outputs else None


def _site(matmul: gs.Node, graph: gs.Graph):
    """``(x, z, unflatten)`` when ``matmul`` is the middle of a Tensordot that collapses, else None."""
    a, b = matmul.inputs
    m = matmul.outputs[0]
    flatten = a.inputs[0] if len(a.inputs) == 1 else None
    unflatten = _only_reader(m, graph)
    if flatten is None or flatten.op != "Reshape" or unflatten is None or unflatten.op != "Reshape":
        return None
    if _only_reader(a, graph) is not matmul or unflatten.inputs[0] is not m:
        return None
    x, z = flatten.inputs[0], unflatten.outputs[0]
    xs, a_s, bs, zs = (static_shape(t) for t in (x, a, b, z))
    if None in (xs, a_s, bs, zs) or len(bs) != 2 or len(a_s) != 2 or len(xs) < 3:
        return None
    if a_s != (math.prod(xs[:-1]), xs[-1]) or zs != (*xs[:-1], bs[1]):
        return None
    return x, z, unflatten


class CollapseTensordot(Pass):
    name = "collapse_tensordot"

    def run(self, graph: gs.Graph) -> PassResult:
        collapsed = 0
        for node in list(graph.nodes):
            if node.op != "MatMul" or len(node.inputs) != 2 or len(node.outputs) != 1:
                continue
            site = _site(node, graph)
            if site is None:
                continue
            x, z, unflatten = site
            unflatten.outputs.clear()
            node.inputs[0], node.outputs[0] = x, z
            collapsed += 1
        if collapsed:
            graph.cleanup(remove_unused_graph_inputs=False).toposort()
        return PassResult(changed=bool(collapsed), stats={"collapsed": collapsed})
