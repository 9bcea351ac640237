"""Run an artifact once: its feed from a file or seeded random data, adapted (``feeds.prepare_feed``), and
what came out."""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..artifacts import TensorSpec, shape_text
from ..common.arrays import load_arrays
from ..common.shapes import resolve_shapes
from ..common.samples import load_samples
from ..errors import ConfigError, InspectError, RunError
from .feeds import prepare_feed


def read_feed(path: Path, inputs: tuple[TensorSpec, ...]) -> tuple[dict, str]:
    """The arrays of an .npz keyed by input name (or one .npy for a single-input artifact), and a description.

    An .npz in the fixtures' golden form (``in:NAME``/``out:NAME`` keys) gives its ``in:`` arrays.
    """
    path = Path(path)
    if not path.is_file():
        raise RunError(f"inputs file '{path}' does not exist", "give an .npz file keyed by input name")
    try:
        data = load_arrays(path)
        arrays = {"": data} if isinstance(data, np.ndarray) else data
    except Exception as e:  # numpy raises ValueError/OSError/BadZipFile... for a file it cannot read
        raise RunError(f"inputs file '{path}' cannot be read ({type(e).__name__}: {str(e)[:200]})",
                       "save the inputs with numpy.savez(path, name=array, ...)") from None
    if "" in arrays:
        if len(inputs) != 1:
            raise RunError(f"inputs file '{path}' is one .npy array but the artifact has {len(inputs)} inputs "
                           f"({', '.join(t.name for t in inputs)})", "save an .npz keyed by input name")
        return {inputs[0].name: arrays[""]}, str(path)
    if any(k.startswith("in:") for k in arrays) and not any(k in {t.name for t in inputs} for k in arrays):
        return {k[3:]: v for k, v in arrays.items() if k.startswith("in:")}, f"{path} (its in: arrays)"
    return arrays, str(path)


def random_feed(inputs: tuple[TensorSpec, ...], shapes: dict | None = None, batch: int | None = None,
                seed: int = 0) -> tuple[dict, str]:
    """Seeded random inputs (floats in [-1, 1], integers in [0, 8]) and a description.

    ``shapes`` gives concrete shapes (needed for dynamic dims beyond the
    batch); ``batch`` sets every dynamic leading dim, also in ``shapes``, and
    must equal a static one.
    """
    shapes = dict(shapes or {})
    if batch is not None:
        if batch < 1:
            raise ConfigError(f"--batch must be at least 1, got {batch}", "pass a positive batch size")
        ranked = [t for t in inputs if len(t.shape) > 0]
        if not ranked:
            raise RunError(f"the artifact's inputs are scalars; there is no batch dimension to set to {batch}",
                           "drop --batch")
        for t in ranked:
            lead = t.shape[0]
            if isinstance(lead, int) and lead >= 0:
                if lead != batch:
                    raise RunError(f"the artifact has a fixed batch of {lead} (input '{t.name}' is "
                                   f"{shape_text(t.shape)}), not {batch}",
                                   f"drop --batch or pass --batch {lead}, or rebuild with a dynamic batch")
            elif t.name in shapes and len(shapes[t.name]) == len(t.shape):
                shapes[t.name] = (batch,) + tuple(shapes[t.name][1:])
    try:
        resolved = resolve_shapes(inputs, shapes, batch or 1)
    except InspectError as e:  # a dynamic dim beyond the batch: the user's flag is missing, not the model broken
        raise RunError(e.cause, e.fix) from None
    samples = load_samples(None, inputs, resolved, what="run", error=RunError, seed=seed, random_count=1)
    return samples[0], f"random (seed {seed})"


@dataclass(frozen=True)
class RunResult:
    outputs: OrderedDict
    notes: tuple[str, ...]


def run(runner, feed: dict) -> RunResult:
    """Adapt ``feed`` (``prepare_feed``), run it once, and return outputs in the layout it was fed in."""
    prepared = prepare_feed(runner.inputs, feed, getattr(runner, "interface", None))
    return RunResult(prepared.results(runner.infer(prepared.feed)), prepared.notes)


def output_stats(value) -> dict:
    """dtype, shape and min/max/mean over the finite values (None where there are none) of an output."""
    arr = np.asarray(value)
    stats = {"dtype": arr.dtype.name, "shape": list(arr.shape), "min": None, "max": None, "mean": None,
             "nonfinite": 0}
    if arr.dtype.kind == "b":
        arr = arr.astype(np.int64)
    if arr.dtype.kind in "iu":
        if arr.size:
            stats.update(min=int(arr.min()), max=int(arr.max()), mean=float(arr.mean(dtype=np.float64)))
    elif arr.dtype.kind in "fc":
        finite = np.isfinite(arr)
        vals = arr[finite].astype(np.float64)
        stats["nonfinite"] = int(arr.size - vals.size)
        if vals.size:
            stats.update(min=float(vals.min()), max=float(vals.max()), mean=float(vals.mean()))
    return stats
