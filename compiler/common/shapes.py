"""Input shapes and value ranges: the user's shapes resolved against a model's specs, specs merged across a
seam, and the ranges seeded random data is drawn from. A leaf: it imports nothing above common/."""
from __future__ import annotations

import difflib

import numpy as np

from .. import limits
from ..artifacts import TensorSpec
from ..config import Shape
from ..errors import ConfigError, InspectError, ValidationError

# Value ranges for seeded random inputs: floats centred on zero exercise signs
# (ReLU, abs); small non-negative ints are safe as indices and token ids.
FLOAT_RANGE = (-1.0, 1.0)
INT_RANGE = (0, 8)


def resolve_shapes(inputs: tuple[TensorSpec, ...], given: dict[str, Shape], batch: int = 1) -> dict[str, Shape]:
    """Concrete shapes for every input: the user's, else static dims with a dynamic batch set to ``batch``.

    A dynamic dimension other than the leading one cannot be guessed (sequence
    length, image size), so it needs --input-shapes.
    """
    names = {t.name for t in inputs}
    unknown = sorted(set(given) - names)
    if unknown:
        raise ConfigError(f"--input-shapes names {', '.join(repr(u) for u in unknown)}, which is not an input; "
                          f"inputs are: {', '.join(sorted(names))}", "use the input names shown by `inspect`")
    shapes: dict[str, Shape] = {}
    for t in inputs:
        if t.name in given:
            shape = given[t.name]
            if len(shape) != len(t.shape) and not t.unknown_rank:
                raise ConfigError(f"--input-shapes gives '{t.name}' rank {len(shape)} but the model's input is "
                                  f"{t.shape_text()} (rank {len(t.shape)})",
                                  f"give {len(t.shape)} dimensions for '{t.name}'")
            clash = [i for i, (m, s) in enumerate(zip(t.shape, shape)) if isinstance(m, int) and m >= 0 and m != s]
            if clash:
                raise ConfigError(f"--input-shapes gives '{t.name}' {list(shape)} but its axis {clash[0]} is fixed "
                                  f"at {t.shape[clash[0]]} ({t.shape_text()})", "keep static dimensions as they are")
            shapes[t.name] = shape
            continue
        if t.unknown_rank:
            raise InspectError(f"input '{t.name}' has no declared rank, so its shape cannot be guessed",
                               f"pass --input-shapes {t.name}:DxD... with the shape to build and validate for")
        dyn = t.dynamic_dims  # a rank-1 [?] input's only axis is its batch, like any leading axis
        if any(i != 0 for i in dyn):
            example = "x".join(str(d) if isinstance(d, int) and d >= 0 else ("1" if i == 0 else "N")
                               for i, d in enumerate(t.shape))
            raise InspectError(f"input '{t.name}' has dynamic dimensions beyond the batch: {t.shape_text()}",
                               f"pass --input-shapes {t.name}:{example} with N set to the size to build and "
                               "validate for")
        shapes[t.name] = tuple(batch if i == 0 and i in dyn else d for i, d in enumerate(t.shape))
    limits.check_feed(inputs, shapes)
    return shapes


def merge_specs(reference: tuple[TensorSpec, ...], candidate: tuple[TensorSpec, ...]) -> tuple[TensorSpec, ...]:
    """Reference specs, with dims the candidate fixed (e.g. frozen by --input-shapes) made static."""
    cand = {t.name: t for t in candidate}
    merged = []
    for t in reference:
        c = cand.get(t.name)
        if c is not None and len(c.shape) == len(t.shape):
            shape = tuple(cd if isinstance(cd, int) and cd >= 0 else rd for rd, cd in zip(t.shape, c.shape))
            t = TensorSpec(t.name, t.dtype, shape)
        merged.append(t)
    return tuple(merged)


def input_ranges(inputs: tuple[TensorSpec, ...], overrides: dict | None = None) -> dict[str, tuple]:
    """(low, high) of the seeded random data for each input: ``overrides`` (--val-range; the key "" applies to
    every input) over the defaults (floats in [-1, 1], integers in [0, 8], booleans)."""
    overrides = dict(overrides or {})
    names = {t.name for t in inputs}
    unknown = sorted(k for k in overrides if k and k not in names)
    if unknown:
        near = difflib.get_close_matches(unknown[0], sorted(names), n=1)
        raise ConfigError(f"--val-range names '{unknown[0]}', which is not an input"
                          + (f" (did you mean '{near[0]}'?)" if near else ""),
                          f"inputs are: {', '.join(sorted(names))}")
    ranges = {}
    for t in inputs:
        kind = np.dtype(t.dtype).kind if t.dtype != "string" else "O"
        if kind == "O":
            raise ValidationError(f"input '{t.name}' is a string tensor; random strings cannot validate a model",
                                  "move string pre-processing out of the signature, or pass --no-validate")
        ranges[t.name] = FLOAT_RANGE if kind == "f" else (INT_RANGE if kind in "iu" else (0, 1))
        given = overrides.get(t.name, overrides.get(""))
        if given is not None and kind != "b":
            ranges[t.name] = (int(given[0]), int(given[1])) if kind in "iu" else (float(given[0]), float(given[1]))
    return ranges
