"""How an optimized model's inputs and outputs differ from the exported model's, and adapting to it.

Some passes change the interface on purpose: ``--inputs-as-nchw`` transposes an
input, TensorRT has no float64 so float64 IO becomes float32. The pass manager
records the change in the model's metadata (``tf2trt.interface``) as, per
tensor, ``perm`` (candidate = transpose(original, perm)) and ``dtype`` (the
candidate's dtype where it differs, with ``from_dtype`` the original's). Every
file on disk carries it, so any seam can feed a candidate the reference's data
and read its outputs back in the reference's layout.
"""
from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

# A leaf under artifacts.py and the report, which light callers import (the report's versions, the CLI): it
# imports no pass (scripts/bench/ holds a passes.py that would shadow the package) and loads onnx only when used.

KEY = "tf2trt.interface"


def inverse(perm) -> list[int]:
    """The permutation that undoes ``perm``: transpose(transpose(x, perm), inverse(perm)) == x."""
    return [list(perm).index(i) for i in range(len(perm))]


@dataclass(frozen=True)
class Interface:
    inputs: dict = field(default_factory=dict)   # name -> {"perm": [...]?, "dtype": str?, "from_dtype": str?}
    outputs: dict = field(default_factory=dict)

    def __bool__(self):
        return bool(self.inputs or self.outputs)

    def to_json(self) -> dict:
        return {"inputs": self.inputs, "outputs": self.outputs}

    @classmethod
    def from_json(cls, data: dict | None) -> Interface:
        data = data or {}
        return cls(dict(data.get("inputs", {})), dict(data.get("outputs", {})))

    def feed(self, feed: dict) -> OrderedDict:
        """The reference's feed, transformed into what the candidate takes."""
        out = OrderedDict()
        for name, value in feed.items():
            change = self.inputs.get(name, {})
            if "perm" in change:
                value = np.ascontiguousarray(np.transpose(value, change["perm"]))
            if "dtype" in change:
                value = value.astype(change["dtype"])
            out[name] = value
        return out

    def feed_samples(self, samples):
        """``Samples`` (compiler.common.samples) in the reference's interface, moved into the candidate's
        (``feed`` on each)."""
        return replace(samples, feeds=tuple(self.feed(f) for f in samples)) if self and samples is not None \
            else samples

    def results(self, outputs: dict) -> OrderedDict:
        """The candidate's outputs, transformed back into the reference's layout and dtypes."""
        out = OrderedDict()
        for name, value in outputs.items():
            change = self.outputs.get(name, {})
            if "perm" in change:
                value = np.ascontiguousarray(np.transpose(value, inverse(change["perm"])))
            if "from_dtype" in change:
                value = np.asarray(value).astype(change["from_dtype"])
            out[name] = value
        return out

    def reference_shape(self, name: str, shape, is_input: bool = True):
        """A candidate tensor's shape expressed in the reference's layout."""
        change = (self.inputs if is_input else self.outputs).get(name, {})
        if "perm" not in change or shape is None:
            return shape
        return tuple(shape[i] for i in inverse(change["perm"]))

    def candidate_shape(self, name: str, shape):
        """An input shape in the reference's layout, expressed in the candidate's."""
        change = self.inputs.get(name, {})
        if "perm" not in change or shape is None:
            return shape
        return tuple(shape[i] for i in change["perm"])

    def describe(self) -> list[str]:
        lines = []
        for kind, table in (("input", self.inputs), ("output", self.outputs)):
            for name, change in table.items():
                parts = []
                if "perm" in change:
                    parts.append(f"transposed by {change['perm']}")
                if "dtype" in change:
                    parts.append(f"{change.get('from_dtype', '?')} → {change['dtype']}")
                lines.append(f"{kind} '{name}': {', '.join(parts)}")
        return lines


def diff(original, result, perms: dict[str, dict[str, list[int]]]) -> Interface:
    """The interface change from ``original`` to ``result`` (ONNX ModelProtos): dtype changes are read off
    the graphs; ``perms`` ({"inputs": {name: perm}, "outputs": {...}}) come from the layout pass."""
    import onnx  # heavy (2 s): see the imports above

    def dtypes(values):
        return {v.name: v.type.tensor_type.elem_type for v in values}

    tables = {}
    for kind, before, after in (("inputs", original.graph.input, result.graph.input),
                                ("outputs", original.graph.output, result.graph.output)):
        old, new = dtypes(before), dtypes(after)
        table = {}
        for name, perm in perms.get(kind, {}).items():
            table.setdefault(name, {})["perm"] = list(perm)
        for name, t in new.items():
            if name in old and old[name] and t and old[name] != t:
                entry = table.setdefault(name, {})
                entry["dtype"] = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t)).name
                entry["from_dtype"] = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(old[name])).name
        tables[kind] = table
    return Interface(tables["inputs"], tables["outputs"])


