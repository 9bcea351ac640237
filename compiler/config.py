"""Settings for each stage, as frozen dataclasses, and parsing of shape specs.

The CLI turns flags into these; the Python API takes them directly. Nothing
here touches TensorFlow, ONNX or a backend.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError

Shape = tuple[int, ...]

_DIM = re.compile(r"^[0-9]+$")


def parse_shapes(spec: str | None, flag: str = "--input-shapes") -> dict[str, Shape]:
    """Parse ``name:1x224x224x3,other:4x16`` into ``{"name": (1, 224, 224, 3), ...}``.

    A name may itself contain ``:`` (TensorFlow tensor names do); the shape is
    what follows the last one. A scalar is written ``name:`` with nothing after.
    """
    if spec is None or not spec.strip():
        return {}
    shapes: dict[str, Shape] = {}
    for item in spec.split(","):
        item = item.strip()
        name, sep, dims = item.rpartition(":")
        example = f"{flag} image:1x224x224x3,mask:1x224"
        if not sep or not name:
            raise ConfigError(f"{flag} entry '{item}' has no 'name:' part",
                              f"write each entry as NAME:DIMxDIMx..., e.g. {example}")
        parts = [d.strip() for d in dims.split("x")] if dims.strip() else []
        bad = [d for d in parts if not _DIM.match(d) or int(d) == 0]
        if bad:
            raise ConfigError(f"{flag} entry '{item}' has dimension(s) {', '.join(repr(b) for b in bad)} "
                              "that are not positive integers",
                              f"give every dimension as a number, e.g. {example}")
        if name in shapes:
            raise ConfigError(f"{flag} names input '{name}' twice", "give each input once")
        shapes[name] = tuple(int(d) for d in parts)
    return shapes


def parse_names(spec: str | None) -> tuple[str, ...]:
    """Parse ``a,b,c`` into a tuple, dropping blanks."""
    if not spec:
        return ()
    return tuple(s.strip() for s in spec.split(",") if s.strip())


@dataclass(frozen=True)
class ExportConfig:
    signature: str | None = None  # None: serving_default, else the only one
    tag: str = "serve"
    opset: int = 17
    allow_unsafe_ops: bool = False  # compile SavedModels whose graph reads/writes files or runs Python


@dataclass(frozen=True)
class OptimizeConfig:
    input_shapes: dict[str, Shape] = field(default_factory=dict)
    passes: tuple[str, ...] | None = None  # None: the default pipeline
    skip_passes: tuple[str, ...] = ()
    check_each_pass: bool = False
    dump_dir: Path | None = None
    max_iterations: int = 4  # fixed-point rounds over the pipeline
    rules_file: Path | None = None  # --rules FILE.py: user rules (RULES = [...])
    inputs_as_nchw: tuple[str, ...] = ()
    outputs_as_nchw: tuple[str, ...] = ()
    cut_inputs: tuple[str, ...] = ()  # --cut-inputs: tensors that become the graph's inputs
    cut_outputs: tuple[str, ...] = ()


BACKENDS = ("auto", "tensorrt", "onnxruntime")


@dataclass(frozen=True)
class BuildConfig:
    backend: str = "auto"
    workspace_mib: int | None = None  # TensorRT memory pool limit

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise ConfigError(f"unknown backend '{self.backend}'", f"use one of {', '.join(BACKENDS)}")


# Default tolerances per seam. TF and onnxruntime run different kernels, so the
# first seam gets the loosest bound; passes should be near bit-exact; the
# engine seam at fp32 sits between (backends fuse and reorder arithmetic).
DEFAULT_TOLERANCES = {
    "tf→onnx": (1e-4, 1e-3),
    "onnx→optimized": (1e-5, 1e-5),
    "optimized→engine": (1e-4, 1e-3),
    "validate": (1e-4, 1e-3),  # the `validate` subcommand, between any two models
}


@dataclass(frozen=True)
class ValidateConfig:
    enabled: bool = True
    atol: float | None = None  # None: the seam's default
    rtol: float | None = None
    seed: int = 0
    iterations: int = 1
    batch: int = 1  # used for a dynamic leading dimension when no --input-shapes

    def tolerances(self, seam: str) -> tuple[float, float]:
        atol, rtol = DEFAULT_TOLERANCES.get(seam, DEFAULT_TOLERANCES["validate"])
        return (atol if self.atol is None else self.atol, rtol if self.rtol is None else self.rtol)


@dataclass(frozen=True)
class CompileConfig:
    export: ExportConfig = field(default_factory=ExportConfig)
    optimize: OptimizeConfig = field(default_factory=OptimizeConfig)
    build: BuildConfig = field(default_factory=BuildConfig)
    validate: ValidateConfig = field(default_factory=ValidateConfig)
    keep_intermediates: Path | None = None
    report_path: Path | None = None  # None: OUT.report.json
