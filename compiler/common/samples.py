"""Model input samples: the one loader behind INT8 calibration and validation.

A ``spec`` string names where samples come from: ``random`` (or nothing) for
seeded random data, a directory of ``.npy``/``.npz`` files (one sample per
file), one ``.npz``/``.npy`` file with a leading sample axis, or
``path/to/file.py:function`` whose result is iterated like TF-TRT's
``calibration_input_fn``. Every source ends in the same checks, so a sample
reaches a runner only as a dict of arrays in each input's dtype and rank, or
the user gets a one-line error naming the sample (indexes count from 0), the
input, what was found, what is needed and the fix.

The result is an immutable ``Samples``: iterating it gives the feed dicts (it
is a Polygraphy data loader as it stands), and ``digest`` fingerprints the
exact data so a report or a calibration cache can tell data sets apart.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import itertools
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..artifacts import TensorSpec
from .arrays import cast, load_arrays
from .shapes import input_ranges
from ..errors import CompilerError, ConfigError

GENERATOR_CAP = 512  # feeds taken from a generator when no limit is given; it may be infinite
FORMS = ("give a directory of .npy/.npz files, an .npz file keyed by input name, an .npy file (single-input "
         "models), path/to/file.py:function, or 'random'")
_PY_SPEC = re.compile(r"^(?P<file>.+\.py):(?P<func>[A-Za-z_]\w*)$")
_module_ids = itertools.count()

Feed = dict[str, np.ndarray]


@dataclass(frozen=True, eq=False, repr=False)
class Samples:
    """Feeds in order, where they came from, and a fingerprint of their exact contents."""

    feeds: tuple[Feed, ...]
    source: str
    random: bool
    digest: str

    def __len__(self) -> int:
        return len(self.feeds)

    def __iter__(self) -> Iterator[Feed]:
        return iter(self.feeds)

    def __getitem__(self, index: int) -> Feed:
        return self.feeds[index]

    def __repr__(self) -> str:
        return f"Samples({self.source!r}, digest={self.digest[:12]})"


def spec_paths(spec: str | None) -> tuple[Path, ...]:
    """The files or directories a sample ``spec`` reads (none for random data): what no output may replace."""
    if spec is None or spec == "random":
        return ()
    match = _PY_SPEC.match(str(spec))
    return (Path(match["file"]),) if match and not Path(spec).exists() else (Path(spec),)


def load_samples(spec: str | None, inputs: tuple[TensorSpec, ...], shapes: dict[str, tuple[int, ...]], *,
                 what: str = "calibration", error: type[CompilerError] = ConfigError,
                 limit: int | None = None, seed: int = 0, random_count: int = 8, ranges: dict | None = None) -> Samples:
    """Load and check samples for ``inputs`` from ``spec``; raise ``error`` naming the cause and the fix."""
    ctx = _Context(tuple(inputs), shapes, what, error)
    if limit is not None and limit < 1:
        raise error(f"the {what} sample limit must be at least 1, got {limit}", "give a positive number of samples")
    for t in inputs:
        if _is_string(t.dtype):
            raise error(f"input '{t.name}' is a string tensor; {what} data cannot be fed to it",
                        "move string pre-processing out of the model's signature")
        try:
            np.dtype(t.dtype)
        except TypeError:
            raise error(f"input '{t.name}' has dtype {t.dtype}, which numpy cannot hold, so no {what} data can "
                        "be given for it", "change the input's dtype in the model") from None
    if spec is None or spec == "random":
        return _random(ctx, limit, seed, random_count, ranges)
    spec = str(spec)
    path = Path(spec)
    if path.is_dir():
        return _directory(ctx, spec, path, limit)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in (".npz", ".npy"):
            return _array_file(ctx, spec, path, limit)
        if suffix == ".py":
            raise error(f"{what} data '{spec}' is a Python file but names no function",
                        f"give {spec}:function, a function that returns or yields the feeds")
        raise error(f"{what} data '{spec}' is not a .npy, .npz or .py file", FORMS)
    match = _PY_SPEC.match(spec)
    if match:
        return _generator(ctx, spec, Path(match["file"]), match["func"], limit)
    raise error(f"{what} data '{spec}': nothing found at that path", FORMS)


@dataclass(frozen=True)
class _Context:
    inputs: tuple[TensorSpec, ...]
    shapes: dict[str, tuple[int, ...]]
    what: str
    error: type[CompilerError]

    @property
    def names(self) -> str:
        return ", ".join(t.name for t in self.inputs)

    def fail(self, cause: str, fix: str) -> CompilerError:
        return self.error(f"{self.what} {cause}", fix)


def _random(ctx: _Context, limit: int | None, seed: int, count: int, overrides: dict | None = None) -> Samples:
    if count < 1:
        raise ctx.fail(f"random sample count must be at least 1, got {count}", "give a positive number of samples")
    count = min(count, limit) if limit is not None else count
    ranges = input_ranges(ctx.inputs, overrides)
    rng = np.random.default_rng(seed)
    feeds = []
    for _ in range(count):
        feed = {}
        for t in ctx.inputs:
            lo, hi = ranges[t.name]
            dtype, shape = np.dtype(t.dtype), _random_shape(ctx, t)
            if dtype.kind == "f":
                arr = rng.uniform(lo, hi, size=shape).astype(dtype)
            elif dtype.kind == "b":
                arr = rng.integers(0, 1, size=shape, endpoint=True).astype(bool)
            else:
                arr = rng.integers(lo, hi, size=shape, endpoint=True).astype(dtype)
            feed[t.name] = arr
        feeds.append(feed)
    return _samples(feeds, f"{count} random sample{'s' if count != 1 else ''} (seed {seed})", random=True)


def _random_shape(ctx: _Context, t: TensorSpec) -> tuple[int, ...]:
    if t.name in ctx.shapes:
        return tuple(ctx.shapes[t.name])
    if t.dynamic_dims:
        raise ctx.fail(f"data: input '{t.name}' is {t.shape_text()} and no concrete shape is given for random data",
                       f"pass --input-shapes {t.name}:... or give {ctx.what} data from files")
    return tuple(t.shape)


def _directory(ctx: _Context, spec: str, path: Path, limit: int | None) -> Samples:
    files = sorted((p for p in path.iterdir() if p.suffix.lower() in (".npy", ".npz") and p.is_file()),
                   key=lambda p: p.name)
    if not files:
        raise ctx.fail(f"data directory '{spec}' holds no .npy or .npz files",
                       "save one sample per file with numpy.save (single-input models) or numpy.savez "
                       "(one array per input name)")
    total, files = len(files), files[:limit]
    feeds = []
    for f in files:
        label = f"file '{f}'"
        raw = _arrays(ctx, f, label, "save each sample with numpy.savez, one array per input name")
        feed = {}
        for name, arr in _named(ctx, raw, label).items():
            t = _spec(ctx, name)
            feed[name] = arr[None] if arr.ndim == len(t.shape) - 1 else arr
        feeds.append(_conform(ctx, feed, label))
    kinds = " and ".join(k for k in (".npy", ".npz") if any(f.suffix.lower() == k for f in files))
    source = f"{_count(len(feeds), total)} from {Path(spec)}/ ({kinds} files)"
    return _samples(feeds, source, random=False)


def _arrays(ctx: _Context, path: Path, label: str, fix: str) -> dict:
    """A .npz file's arrays by name, or a .npy file's one array under the single input's name."""
    if path.suffix.lower() != ".npy":
        return _load(ctx, path, label)
    if len(ctx.inputs) != 1:
        raise ctx.fail(f"{label} is a .npy file (one array) but the model has {len(ctx.inputs)} inputs "
                       f"({ctx.names})", fix)
    return {ctx.inputs[0].name: _load(ctx, path, label)}


