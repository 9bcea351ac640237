"""Dynamic dimensions are validated at two sizes.

tf2onnx can export a dynamic dimension wrongly and still produce a graph that
loads and runs at one size (a Reshape whose ``0`` copies the wrong dimension is
the usual case; see frontend/tf2onnx_fixes.py). So the tf→onnx seam runs
twice: at the validation shapes, and again with every dynamic batch axis the
compiler chose (an axis 0 left dynamic and not set by ``--input-shapes``) at a
second size, ``SECOND_SIZE_STEP`` larger. Axes the user set with
``--input-shapes`` are frozen in the engine, so one size is all it runs at.
"""
from __future__ import annotations

from dataclasses import replace

from .artifacts import TensorSpec

SECOND_SIZE_STEP = 2  # batch 1 → 3: an odd size, so a dimension mixed up with 1 or 2 shows

DYNAMIC_FIX = ("tf2onnx exported the dynamic dimension wrongly (often a Reshape that copies the wrong "
               "dimension); compile for a static batch with --input-shapes NAME:1x..., or re-export the model "
               "with a static batch in its signature")


def second_shapes(inputs: tuple[TensorSpec, ...], shapes: dict, given: dict) -> dict | None:
    """``shapes`` with each compiler-chosen dynamic batch at its second size; None when there is none."""
    second, changed = dict(shapes), False
    for t in inputs:
        if t.name in given or t.unknown_rank or not t.shape or 0 not in t.dynamic_dims:
            continue
        shape = tuple(shapes[t.name])
        second[t.name] = (shape[0] + SECOND_SIZE_STEP, *shape[1:])
        changed = True
    return second if changed else None


def describe(shapes: dict, second: dict) -> str:
    """Which sizes differ between the two runs, e.g. "batch 3 (image)"."""
    names = [k for k in second if tuple(second[k]) != tuple(shapes[k])]
    return f"batch {second[names[0]][0]} ({', '.join(names)})" if names else "the same shapes"


def with_second_size(result, other, at: str):
    """The seam's result at the validation shapes, with its run at the second size attached; it fails when
    either run fails, and then says which size broke it."""
    merged = replace(result, other_sizes=[*result.other_sizes, other.to_json()])
    if other.passed or not result.passed:
        return merged
    return replace(merged, passed=False, failed_at_second_size=True, run_error=other.run_error,
                   note=f"passes at {_sizes(result.shapes)} but not at {at}: {other.failure_line()}")


def _sizes(shapes: dict) -> str:
    return ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in shapes.items())
