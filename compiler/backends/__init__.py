"""Stage 2 backends: each turns an optimized ONNX model into an engine file and loads what it built.

A backend (``Backend``) has a ``name``, ``availability() -> (ok, why)``, ``build(onnx, out, settings, profiles)
-> EngineArtifact``, the artifact ``formats`` it loads, and ``load(path, plugins) -> runner``; its runner lives
in its own module. ``REGISTRY`` lists them; ``auto`` takes the first available in ``AUTO_ORDER`` and says which
and why. A new backend is one module here and one line in each list: the pipeline, ``build`` and
``runtime.load`` go through the registry and name no backend.

``tensorrt`` builds a TensorRT plan through Polygraphy's loaders (needs TensorRT and an NVIDIA GPU);
``openvino`` compiles the model for this CPU with OpenVINO and exports the compiled blob (needs openvino);
``onnxruntime`` writes a pre-optimized ORT-format model (native: tuned to this CPU and onnxruntime version; portable:
runs anywhere), and runs plain ONNX models as written.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

from ..artifacts import EngineArtifact
from ..config import BuildConfig
from ..errors import BuildError, RunError
from . import onnxruntime, openvino, tensorrt


class Backend(Protocol):
    name: str
    label: str  # how users know it ("TensorRT")
    formats: tuple[str, ...]  # artifact formats (``artifacts.detect_format``) its ``load`` runs
    install_hint: str  # what to do when it is unavailable
    runs_any_shape: bool  # False: builds for optimization profiles, which every dynamic input needs

    def availability(self) -> tuple[bool, str]: ...

    def build(self, onnx_path: Path, out: Path, settings: BuildConfig, profiles: tuple = ()) -> EngineArtifact: ...

    def load(self, path: Path, plugins: tuple = ()): ...


REGISTRY: dict[str, Backend] = {b.name: b for b in (tensorrt.BACKEND, openvino.BACKEND, onnxruntime.BACKEND)}
# What ``--backend auto`` tries, fastest first; the last one runs anywhere.
AUTO_ORDER = ("tensorrt", "openvino", "onnxruntime")


def get(name: str) -> Backend:
    try:
        return REGISTRY[name]
    except KeyError:
        raise BuildError(f"unknown backend '{name}'", f"use --backend auto, {', '.join(REGISTRY)}") from None


def resolve_backend(requested: str) -> tuple[str, str | None]:
    """(backend, notice): the backend to use and, for ``auto``, why it was chosen when it is not the first."""
    if requested != "auto":
        return get(requested).name, None
    passed_over = []
    for name in AUTO_ORDER:
        ok, why = REGISTRY[name].availability()
        if ok:
            break
        passed_over.append(f"{REGISTRY[name].label} backend unavailable ({why})")
    if not passed_over:
        return name, None
    first, chosen = REGISTRY[AUTO_ORDER[0]].label, REGISTRY[name]
    what = "CPU artifact" if name == "onnxruntime" else "CPU engine"
    return name, (f"{'; '.join(passed_over)}; built an {chosen.label} {what} instead ({why}). "
                  f"This is NOT a {first} engine.")


def build(onnx_path: Path, out: Path, cfg: BuildConfig = BuildConfig(), profiles: tuple = ()) -> EngineArtifact:
    """Build ``out`` from ``onnx_path`` with the backend ``cfg.backend`` resolves to. ``profiles`` (checked
    ShapeProfiles, see compiler/profiles.py) are optimization profiles; a backend that runs any shape ignores them."""
    return get(resolve_backend(cfg.backend)[0]).build(Path(onnx_path), Path(out), cfg, profiles)


def for_format(fmt: str) -> Backend:
    """The backend that runs artifacts of format ``fmt``."""
    return next(b for b in REGISTRY.values() if fmt in b.formats)


def load(path: Path, fmt: str, plugins: tuple = ()):
    """A runner for the artifact at ``path`` of format ``fmt``, by the backend that runs it; a backend that
    cannot run here is named with what the file is, since the user may not know it."""
    backend = for_format(fmt)
    ok, why = backend.availability()
    if not ok:
        raise RunError(f"'{path}' is a {FORMAT_NAMES.get(fmt, fmt)}, but {backend.label} cannot run here: {why}",
                       backend.install_hint)
    return backend.load(Path(path), tuple(plugins))


FORMAT_NAMES = {"tensorrt-plan": "TensorRT plan", "openvino-blob": "OpenVINO engine (compiled blob)",
                "onnxruntime-ort": "onnxruntime ORT artifact", "onnx": "ONNX model"}
