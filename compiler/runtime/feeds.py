"""Feeds: what a user or a sample file holds, made into what an artifact takes, by one set of rules.

Dtypes follow the one rule of ``common.arrays.cast`` (shared with the sample loader and the goldens).
``prepare_feed`` also adapts shapes: an array that fits the artifact's shape is used as is; one that fits the
SavedModel's layout of an input the compiler transposed is transposed, and the outputs are mapped back.
"""
from __future__ import annotations

import difflib
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from ..artifacts import TensorSpec, shape_text
from ..common.arrays import cast
from ..errors import RunError
from ..common.io_change import Interface


@dataclass(frozen=True)
class PreparedFeed:
    """A user's feed made into what the artifact takes, with what was done to it."""

    feed: OrderedDict  # input name -> array, in the artifact's dtypes and layout
    notes: tuple[str, ...]
    mapping: object = None  # an Interface applied to the outputs (inputs fed in the SavedModel's layout), or None

    def results(self, outputs: dict) -> OrderedDict:
        """The artifact's outputs, in the layout the inputs were fed in."""
        return self.mapping.results(outputs) if self.mapping is not None else OrderedDict(outputs)


def _matches(shape: tuple, spec_shape) -> bool:
    """Whether an array's shape fits a spec's (dynamic dims match any size)."""
    return len(shape) == len(spec_shape) and all(not (isinstance(d, int) and d >= 0) or d == s
                                                 for d, s in zip(spec_shape, shape))


def prepare_feed(inputs: tuple[TensorSpec, ...], feed: dict, interface=None) -> PreparedFeed:
    """Adapt ``feed`` to an artifact's ``inputs``; raise RunError naming the input, what it got and what is needed.

    Every input must be given, and nothing else. Dtypes: float64 → float32,
    float → float16 where the artifact takes float16, float widening, and
    integer casts whose values fit; nothing else is cast. Shapes: an array that
    fits the artifact's shape (dynamic dims fit anything) is used as is; one
    that fits the SavedModel's layout of an input the compiler transposed
    (``interface``'s ``perm``) is transposed, and then the outputs are mapped
    back into the SavedModel's layout too (``PreparedFeed.results``).
    """
    interface = interface or Interface()
    _check_names(inputs, feed)
    out, notes, layouts = OrderedDict(), [], {}
    for t in inputs:
        arr = np.asarray(feed[t.name])
        if arr.dtype.kind in "OUSV":
            held = "Python objects" if arr.dtype.kind == "O" else "strings or bytes"
            raise RunError(f"input '{t.name}' holds {held}, not numbers; the artifact takes {t.dtype}",
                           "give a numeric array")
        perm = interface.inputs.get(t.name, {}).get("perm")
        original = interface.reference_shape(t.name, t.shape) if perm else None
        fits, fits_original = _matches(arr.shape, t.shape), perm is not None and _matches(arr.shape, original)
        if not fits and fits_original:
            arr = np.ascontiguousarray(np.transpose(arr, perm))
            layouts[t.name] = "saved_model"
            notes.append(f"input '{t.name}': fed in the SavedModel's layout {shape_text(original)}, transposed by "
                         f"{list(perm)} to the artifact's {shape_text(t.shape)}")
        elif fits:
            if perm is not None:
                layouts[t.name] = "artifact"
                if fits_original:
                    notes.append(f"input '{t.name}': shape {list(arr.shape)} fits both the artifact's layout "
                                 f"{shape_text(t.shape)} and the SavedModel's {shape_text(original)}; taken as "
                                 "the artifact's")
        else:
            also = f" (or {shape_text(original)} in the SavedModel's layout)" if perm is not None else ""
            raise RunError(f"input '{t.name}' has shape {list(arr.shape)} ({arr.dtype.name}) but the artifact takes "
                           f"{t.dtype} {shape_text(t.shape)}{also}",
                           f"give '{t.name}' an array of shape {shape_text(t.shape)} (? = any size)")
        target = np.dtype(t.dtype)
        before = arr.dtype
        arr, changed = cast(arr, target, subject=f"input '{t.name}'", takes="the artifact takes",
                            whose="the artifact's")
        if changed:
            narrowed = before.kind == "f" and target.itemsize < before.itemsize
            notes.append(f"input '{t.name}': cast {before.name} → {target.name}"
                         + (", the artifact's dtype" if narrowed else ""))
        out[t.name] = np.ascontiguousarray(arr)
    if len(set(layouts.values())) > 1:
        by = {k: sorted(n for n, v in layouts.items() if v == k) for k in ("saved_model", "artifact")}
        raise RunError(f"inputs are fed in two layouts: {', '.join(by['saved_model'])} in the SavedModel's, "
                       f"{', '.join(by['artifact'])} in the artifact's", "feed every input in the same layout")
    mapping = Interface({}, interface.outputs) if "saved_model" in layouts.values() else None
    return PreparedFeed(out, tuple(notes + _output_notes(interface, mapping is not None)), mapping)


def _check_names(inputs: tuple[TensorSpec, ...], feed: dict) -> None:
    """Every input given, and nothing else; else RunError naming them (and the nearest name for a typo)."""
    names = [t.name for t in inputs]
    expected = ", ".join(names)
    unknown = [k for k in feed if k not in names]
    if unknown:
        parts = []
        for u in unknown:
            near = difflib.get_close_matches(u, names, n=1, cutoff=0.5)
            parts.append(f"'{u}'" + (f" (did you mean '{near[0]}'?)" if near else ""))
        raise RunError(f"{', '.join(parts)} {'is not an input' if len(unknown) == 1 else 'are not inputs'} of the "
                       f"artifact; its inputs are: {expected}", "name each array after one of the artifact's inputs")
    missing = [n for n in names if n not in feed]
    if missing:
        raise RunError(f"missing input(s) {', '.join(repr(m) for m in missing)}; the artifact's inputs are: {expected}",
                       "give an array for every input")


def _output_notes(interface: Interface, mapped_back: bool) -> list[str]:
    """What the outputs are: mapped back into the SavedModel's interface, or left in the artifact's."""
    notes = []
    if mapped_back:
        for name, change in interface.outputs.items():
            done = [text for key, text in (("perm", "transposed back"),
                                           ("from_dtype", f"cast back to {change.get('from_dtype')}")) if key in change]
            notes.append(f"output '{name}': {' and '.join(done)} into the SavedModel's interface")
        return notes
    for name, change in interface.outputs.items():
        if "perm" in change:
            notes.append(f"output '{name}' is in the artifact's layout (the SavedModel's transposed by "
                         f"{change['perm']})")
        if "from_dtype" in change:
            notes.append(f"output '{name}' is {change['dtype']} (the SavedModel's is {change['from_dtype']})")
    return notes
