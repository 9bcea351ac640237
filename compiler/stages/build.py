"""build: the engine, by the backend the inspect stage chose (``backends``), for the optimization profiles chosen
up front: explicit (--profiles), or derived from samples by --profile-strategy (TF-TRT's strategies)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..artifacts import EngineArtifact, ModelInfo, TensorSpec, refuse_replacing_inputs
from ..backends import build, get, resolve_backend
from ..common.shapes import resolve_shapes
from ..config import BuildConfig, CompileConfig, Shape
from ..common.samples import load_samples
from ..errors import ConfigError
from ..common.onnxutil import io_specs, load
from ..profiles import check_profiles, resolve_profiles
from .state import State


def _sample_shapes(samples) -> list[dict]:
    return [{k: tuple(v.shape) for k, v in feed.items()} for feed in samples or ()]


def build_engine(onnx_path: Path, out: Path, cfg=None, shapes: dict[str, Shape] | None = None,
                 profile_samples=None, profiles=None, profile_source: str | None = None) -> EngineArtifact:
    """Build an engine from an ONNX file. ``shapes`` are the shapes it must run with (its validation shapes);
    ``profile_samples`` (feeds) feed ``cfg.profile_strategy``; ``profiles`` (ShapeProfiles), when given, are
    used as they are, with ``profile_source`` saying where they came from (compile resolves them up front).
    The optimization profiles used, and how they were chosen, go into the artifact's summary.

    Seven positional parameters: the CLI's ``build`` and compile both call it; the last three are optional and
    compile passes them by keyword."""
    cfg = cfg or BuildConfig()
    refuse_replacing_inputs([onnx_path, *cfg.plugins], [("engine", out), ("timing cache", cfg.timing_cache)])
    backend = get(resolve_backend(cfg.backend)[0])
    inputs, _ = io_specs(load(Path(onnx_path)))
    run_shapes = dict(shapes) if shapes else None
    if profiles:
        check_profiles(inputs, profiles, run_shapes)
        how = profile_source or "given"
    elif not cfg.profiles and not cfg.profile_strategy and backend.runs_any_shape:
        profiles, how = (), f"none: {backend.name} runs any shape"
    else:  # given or derived profiles are checked on every backend, so a CPU run catches their mistakes
        if run_shapes is None and not cfg.profiles and not cfg.profile_strategy:
            run_shapes = resolve_shapes(inputs, {}, 1)
        profiles, how = resolve_profiles(inputs, cfg.profiles, cfg.profile_strategy, _sample_shapes(profile_samples),
                                         run_shapes)
    art = build(Path(onnx_path), Path(out), cfg, profiles=profiles)
    art.summary["profile_source"] = how
    if backend.name != "tensorrt" and profiles:
        art.summary["profiles"] = [p.to_json() for p in profiles]
    ignored = cfg.ignored_by(backend.name)
    if ignored:
        art.summary["ignored_options"] = ignored
    return art


def load_profile_samples(cfg, inputs: tuple[TensorSpec, ...], shapes: dict[str, Shape], seed: int = 0,
                         fallback: str | None = None):
    """The samples ``--profile-strategy`` derives profiles from: ``--profile-data``, else ``fallback``
    (compile's --data), loaded with the one sample loader (compiler/common/samples.py); None without a strategy."""
    if not cfg.profile_strategy:
        return None
    spec = cfg.profile_data or fallback
    if spec is None:
        return None
    return load_samples(spec, inputs, shapes, what="profile", error=ConfigError, seed=seed)


def model_profiles(cfg: CompileConfig, info: ModelInfo):
    """(profiles in the model's own layout, how they were chosen, cfg) for compile: explicit, or derived from
    --profile-data (else --data) by --profile-strategy (``profiles.resolve_profiles``); ((), None, cfg) when
    neither. Inputs a profile lets vary are not frozen by the passes, even when --input-shapes names them:
    there --input-shapes only sets the shapes validation runs with."""
    bcfg = cfg.build
    profiles, how = (), None
    if bcfg.profiles or bcfg.profile_strategy:
        samples = load_profile_samples(bcfg, info.inputs, {}, cfg.validate.seed, cfg.validate.data)
        profiles, how = resolve_profiles(info.inputs, bcfg.profiles, bcfg.profile_strategy, _sample_shapes(samples),
                                         None)
    varying = {n for p in profiles for n in p.min if p.min[n] != p.max[n]}
    frozen = {k: v for k, v in cfg.optimize.input_shapes.items() if k not in varying}
    if frozen != cfg.optimize.input_shapes:
        cfg = replace(cfg, optimize=replace(cfg.optimize, input_shapes=frozen))
    return profiles, how, cfg


def run(state: State) -> State:
    source = state.engine_source
    # Profiles were set in the model's layout; the engine's inputs may be transposed (--inputs-as-nchw).
    engine_profiles = tuple(p.map(source.change.candidate_shape) for p in state.profiles) if state.profiles else None
    bcfg = state.cfg.build
    if state.cfg.precision.mode == "bf16":  # OpenVINO's hint follows the graph; fp16 and int8 graphs run as f32
        bcfg = replace(bcfg, inference_precision="bf16")
    engine = build_engine(source.path, state.engine_path, bcfg, state.engine_shapes,
                          profiles=engine_profiles, profile_source=state.profile_source)
    ignored = engine.summary.get("ignored_options")
    notices = [f"options ignored by the {engine.backend} backend: {', '.join(ignored)}"] if ignored else []
    asked, used = engine.summary.get("precision_hint"), engine.summary.get("inference_precision")
    if asked and used and asked != used:
        notices.append(f"OpenVINO was asked for {asked} and runs in {used} on this CPU (it lacks {asked}); the "
                       f"engine summary records both")
    if engine.summary.get("precision_notice"):  # a backend on which the lowered precision does not pay off
        notices.append(engine.summary["precision_notice"])
    return state.but(engine=engine, notices=tuple(notices))
