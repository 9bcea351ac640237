"""quantize_int8: explicit INT8 as QuantizeLinear/DequantizeLinear pairs, in the form TensorRT consumes.

TensorRT 11 has no INT8 calibrator: an INT8 engine comes from a Q/DQ graph
("explicit quantization"), which TensorRT fuses into INT8 kernels. The Q/DQ
insertion is onnxruntime's maintained ``QDQQuantizer``, configured for
TensorRT:

* only the inputs of Conv, ConvTranspose, MatMul and Gemm with a constant
  weight are quantized (the layers TensorRT runs in INT8; it propagates the
  scales through pooling and data movement itself); a MatMul of two
  activations stays float;
* weights: symmetric int8, per output channel (axis 0 for Conv, 1 for MatMul),
  stored as int8 initializers behind a DequantizeLinear; a MatMul whose weight
  is not 2-D (batched) stays float;
* outputs of those layers are not quantized (TensorRT does it where the next
  layer reads int8);
* activations: symmetric int8 (zero point 0), one scale per tensor, from the
  calibrated ranges given to the pass (``ranges``);
* biases stay float: TensorRT does not consume int32 DequantizeLinear.

The ranges come from calibration (``compiler/precision.py``), done on the
float32 graph before this pass. ``skip`` (--int8-skip) names op types or nodes to
leave in float. Runs once (``once``).
"""
from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from ..infra import Pass, PassError, PassResult
from ._common import INT8_OPS, export, node_precision, replace_graph, split_keep

QDQ_OPTIONS = {
    "ActivationSymmetric": True,
    "WeightSymmetric": True,
    "QuantizeBias": False,
    "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1},
    # Outputs stay float: TensorRT quantizes a layer's output itself where the next layer reads int8, and a
    # Q/DQ on a graph output only adds rounding.
    "OpTypesToExcludeOutputQuantization": list(INT8_OPS),
}


def quantizable(graph: gs.Graph, skip: tuple[str, ...] = ()) -> list[str]:
    """Names of the nodes this pass would quantize, given ``--int8-skip`` entries: the weighted layers (a constant
    weight, input 1). A MatMul of two activations (attention's Q·Kᵀ) stays float: both operands would get one
    scale each from calibration alone, which on the fixtures doubles the error for little speed. So does a
    MatMul with a batched (not 2-D) weight: per-column scales need a 2-D weight, and onnxruntime's int8
    MatMul kernels reject the per-channel form the quantizer gives it."""
    skip_ops, skip_nodes = split_keep(graph, skip)
    return [n.name for n in graph.nodes if n.op in INT8_OPS and n.op not in skip_ops and n.name not in skip_nodes
            and len(n.inputs) > 1 and isinstance(n.inputs[1], gs.Constant)
            and (n.op != "MatMul" or len(n.inputs[1].shape) == 2)]


class QuantizeInt8(Pass):
    name = "quantize_int8"
    once = True

    def __init__(self, ranges: dict | None = None, skip: tuple[str, ...] = ()):
        self.ranges = dict(ranges or {})  # tensor name -> (low, high), from calibration
        self.skip = tuple(skip)  # op types or node names left in float (--int8-skip)

    def run(self, graph: gs.Graph) -> PassResult:
        skip_ops, skip_nodes = split_keep(graph, self.skip)
        ops = [op for op in INT8_OPS if op not in skip_ops]
        targets = quantizable(graph, self.skip)
        if not targets:
            return PassResult(False, {"quantized": 0, "note": f"no {'/'.join(INT8_OPS)} node to quantize"})
        if not self.ranges:
            raise PassError("quantize_int8 needs calibrated tensor ranges; run it through --precision int8, which "
                            "calibrates first")
        from onnxruntime.quantization import QDQQuantizer, QuantType
        from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData

        ranges = TensorsData(CalibrationMethod.MinMax,
                             {name: TensorData(lowest=np.float32(lo), highest=np.float32(hi))
                              for name, (lo, hi) in self.ranges.items()})
        quantizer = QDQQuantizer(export(graph), True, False, QuantType.QInt8, QuantType.QInt8, ranges, targets,
                                 sorted(skip_nodes), ops, dict(QDQ_OPTIONS))
        quantizer.quantize_model()
        before = {n.name for n in graph.nodes}
        replace_graph(graph, quantizer.model.model)
        precision = node_precision(graph)
        quantized = sorted(n for n in targets if precision.get(n) == "int8")
        added = sum(n.name not in before for n in graph.nodes)
        return PassResult(added > 0, {"quantized": len(quantized), "left_float": sorted(set(targets) - set(quantized)),
                                      "skipped": sorted(skip_nodes | {n.name for n in graph.nodes if n.op in skip_ops})})
