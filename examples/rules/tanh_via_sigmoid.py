"""An example --rules file: rewrite Tanh as 2·sigmoid(2x) − 1.

    python -m compiler MODEL OUT --rules examples/rules/tanh_via_sigmoid.py

A rules file defines ``RULES``, a list of rule instances. Each rule anchors on
an op (``op``), may decline nodes it has no business with (``wants``), may
refuse with a reason (``check``), and rewrites in ``apply``; nodes it leaves
dangling are cleaned up afterwards. Your rules run before the built-in
TensorRT rewrites. The same API replaces a subgraph with a TensorRT plugin
node: build the node with ``b.op("MyPlugin_TRT", [...], domain="trt.plugins")``
and load the plugin at build time (onnxruntime cannot run plugins, so validate
such an engine on a GPU machine).
"""
import numpy as np

from passes.rules import Builder, Rule, replace_output


class TanhViaSigmoid(Rule):
    """Tanh(x) → 2·Sigmoid(2x) − 1 (the identity tanh(x) = 2σ(2x) − 1); float inputs only."""

    name = "tanh_via_sigmoid"
    op = "Tanh"

    def check(self, node, graph):
        dtype = node.inputs[0].dtype
        if dtype is not None and np.dtype(dtype).kind != "f":
            return f"input dtype {np.dtype(dtype).name} is not floating point"
        return None

    def apply(self, node, graph):
        b = Builder(graph, node, self.name)
        x, y = node.inputs[0], node.outputs[0]
        dtype = np.dtype(x.dtype) if x.dtype is not None else np.dtype(np.float32)
        doubled = b.op("Mul", [x, b.const(2, dtype)], dtype=x.dtype, shape=x.shape)
        sig = b.op("Sigmoid", [doubled], dtype=x.dtype, shape=x.shape)
        scaled = b.op("Mul", [sig, b.const(2, dtype)], dtype=x.dtype, shape=x.shape)
        result = b.op("Sub", [scaled, b.const(1, dtype)], dtype=x.dtype, shape=x.shape)
        replace_output(graph, y, result)


RULES = [TanhViaSigmoid()]
