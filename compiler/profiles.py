"""TensorRT optimization profiles: given explicitly, derived from sample inputs, checked, and chosen at run time.

A profile gives each dynamic input a min, opt and max shape; TensorRT tunes
its kernels for opt and accepts anything between min and max. An engine may
carry several. Everything here is pure (no TensorRT), so it is tested on any
machine; ``backends/tensorrt.py`` turns the result into Polygraphy ``Profile``s.

Derivation follows TF-TRT's dynamic-shape strategies, so a TF-TRT user's
``input_fn`` maps onto ``--profile-data`` with the same meaning:

- ``range``: one profile spanning every sample, min and max taken per
  dimension, opt = max.
- ``optimal``: one profile per distinct set of sample shapes, min = opt = max
  (fastest for exactly those shapes, nothing else).
- ``range+optimal``: the ``optimal`` profiles first, then the ``range`` one.
  At run time the first profile that holds the shapes is used, so a shape seen
  while building gets its own kernels and anything in between still runs.

Repeated sample shapes count once (TF-TRT does the same).
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .artifacts import TensorSpec
from .config import PROFILE_STRATEGIES, Shape, parse_shapes
from .errors import ConfigError

STRATEGIES = PROFILE_STRATEGIES


@dataclass(frozen=True)
class ShapeProfile:
    """min/opt/max shape per input (the dynamic ones; static inputs need no entry)."""

    min: dict[str, Shape]
    opt: dict[str, Shape]
    max: dict[str, Shape]

    def holds(self, shapes: Mapping[str, Shape]) -> bool:
        """True when every input this profile names has a shape within [min, max] (and the same rank)."""
        for name, lo in self.min.items():
            shape = shapes.get(name)
            if shape is None or len(shape) != len(lo):
                return False
            if any(not a <= s <= b for a, s, b in zip(lo, shape, self.max[name])):
                return False
        return True

    def map(self, fn) -> ShapeProfile:
        """The profile with each input's shapes passed through ``fn(name, shape)`` (e.g. into an engine's
        transposed layout: ``Interface.candidate_shape``)."""
        return ShapeProfile(*({n: tuple(fn(n, s)) for n, s in getattr(self, w).items()} for w in ("min", "opt", "max")))

    def to_json(self) -> dict:
        return {name: {"min": list(self.min[name]), "opt": list(self.opt[name]), "max": list(self.max[name])}
                for name in self.min}

    def text(self) -> str:
        return "; ".join(f"{n}: {_dims(self.min[n])} / {_dims(self.opt[n])} / {_dims(self.max[n])}" for n in self.min)


def _dims(shape: Shape) -> str:
    return "x".join(str(d) for d in shape) or "scalar"


def parse_profiles(mins: Iterable[str], opts: Iterable[str], maxs: Iterable[str]) -> tuple[ShapeProfile, ...]:
    """Profiles from repeated ``--min-shapes/--opt-shapes/--max-shapes``: the k-th of each flag is profile k.

    ``--opt-shapes`` may be left out (opt = max, TF-TRT's choice); min and max must come in pairs, name the
    same inputs with the same ranks, and satisfy min <= opt <= max in every dimension.
    """
    mins, opts, maxs = list(mins), list(opts), list(maxs)
    if not mins and not maxs and not opts:
        return ()
    if len(mins) != len(maxs) or (opts and len(opts) != len(mins)):
        raise ConfigError(f"profiles need as many --min-shapes as --max-shapes (and --opt-shapes, if given); got "
                          f"{len(mins)} min, {len(opts)} opt, {len(maxs)} max",
                          "give one --min-shapes and one --max-shapes per profile, e.g. "
                          "--min-shapes x:1x3x224x224 --max-shapes x:8x3x224x224")
    profiles = []
    for k, (lo_spec, hi_spec) in enumerate(zip(mins, maxs)):
        where = f"profile {k}"
        lo, hi = parse_shapes(lo_spec, "--min-shapes"), parse_shapes(hi_spec, "--max-shapes")
        mid = parse_shapes(opts[k], "--opt-shapes") if opts else dict(hi)
        if not (set(lo) == set(hi) == set(mid)):
            names = sorted(set(lo) ^ set(hi) | set(lo) ^ set(mid))
            raise ConfigError(f"{where}: --min-shapes, --opt-shapes and --max-shapes name different inputs "
                              f"({', '.join(names)} not in all three)", "name the same inputs in each flag")
        for name in lo:
            _check_order(where, name, lo[name], mid[name], hi[name])
        profiles.append(ShapeProfile(lo, mid, hi))
    return tuple(profiles)


def _check_order(where: str, name: str, lo: Shape, mid: Shape, hi: Shape) -> None:
    if not len(lo) == len(mid) == len(hi):
        raise ConfigError(f"{where}: input '{name}' has ranks {len(lo)}/{len(mid)}/{len(hi)} in min/opt/max",
                          "give the same number of dimensions in each flag")
    if any(not a <= b <= c for a, b, c in zip(lo, mid, hi)):
        raise ConfigError(f"{where}: input '{name}' needs min <= opt <= max in every dimension, got "
                          f"{_dims(lo)} / {_dims(mid)} / {_dims(hi)}", "order the shapes min <= opt <= max")


def derive_profiles(inputs: tuple[TensorSpec, ...], samples: Iterable[Mapping[str, Shape]],
                    strategy: str) -> tuple[ShapeProfile, ...]:
    """Profiles for the dynamic ``inputs`` from the shapes of sample feeds, by TF-TRT's ``strategy``."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown profile strategy '{strategy}'", f"use one of {', '.join(STRATEGIES)}")
    dynamic = [t for t in inputs if t.dynamic_dims]
    if not dynamic:
        return ()
    seen: list[tuple[Shape, ...]] = []
    for i, sample in enumerate(samples):
        key = []
        for t in dynamic:
            shape = sample.get(t.name)
            if shape is None:
                raise ConfigError(f"profile sample {i} has no input '{t.name}'", "give every input in each sample")
            shape = tuple(int(d) for d in shape)
            _fits(t, shape, f"profile sample {i}")
            key.append(shape)
        if tuple(key) not in seen:
            seen.append(tuple(key))
    if not seen:
        raise ConfigError("no samples to derive optimization profiles from",
                          "give --profile-data with at least one sample")
    names = [t.name for t in dynamic]
    for j, name in enumerate(names):
        ranks = sorted({len(k[j]) for k in seen})
        if len(ranks) > 1:
            raise ConfigError(f"samples give input '{name}' different ranks ({', '.join(map(str, ranks))}); one "
                              "profile cannot hold them", "give samples of one rank per input")
    optimal = [ShapeProfile(*(dict(zip(names, key)) for _ in range(3))) for key in seen]
    if strategy == "optimal":
        return tuple(optimal)
    lo = {n: tuple(min(k[j][d] for k in seen) for d in range(len(seen[0][j]))) for j, n in enumerate(names)}
    hi = {n: tuple(max(k[j][d] for k in seen) for d in range(len(seen[0][j]))) for j, n in enumerate(names)}
    spanning = ShapeProfile(lo, dict(hi), hi)
    if strategy == "range":
        return (spanning,)
    return tuple(optimal) + (() if spanning in optimal else (spanning,))


def _fits(t: TensorSpec, shape: Shape, where: str) -> None:
    if len(shape) != len(t.shape):
        raise ConfigError(f"{where}: input '{t.name}' has rank {len(shape)} but the model's input is "
                          f"{t.shape_text()}", f"give '{t.name}' {len(t.shape)} dimensions")
    fixed = [(i, d, s) for i, (d, s) in enumerate(zip(t.shape, shape)) if isinstance(d, int) and d >= 0 and d != s]
    if fixed:
        i, d, s = fixed[0]
        raise ConfigError(f"{where}: input '{t.name}' dimension {i} is fixed at {d} in the model, not {s}",
                          f"use {t.shape_text()} with {d} at dimension {i}")
    if any(s < 1 for s in shape):
        raise ConfigError(f"{where}: input '{t.name}' has an empty dimension in {list(shape)}",
                          "give every dimension at least 1")


def check_profiles(inputs: tuple[TensorSpec, ...], profiles: tuple[ShapeProfile, ...],
                   run_shapes: Mapping[str, Shape] | None = None) -> None:
    """Refuse profiles that TensorRT would: unknown inputs, a dynamic input left out, a min/max that
    contradicts a static dimension. With ``run_shapes`` (the shapes validation runs), one profile must hold
    them, or the engine could not run its own validation."""
    if not profiles:
        return
    by_name = {t.name: t for t in inputs}
    dynamic = [t.name for t in inputs if t.dynamic_dims]
    for k, p in enumerate(profiles):
        unknown = sorted(set(p.min) - set(by_name))
        if unknown:
            near = difflib.get_close_matches(unknown[0], list(by_name), n=1)
            raise ConfigError(f"profile {k} names '{unknown[0]}', which is not an input of the model"
                              + (f" (did you mean '{near[0]}'?)" if near else ""),
                              f"the inputs are {', '.join(by_name)}")
        missing = [n for n in dynamic if n not in p.min]
        if missing:
            raise ConfigError(f"profile {k} gives no shapes for dynamic input(s) {', '.join(missing)}",
                              "give every dynamic input in --min-shapes/--max-shapes "
                              f"({', '.join(f'{n}: {by_name[n].shape_text()}' for n in missing)})")
        for name in p.min:
            for which in ("min", "opt", "max"):
                _fits(by_name[name], getattr(p, which)[name], f"profile {k} {which}")
    if run_shapes is not None and choose_profile(profiles, run_shapes) is None:
        shown = ", ".join(f"{n}: {_dims(s)}" for n, s in run_shapes.items() if n in profiles[0].min)
        raise ConfigError(f"no optimization profile holds the shapes validation runs with ({shown})",
                          "widen a profile to include them, or pass --input-shapes inside a profile")


def choose_profile(profiles: tuple[ShapeProfile, ...], shapes: Mapping[str, Shape]) -> int | None:
    """Index of the first profile that holds ``shapes`` (TF-TRT's rule), or None."""
    for i, p in enumerate(profiles):
        if p.holds(shapes):
            return i
    return None


def resolve_profiles(inputs: tuple[TensorSpec, ...], explicit: tuple[ShapeProfile, ...], strategy: str | None,
                     sample_shapes: list[Mapping[str, Shape]] | None, run_shapes: Mapping[str, Shape] | None
                     ) -> tuple[tuple[ShapeProfile, ...], str]:
    """(profiles, how they were chosen) for an engine with ``inputs``, all checked.

    Explicit profiles win; else a strategy over the sample shapes; else, for a model with dynamic inputs,
    one profile pinned to ``run_shapes`` (the shapes validation runs with), which is what an engine built for
    one shape needs. A static model gets no profile.
    """
    if explicit:
        check_profiles(inputs, explicit, run_shapes)
        return explicit, "given (--min/--opt/--max-shapes)"
    if strategy:
        if not sample_shapes:
            raise ConfigError(f"--profile-strategy {strategy} needs sample inputs to derive profiles from",
                              "give --profile-data (or --data) with samples of the shapes the engine will see")
        profiles = derive_profiles(inputs, sample_shapes, strategy)
        check_profiles(inputs, profiles, run_shapes)
        return profiles, f"{strategy} over {len(sample_shapes)} sample(s)"
    dynamic = [t for t in inputs if t.dynamic_dims]
    if not dynamic:
        return (), "static shapes: no profile needed"
    missing = [t for t in dynamic if run_shapes is None or t.name not in run_shapes]
    if missing:
        t = missing[0]
        raise ConfigError(f"input '{t.name}' has dynamic shape {t.shape_text()} and no shape or profile was given",
                          f"pass --input-shapes {t.name}:..., or --min-shapes/--max-shapes for a range")
    pinned = {t.name: tuple(run_shapes[t.name]) for t in dynamic}
    profile = ShapeProfile(pinned, dict(pinned), dict(pinned))
    check_profiles(inputs, (profile,))
    return (profile,), "pinned to the validation shapes (give --min/--max-shapes or --profile-strategy for a range)"