def _array_file(ctx: _Context, spec: str, path: Path, limit: int | None) -> Samples:
    label = f"file '{spec}'"
    arrays = _named(ctx, _arrays(ctx, path, label, "save the samples with numpy.savez, one array per input name"),
                    label)
    counts = {name: _sample_count(ctx, name, arr, label) for name, arr in arrays.items()}
    if len(set(counts.values())) > 1:
        found = ", ".join(f"{n} for '{k}'" for k, n in counts.items())
        raise ctx.fail(f"{label} gives different numbers of samples per input: {found}",
                       "give every input the same number of samples")
    total = next(iter(counts.values()))
    if total == 0:
        raise ctx.fail(f"{label} holds no samples (its arrays have 0 rows)", "give at least one sample per input")
    n = min(total, limit) if limit is not None else total
    feeds = [_conform(ctx, {name: _sample(ctx, name, arr, i) for name, arr in arrays.items()},
                      f"sample {i} of '{spec}'") for i in range(n)]
    return _samples(feeds, f"{_count(n, total)} from {spec}", random=False)


def _sample_count(ctx: _Context, name: str, arr: np.ndarray, label: str) -> int:
    t = _spec(ctx, name)
    rank = len(t.shape)
    if arr.ndim == rank + 1:
        return arr.shape[0]
    if arr.ndim == rank and rank > 0:
        batch = _batch(ctx, t)
        if batch is None or batch < 1:
            raise ctx.fail(f"{label}: array '{name}' has shape {list(arr.shape)} and no batch size is known to "
                           f"split it into samples of input '{name}' {t.shape_text()}",
                           f"add a leading sample axis (shape [N, {t.shape_text()[1:]})")
        if arr.shape[0] % batch and not _dynamic_batch(t):
            raise ctx.fail(f"{label}: array '{name}' has {arr.shape[0]} rows, which do not split into batches of "
                           f"{batch} (input '{name}' is {t.shape_text()}, a static batch)",
                           f"give a multiple of {batch} rows, or add a leading sample axis "
                           f"(shape [N, {t.shape_text()[1:]})")
        return -(-arr.shape[0] // batch)
    raise ctx.fail(f"{label}: array '{name}' has shape {list(arr.shape)} but input '{name}' is {t.shape_text()}",
                   f"give rank {rank + 1} (a leading sample axis)" + (f" or rank {rank} (split into batches)"
                                                                       if rank else "") + f" for '{name}'")


def _sample(ctx: _Context, name: str, arr: np.ndarray, i: int) -> np.ndarray:
    t = _spec(ctx, name)
    if arr.ndim == len(t.shape) + 1:
        return arr[i]
    batch = _batch(ctx, t)
    return arr[i * batch:(i + 1) * batch]


def _batch(ctx: _Context, t: TensorSpec) -> int | None:
    shape = ctx.shapes.get(t.name)
    if shape:
        return shape[0]
    return None if _dynamic_batch(t) else t.shape[0]


def _dynamic_batch(t: TensorSpec) -> bool:
    return 0 in t.dynamic_dims


def _generator(ctx: _Context, spec: str, file: Path, func: str, limit: int | None) -> Samples:
    """``--data file.py:function``: import the file, call the function, take up to ``limit`` (else
    ``GENERATOR_CAP``) feeds from what it returns or yields."""
    if not file.is_file():
        raise ctx.fail(f"data {spec}: file '{file}' does not exist",
                       "check the path; the form is path/to/file.py:function")
    folder = str(file.resolve().parent)
    sys.path.insert(0, folder)  # so the file can import its neighbours
    try:
        result = _call(ctx, spec, _import_function(ctx, spec, file, func), file)
        feeds, capped = _drain(ctx, spec, iter(result), limit, file)
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)
    if not feeds:
        raise ctx.fail(f"data {spec} yielded no samples", "make it yield at least one feed")
    source = f"{_count(len(feeds))} from {spec}"
    if capped:
        source += f" (capped at {GENERATOR_CAP}; it yields more)"
    return _samples(feeds, source, random=False)