def compose(first: Interface, then: Interface) -> Interface:
    """The change ``first`` followed by ``then`` (whose entries are relative to ``first``'s result): perms stay
    ``first``'s (later stages add none), a dtype is the last one, ``from_dtype`` the original's."""
    tables = []
    for a, b in ((first.inputs, then.inputs), (first.outputs, then.outputs)):
        table = {name: dict(change) for name, change in a.items()}
        for name, change in b.items():
            entry = table.setdefault(name, {})
            if "perm" in change:
                entry["perm"] = change["perm"]
            if "dtype" in change:
                entry.setdefault("from_dtype", change.get("from_dtype"))
                entry["dtype"] = change["dtype"]
                if entry["dtype"] == entry["from_dtype"]:
                    del entry["dtype"], entry["from_dtype"]
            if not entry:
                del table[name]
        tables.append(table)
    return Interface(*tables)


def relative(reference: Interface, candidate: Interface) -> Interface:
    """What a candidate's interface adds to a reference's when both start from the same model (a precision
    graph after its float32 graph): dtype changes only; differing perms cannot be bridged (ValueError)."""
    tables = []
    for ref, cand in ((reference.inputs, candidate.inputs), (reference.outputs, candidate.outputs)):
        table = {}
        for name in set(ref) | set(cand):
            r, c = ref.get(name, {}), cand.get(name, {})
            if r.get("perm") != c.get("perm"):
                raise ValueError(f"'{name}' is transposed by {r.get('perm')} in one and {c.get('perm')} in the other")
            original = c.get("from_dtype") or r.get("from_dtype")
            ref_dtype, cand_dtype = r.get("dtype", original), c.get("dtype", original)
            if ref_dtype != cand_dtype:
                table[name] = {"dtype": cand_dtype, "from_dtype": ref_dtype}
        tables.append(table)
    return Interface(*tables)


def between(reference: Interface, candidate: Interface) -> Interface:
    """How a candidate's IO differs from its reference's, given the changes both record against the exported
    model: none when the candidate records nothing new, the candidate's own when the reference records none,
    else ``relative`` (ValueError when they transpose differently)."""
    if not candidate or candidate == reference:
        return Interface()
    return relative(reference, candidate) if reference else candidate


def write(model, interface: Interface) -> None:
    """Store ``interface`` in ``model``'s metadata (replacing an older entry)."""
    for i, prop in enumerate(list(model.metadata_props)):
        if prop.key == KEY:
            del model.metadata_props[i]
    if interface:
        entry = model.metadata_props.add()
        entry.key, entry.value = KEY, json.dumps(interface.to_json(), sort_keys=True)


def read(model) -> Interface:
    """The interface recorded in an ONNX ModelProto, an ONNX file, or nothing (empty)."""
    import onnx  # heavy (2 s): see the imports above
    if isinstance(model, (str, Path)):
        try:
            model = onnx.load(str(model), load_external_data=False)
        except Exception:
            return Interface()
    for prop in model.metadata_props:
        if prop.key == KEY:
            return Interface.from_json(json.loads(prop.value))
    return Interface()


def adapted(runner, interface: Interface, reference_inputs):
    """Wrap a Polygraphy runner so it takes the reference's feed and returns outputs in its layout."""
    from polygraphy.backend.base import BaseRunner
    from polygraphy.common import TensorMetadata

    class InterfaceAdapter(BaseRunner):
        def __init__(self):
            super().__init__(name=runner.name, prefix="adapted")
            self.name = runner.name

        def activate_impl(self):
            runner.activate()

        def deactivate_impl(self):
            runner.deactivate()

        def get_input_metadata_impl(self):
            meta = TensorMetadata()
            for t in reference_inputs:
                meta.add(t.name, np.dtype(t.dtype), [d if isinstance(d, int) and d >= 0 else -1 for d in t.shape])
            return meta

        def infer_impl(self, feed_dict):
            outputs = interface.results(runner.infer(interface.feed(feed_dict), check_inputs=False))
            self.inference_time = runner.last_inference_time()
            return outputs

    return InterfaceAdapter()
