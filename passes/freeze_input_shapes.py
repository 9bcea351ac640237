"""freeze_input_shapes: give graph inputs the static shapes the user asked for.

Rewrite: input ``x: [?, ?, 8]`` with ``--input-shapes x:1x16x8`` becomes
``x: [1, 16, 8]``. Later passes (shape inference, constant folding) then turn
shape arithmetic into constants, which TensorRT builds faster and better.

Refuses (PassError) a shape whose rank differs from the input's, or that
contradicts a dimension that is already static: the model could not run
with it. Names that are not inputs are refused too. Runs once (``once``): the
shapes are in the model's original layout, and ``layout_io`` may change
the interface after it.
"""
from __future__ import annotations

import onnx_graphsurgeon as gs

from .infra import Pass, PassError, PassResult


class FreezeInputShapes(Pass):
    name = "freeze_input_shapes"
    once = True

    def __init__(self, shapes: dict[str, tuple[int, ...]] | None = None):
        self.shapes = dict(shapes or {})  # input name -> static shape (--input-shapes)

    def run(self, graph: gs.Graph) -> PassResult:
        inputs = {t.name: t for t in graph.inputs}
        unknown = sorted(set(self.shapes) - set(inputs))
        if unknown:
            raise PassError(f"--input-shapes names {', '.join(unknown)}, not an input of the graph "
                            f"(inputs: {', '.join(inputs)})")
        frozen = []
        for name, shape in self.shapes.items():
            t = inputs[name]
            current = list(t.shape) if t.shape is not None else None
            if current is not None and len(current) != len(shape):
                raise PassError(f"input '{name}' has rank {len(current)} but --input-shapes gives rank "
                                f"{len(shape)} ({'x'.join(map(str, shape))})")
            if current is not None:
                clash = [i for i, (c, s) in enumerate(zip(current, shape))
                         if isinstance(c, int) and c >= 0 and c != s]
                if clash:
                    raise PassError(f"input '{name}' has static shape {current}; --input-shapes gives "
                                    f"{list(shape)}, which differs at axis {clash[0]}")
            if current != list(shape):
                t.shape = list(shape)
                frozen.append(name)
        return PassResult(changed=bool(frozen), stats={"frozen": frozen})