def _import_function(ctx: _Context, spec: str, file: Path, func: str):
    """The function ``func`` of the Python file ``file``, imported under a unique module name."""
    name = f"_compiler_data_{next(_module_ids)}_" + re.sub(r"\W", "_", file.stem)
    try:
        mod_spec = importlib.util.spec_from_file_location(name, file.resolve())
        module = importlib.util.module_from_spec(mod_spec)
        sys.modules[name] = module
        mod_spec.loader.exec_module(module)
    except (Exception, SystemExit) as e:
        sys.modules.pop(name, None)
        raise ctx.fail(f"data {spec}: importing '{file}' raised {_exc_text(e)}",
                       f"fix the error in {file}; it must import without side effects") from e
    fn = getattr(module, func, None)
    if fn is None:
        raise ctx.fail(f"data {spec}: '{file}' defines no '{func}'",
                       f"define def {func}(): that yields feeds in {file}, or name another function")
    if not callable(fn):
        raise ctx.fail(f"data {spec}: '{func}' is a {type(fn).__name__}, not a function",
                       f"name a function that returns or yields feeds, e.g. {file}:make_samples")
    return fn


def _call(ctx: _Context, spec: str, fn, file: Path):
    """What the user's function returns, which must be an iterable of feeds."""
    try:
        result = fn()
    except (Exception, SystemExit) as e:
        raise ctx.fail(f"data {spec} raised {_exc_text(e)}", f"fix the error in {file}") from e
    if isinstance(result, (Mapping, str, bytes)) or not hasattr(result, "__iter__"):
        raise ctx.fail(f"data {spec} returned {_kind(result)}, not an iterable of feeds",
                       "return or yield each feed: a dict name->array, a tuple of arrays in input order "
                       f"({ctx.names}), or one array for a single-input model")
    return result


