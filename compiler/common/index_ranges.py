"""The valid range of integer inputs that index a table, read from the ONNX graph.

Random validation data draws integers from [0, 8] by default. An input that
indexes a table smaller than that (BERT's ``segment_ids`` and its 2-row
segment embedding) then makes the model fail at run time, in TensorFlow and in
onnxruntime alike. So every integer graph input is followed forward through
value-preserving ops (``PASS_THROUGH``) to the index operands it reaches:

  Gather, GatherElements, ScatterElements/Scatter (index input 1): the data's size along ``axis``;
  GatherND, ScatterND (index input 1): the smallest of the data dims the last index axis addresses;
  OneHot (input 0): its constant ``depth``.

Elementwise arithmetic on the way (``ELEMENTWISE``: Keras 3's negative-index
wrap ``where(i < 0, i + n, i)`` lowers to Add/Mul/Where) is followed too.

An input's range is [0, n − 1] with n the smallest size over all its index
uses (the intersection). ONNX Gather also accepts negative indices (counted
from the end), but a table is indexed from 0, so the default is [0, n − 1]. A
size that is not known statically (a dynamic table) adds no bound. The user's
``--val-range`` always wins (``with_index_ranges``).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

PASS_THROUGH = frozenset({"Cast", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Flatten", "Transpose", "Expand"})
# Elementwise integer arithmetic an index passes through on its way to the table: Keras 3 wraps negative
# indices, ``where(i < 0, i + n, i)``, which tf2onnx lowers to Add/Mul/Add (or Where). An input reaching an
# index this way is still taken to index the table. Slots that carry the value (not a Where's condition).
ELEMENTWISE = {"Add": (0, 1), "Sub": (0, 1), "Mul": (0, 1), "Min": (0, 1), "Max": (0, 1), "Clip": (0,),
               "Mod": (0,), "Where": (1, 2)}
_AXIS_INDEXED = {"Gather": 1, "GatherElements": 1, "ScatterElements": 1, "Scatter": 1}  # op → index input
_ND_INDEXED = {"GatherND": 1, "ScatterND": 1}


@dataclass(frozen=True)
class IndexRange:
    low: int
    high: int
    uses: tuple[str, ...]  # "node (Op)" that bound it, tightest first

    def to_json(self) -> dict:
        return {"low": self.low, "high": self.high, "uses": list(self.uses)}

    def text(self) -> str:
        more = f" and {len(self.uses) - 1} more" if len(self.uses) > 1 else ""
        return f"[{self.low}, {self.high}] (indexes {self.uses[0]}{more})"


def _shapes(model) -> dict[str, tuple]:
    import onnx

    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception:  # shape inference is a help here, not a requirement: use what the graph declares
        pass
    g = model.graph
    shapes = {i.name: tuple(i.dims) for i in g.initializer}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        if vi.type.tensor_type.HasField("shape"):
            shapes[vi.name] = tuple(d.dim_value if d.HasField("dim_value") else None
                                    for d in vi.type.tensor_type.shape.dim)
    return shapes


def _constants(model) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    values = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            values[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    return values


def _attr(node, name: str, default):
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _table_size(node, shapes: dict, consts: dict) -> int | None:
    """How many entries the index operand of ``node`` may address, when known statically."""
    data = shapes.get(node.input[0])
    if node.op_type == "OneHot":
        depth = consts.get(node.input[1]) if len(node.input) > 1 else None
        return int(np.asarray(depth).ravel()[0]) if depth is not None and np.asarray(depth).size else None
    if data is None:
        return None
    if node.op_type in _AXIS_INDEXED:
        axis = _attr(node, "axis", 0)
        axis = axis + len(data) if axis < 0 else axis
        return data[axis] if 0 <= axis < len(data) and data[axis] else None
    batch = _attr(node, "batch_dims", 0)
    index_shape = shapes.get(node.input[1])
    k = index_shape[-1] if index_shape and index_shape[-1] else len(data) - batch
    dims = data[batch:batch + k]
    return min(dims) if dims and all(dims) else None


def _index_input(node) -> int | None:
    if node.op_type == "OneHot":
        return 0
    return _AXIS_INDEXED.get(node.op_type, _ND_INDEXED.get(node.op_type))


def _reached(name: str, consumers: dict) -> list[tuple]:
    """(node, input slot) for every use of ``name`` and of the values it flows into through PASS_THROUGH."""
    uses, frontier, seen = [], [name], {name}
    while frontier:
        tensor = frontier.pop()
        for node, slot in consumers.get(tensor, ()):
            uses.append((node, slot))
            if (node.op_type in PASS_THROUGH and slot == 0) or slot in ELEMENTWISE.get(node.op_type, ()):
                for out in node.output:
                    if out not in seen:
                        seen.add(out)
                        frontier.append(out)
    return uses


def index_ranges(model) -> dict[str, IndexRange]:
    """{integer input: the range its indexing uses allow}, for the inputs that reach an index operand
    (``model``: an onnx.ModelProto; onnx is imported lazily, so importing the package stays light)."""
    import onnx

    inits = {i.name for i in model.graph.initializer}
    ints = [vi.name for vi in model.graph.input if vi.name not in inits
            and vi.type.tensor_type.elem_type in (onnx.TensorProto.INT32, onnx.TensorProto.INT64,
                                                  onnx.TensorProto.INT16, onnx.TensorProto.INT8,
                                                  onnx.TensorProto.UINT8, onnx.TensorProto.UINT16)]
    if not ints:
        return {}
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for slot, name in enumerate(node.input):
            consumers.setdefault(name, []).append((node, slot))
    shapes, consts = _shapes(model), _constants(model)
    ranges = {}
    for name in ints:
        bounds = sorted((size, f"'{node.name}' ({node.op_type}, {size} entries)")
                        for node, slot in _reached(name, consumers) if slot == _index_input(node)
                        and (size := _table_size(node, shapes, consts)))
        if bounds:
            ranges[name] = IndexRange(0, bounds[0][0] - 1, tuple(dict.fromkeys(u for _, u in bounds)))
    return ranges


def merged_ranges(inferred: dict[str, IndexRange], given: dict) -> dict:
    """``--val-range`` entries over the inferred index ranges; a range given for every input (key "") wins
    everywhere."""
    if "" in given:
        return dict(given)
    return {**{k: (r.low, r.high) for k, r in inferred.items()}, **given}


def with_index_ranges(cfg, inferred: dict[str, IndexRange]):
    """``cfg`` (a ValidateConfig) whose random ranges include the inferred index ranges."""
    return replace(cfg, val_ranges=merged_ranges(inferred, cfg.val_ranges)) if inferred else cfg
