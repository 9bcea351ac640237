"""The TensorRT rewrite catalogue: what tf2onnx emits and TensorRT's ONNX parser rejects, and the fix.

One rule per problem, applied in this order by the ``rewrite_tensorrt`` pass.
Each rule's docstring states the rewrite; each refuses with a reason when it
does not apply, and ``check-trt`` shows that reason beside the node.
"""
from __future__ import annotations

from . import Rule

CATALOGUE: list[Rule] = [
]