def _drain(ctx: _Context, spec: str, iterator, limit: int | None, file: Path) -> tuple[list, bool]:
    """(feeds, capped): up to ``limit`` conformed feeds (``GENERATOR_CAP`` without one, capped=True when it yields
    more); the iterator is closed however this ends."""
    cap = limit if limit is not None else GENERATOR_CAP
    feeds, capped = [], False
    try:
        for i in itertools.count():
            if i == cap and limit is not None:
                break
            try:
                item = next(iterator)
            except StopIteration:
                break
            if i == cap:
                capped = True
                break
            label = f"item {i} of {spec}"
            feeds.append(_conform(ctx, _item_feed(ctx, item, label), label))
    except CompilerError:
        raise
    except (Exception, SystemExit) as e:
        raise ctx.fail(f"data {spec} raised {_exc_text(e)} while yielding item {len(feeds)}",
                       f"fix the error in {file}") from e
    finally:
        close = getattr(iterator, "close", None)
        if callable(close):
            with contextlib.suppress(Exception):
                close()
    return feeds, capped


def _item_feed(ctx: _Context, item, label: str) -> dict[str, np.ndarray]:
    if isinstance(item, Mapping):
        raw = {str(k): v for k, v in item.items()}
    elif isinstance(item, (tuple, list)):
        if len(item) != len(ctx.inputs):
            raise ctx.fail(f"{label} holds {len(item)} arrays but the model has {len(ctx.inputs)} inputs "
                           f"({ctx.names})", f"yield one array per input, in the order {ctx.names}, or a dict "
                           "name->array")
        raw = {t.name: v for t, v in zip(ctx.inputs, item)}
    elif len(ctx.inputs) == 1:
        raw = {ctx.inputs[0].name: item}
    else:
        raise ctx.fail(f"{label} is one array but the model has {len(ctx.inputs)} inputs ({ctx.names})",
                       f"yield a dict name->array or a tuple of arrays in the order {ctx.names}")
    feed = {}
    for name, value in raw.items():
        try:
            if callable(getattr(value, "numpy", None)):
                value = value.numpy()
            feed[name] = np.array(value)  # a copy: generators may refill one buffer
        except Exception as e:
            raise ctx.fail(f"{label}: the value for '{name}' is not an array ({_exc_text(e)})",
                           "yield numpy arrays or tensors") from None
    return _named(ctx, feed, label)


