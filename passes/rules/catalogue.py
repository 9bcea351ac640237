"""The TensorRT rewrite catalogue: what tf2onnx emits and TensorRT's ONNX parser rejects, and the fix.

One rule per problem, applied in this order by the ``rewrite_tensorrt`` pass.
Each rule's docstring states the rewrite; each refuses with a reason when it
does not apply, and ``check-trt`` shows that reason beside the node.
"""
from __future__ import annotations

from . import Rule
from .control_flow import LoopIfFold
from .dtypes import CumSumIntegerScan, Float64ToFloat32, Uint8InputRegion
from .einsum import EinsumToMatMul
from .nms import NmsCountCumSum
from .resize import ResizeSupported
from .scatternd import ScatterNDReduction
from .topk import TopKSplit

CATALOGUE: list[Rule] = [
    # Constant-condition If and short fixed-count Loops join the graph first; the next round rewrites their nodes.
    LoopIfFold(),
    # Dtypes first, so the rules after them see the types TensorRT will run: no DOUBLE anywhere,
    Float64ToFloat32(),
    # UINT8 only at the network's edge,
    Uint8InputRegion(),
    # the selection count of CombinedNonMaxSuppression in float32 (exact under its bound; its length is dynamic),
    NmsCountCumSum(),
    # and integer CumSum as an exact scan (TensorRT's CumSum takes floats only).
    CumSumIntegerScan(),
    # Ops with attribute limits: TopK K ≤ 3840, ScatterND without reduction, Resize modes TensorRT implements.
    TopKSplit(),
    ScatterNDReduction(),
    ResizeSupported(),
    # Einsum (no ellipsis, diagonal or 3+ operands in TensorRT) as Transpose/Reshape/MatMul.
    EinsumToMatMul(),
]