def _load(ctx: _Context, path: Path, label: str):
    try:
        return load_arrays(path)
    except Exception as e:
        raise ctx.fail(f"{label} cannot be read ({_exc_text(e)})",
                       "save samples with numpy.save/numpy.savez, as numeric arrays (no Python objects)") from None


def _named(ctx: _Context, raw: dict[str, np.ndarray], label: str) -> dict[str, np.ndarray]:
    names = [t.name for t in ctx.inputs]
    unknown = [k for k in raw if k not in names]
    if unknown:
        raise ctx.fail(f"{label} names {', '.join(repr(u) for u in unknown)}, which "
                       f"{'is not an input' if len(unknown) == 1 else 'are not inputs'}; inputs are: {ctx.names}",
                       "use the model's input names (see `inspect`) as keys")
    missing = [n for n in names if n not in raw]
    if missing:
        raise ctx.fail(f"{label} lacks input(s) {', '.join(repr(m) for m in missing)}; inputs are: {ctx.names}",
                       "give an array for every input")
    return {n: raw[n] for n in names}


def _conform(ctx: _Context, feed: dict[str, np.ndarray], label: str) -> Feed:
    """Cast each array to its input's dtype where that loses nothing, and check its shape."""
    out = {}
    for t in ctx.inputs:
        arr, _ = cast(np.asarray(feed[t.name]), np.dtype(t.dtype), subject=f"{ctx.what} {label}: array for '{t.name}'",
                      takes=f"input '{t.name}' is", whose="its dtype", error=ctx.error)
        needed = t.shape_text()
        bad = arr.ndim != len(t.shape) or any(isinstance(d, int) and d >= 0 and d != s
                                              for d, s in zip(t.shape, arr.shape))
        if bad:
            raise ctx.fail(f"{label}: array for '{t.name}' has shape {list(arr.shape)} but input '{t.name}' needs "
                           f"{needed}", f"reshape it to {needed} (? = any size)")
        out[t.name] = np.ascontiguousarray(arr)
    return out


def _samples(feeds: list[Feed], source: str, *, random: bool) -> Samples:
    return Samples(tuple(feeds), source, random, _digest(feeds))


def _digest(feeds: list[Feed]) -> str:
    """sha256 over every feed in order: input names, dtypes, shapes and raw bytes."""
    h = hashlib.sha256()
    for i, feed in enumerate(feeds):
        for name, arr in feed.items():
            arr = np.ascontiguousarray(arr)
            h.update(f"{i}\0{name}\0{arr.dtype.str}\0{arr.shape}\0".encode())
            h.update(arr.tobytes())
    return h.hexdigest()


def _spec(ctx: _Context, name: str) -> TensorSpec:
    return next(t for t in ctx.inputs if t.name == name)


def _is_string(dtype: str) -> bool:
    if dtype in ("string", "str", "bytes", "object"):
        return True
    try:
        return np.dtype(dtype).kind in "OUS"
    except TypeError:
        return False


def _count(n: int, total: int | None = None) -> str:
    noun = "sample" if n == 1 else "samples"
    return f"{n} of {total} {noun}" if total is not None and total != n else f"{n} {noun}"


def _kind(value) -> str:
    return "a dict" if isinstance(value, Mapping) else f"a {type(value).__name__}"


def _exc_text(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0][:200]}" if lines else type(e).__name__
