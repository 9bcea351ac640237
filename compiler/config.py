"""Settings for each stage, as frozen dataclasses, and parsing of shape specs.

The CLI turns flags into these; the Python API takes them directly. Nothing
here touches TensorFlow, ONNX or a backend.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError
from .limits import DEFAULT_TIMEOUT_S, check_timeout

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


def parse_ranges(specs) -> dict[str, tuple[float, float]]:
    """Parse repeated ``--val-range NAME:LO,HI`` (or ``LO,HI`` for every input) into ``{name: (lo, hi)}``."""
    ranges: dict[str, tuple[float, float]] = {}
    for spec in specs or ():
        name, _, bounds = str(spec).rpartition(":")
        parts = bounds.split(",")
        try:
            lo, hi = (float(parts[0]), float(parts[1])) if len(parts) == 2 else (None, None)
        except ValueError:
            lo = hi = None
        if lo is None or not lo <= hi:
            raise ConfigError(f"--val-range '{spec}' is not NAME:LO,HI with LO <= HI",
                              "write e.g. --val-range image:0,255 (or 0,1 for every input)")
        ranges[name] = (lo, hi)
    return ranges


def is_tolerance(value) -> bool:
    """A usable tolerance: a real number, finite and >= 0 (NaN compares false with everything, so a NaN
    tolerance would pass any difference; a negative one would fail equal values)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def check_tolerances(atol, rtol) -> None:
    """Refuse (ConfigError) an ``atol``/``rtol`` that is not ``is_tolerance``; None means "the default"."""
    for name, value in (("atol", atol), ("rtol", rtol)):
        if value is not None and not is_tolerance(value):
            raise ConfigError(f"tolerance {name} {value!r} is not a finite number >= 0",
                              f"give {name} as a number such as 1e-4 (0 demands exact equality)")


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
    # SavedModels whose variables hold more bytes go through tf2onnx's large-model path: the ONNX is written
    # with its weights as external data beside it (a protobuf file cannot exceed 2 GiB). README, "Models over 2 GB".
    large_model_bytes: int = 1_500_000_000


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


PRECISIONS = ("fp32", "fp16", "bf16", "int8")
MIXED_FLOATS = ("fp16", "bf16")  # the precisions lowered by casting floats, with a float32 block list
CALIB_METHODS = ("minmax", "entropy", "percentile")


@dataclass(frozen=True)
class PrecisionConfig:
    mode: str = "fp32"  # fp32 | fp16 | bf16 | int8: the dtypes the engine's graph runs in
    fp16_io: bool = False  # fp16: float16 graph inputs/outputs too (default: float32 with Casts at the edge)
    keep_fp32: tuple[str, ...] = ()  # fp16/bf16: op types or node names kept in float32, beyond the default list
    auto_mixed: bool = False  # fp16/bf16: also keep the fewest nodes in float32 that make validation pass
    int8_skip: tuple[str, ...] = ()  # int8: op types or node names left unquantized
    calib_data: str | None = None  # int8: samples (see compiler/common/samples.py); None: --data, else random
    calib_method: str = "minmax"
    calib_cache: Path | None = None  # None: OUT.calib.json beside the engine (compile) or model (optimize)
    calib_samples: int | None = None  # use at most this many calibration samples
    random_calib_samples: int = 32
    percentile: float = 99.999  # for calib_method percentile

    def __post_init__(self):
        if self.mode not in PRECISIONS:
            raise ConfigError(f"unknown precision '{self.mode}'", f"use one of {', '.join(PRECISIONS)}")
        if self.calib_method not in CALIB_METHODS:
            raise ConfigError(f"unknown calibration method '{self.calib_method}'",
                              f"use one of {', '.join(CALIB_METHODS)}")
        fp16_only = {"--fp16-io": self.fp16_io}
        mixed_only = {"--keep-fp32": self.keep_fp32, "--auto-mixed": self.auto_mixed}
        int8_only = {"--int8-skip": self.int8_skip, "--calib-data": self.calib_data,
                     "--calib-cache": self.calib_cache, "--calib-samples": self.calib_samples,
                     "--calib-method": self.calib_method != "minmax"}
        for flags, modes in ((fp16_only, ("fp16",)), (mixed_only, MIXED_FLOATS), (int8_only, ("int8",))):
            used = [f for f, v in flags.items() if v]
            if used and self.mode not in modes:
                raise ConfigError(f"{', '.join(used)} only applies to --precision {'/'.join(modes)}, not {self.mode}",
                                  f"add --precision {modes[0]} or drop {used[0]}")
        if self.calib_samples is not None and self.calib_samples < 1:
            raise ConfigError(f"--calib-samples must be at least 1, not {self.calib_samples}", "give a positive count")
        if not 0 < self.percentile <= 100:
            raise ConfigError(f"percentile {self.percentile} is not in (0, 100]", "use e.g. 99.999")


BACKENDS = ("auto", "tensorrt", "openvino", "onnxruntime")
CPU_MODES = ("latency", "throughput")  # OpenVINO's PERFORMANCE_HINT
INFERENCE_PRECISIONS = ("f32", "bf16")  # OpenVINO's INFERENCE_PRECISION_HINT, always set explicitly


HARDWARE_COMPATIBILITY = ("none", "ampere+", "same-compute-capability")
PROFILE_STRATEGIES = ("range", "optimal", "range+optimal")  # TF-TRT's; see compiler/profiles.py
# The onnxruntime backend's artifact: native = every optimization onnxruntime has for this CPU (its NCHWc
# layout kernels), tied to this CPU's instruction set and this onnxruntime version, like a TensorRT plan to
# its GPU; portable = the fusions valid on any CPU, for any onnxruntime that reads the ORT format.
ORT_BUILDS = ("native", "portable")


@dataclass(frozen=True)
class BuildConfig:
    """How the engine is built: ``backend``; ``ort_build`` for the onnxruntime backend; OpenVINO's (``cpu_mode``,
    ``cpu_threads``, ``inference_precision``); the rest TensorRT only (see README, Backends)."""

    backend: str = "auto"
    ort_build: str = "native"  # onnxruntime artifact: native (this CPU, this onnxruntime) | portable
    workspace_mib: int | None = None  # TensorRT memory pool limit
    profiles: tuple = ()  # explicit ShapeProfiles (--min/--opt/--max-shapes), in the engine's interface
    profile_strategy: str | None = None  # derive profiles from --profile-data samples: range|optimal|range+optimal
    profile_data: str | None = None  # samples for the strategy (compiler/common/samples.py forms); None: --data
    timing_cache: Path | None = None  # loaded when it exists, saved (atomically) after a successful build
    builder_opt_level: int | None = None  # 0..5, TensorRT's default (3) when None
    plugins: tuple[Path, ...] = ()  # plugin libraries loaded before parsing (and again by `run`/`bench`)
    version_compatible: bool = False  # runs on later TensorRT versions of the same major
    exclude_lean_runtime: bool = False  # version-compatible plan without the lean runtime (smaller)
    hardware_compatibility: str = "none"  # none | ampere+ | same-compute-capability
    cpu_mode: str = "latency"  # OpenVINO: latency (one request at a time) | throughput (parallel streams)
    cpu_threads: int = 0  # OpenVINO's INFERENCE_NUM_THREADS; 0 = OpenVINO's default (the cores available)
    inference_precision: str = "f32"  # OpenVINO's precision hint; compile sets bf16 for --precision bf16 only

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise ConfigError(f"unknown backend '{self.backend}'", f"use one of {', '.join(BACKENDS)}")
        if self.ort_build not in ORT_BUILDS:
            raise ConfigError(f"unknown onnxruntime build '{self.ort_build}'", f"use one of {', '.join(ORT_BUILDS)}")
        if self.workspace_mib is not None and self.workspace_mib < 1:
            raise ConfigError(f"--workspace must be at least 1 MiB, not {self.workspace_mib}", "give a size in MiB")
        if self.builder_opt_level is not None and not 0 <= self.builder_opt_level <= 5:
            raise ConfigError(f"--builder-opt-level must be 0..5, not {self.builder_opt_level}",
                              "use 0 (fastest build) to 5 (most tuning); TensorRT's default is 3")
        if self.hardware_compatibility not in HARDWARE_COMPATIBILITY:
            raise ConfigError(f"unknown hardware compatibility '{self.hardware_compatibility}'",
                              f"use one of {', '.join(HARDWARE_COMPATIBILITY)}")
        if self.exclude_lean_runtime and not self.version_compatible:
            raise ConfigError("--exclude-lean-runtime needs --version-compatible", "add --version-compatible")
        if self.profile_strategy is not None and self.profile_strategy not in PROFILE_STRATEGIES:
            raise ConfigError(f"unknown profile strategy '{self.profile_strategy}'",
                              f"use one of {', '.join(PROFILE_STRATEGIES)}")
        if self.profile_strategy and self.profiles:
            raise ConfigError("--profile-strategy and --min/--max-shapes both define the optimization profiles",
                              "use one: explicit shapes, or a strategy over --profile-data samples")
        if self.profile_data and not self.profile_strategy:
            raise ConfigError("--profile-data needs --profile-strategy", "add --profile-strategy range (or "
                              "optimal, range+optimal)")
        if self.cpu_mode not in CPU_MODES:
            raise ConfigError(f"unknown CPU mode '{self.cpu_mode}'", f"use one of {', '.join(CPU_MODES)}")
        if self.cpu_threads < 0:
            raise ConfigError(f"--cpu-threads must be 0 or more, not {self.cpu_threads}",
                              "give a thread count, or 0 for OpenVINO's default")
        if self.inference_precision not in INFERENCE_PRECISIONS:
            raise ConfigError(f"unknown inference precision '{self.inference_precision}'",
                              f"use one of {', '.join(INFERENCE_PRECISIONS)}")
        for lib in self.plugins:
            if not Path(lib).is_file():
                raise ConfigError(f"plugin library '{lib}' does not exist", "give the path to the plugin's .so file")

    def tensorrt_only(self) -> list[str]:
        """The TensorRT-only options set here (to say they were ignored when onnxruntime builds)."""
        used = {"--workspace": self.workspace_mib, "--min/--max-shapes": self.profiles,
                "--profile-strategy": self.profile_strategy, "--timing-cache": self.timing_cache,
                "--builder-opt-level": self.builder_opt_level is not None, "--plugins": self.plugins,
                "--version-compatible": self.version_compatible,
                "--hardware-compatibility": self.hardware_compatibility != "none"}
        return [flag for flag, value in used.items() if value]

    def openvino_only(self) -> list[str]:
        """The OpenVINO-only options set here (to say they were ignored when another backend builds)."""
        used = {"--cpu-mode": self.cpu_mode != "latency", "--cpu-threads": self.cpu_threads}
        return [flag for flag, value in used.items() if value]

    def ignored_by(self, backend: str) -> list[str]:
        """The options set here that ``backend`` does not use."""
        return ((self.tensorrt_only() if backend != "tensorrt" else [])
                + (self.openvino_only() if backend != "openvino" else []))


# Default tolerances per seam. TF and onnxruntime run different kernels, so the
# first seam gets the loosest bound; passes should be near bit-exact; the
# engine seam at fp32 sits between (backends fuse and reorder arithmetic).
DEFAULT_TOLERANCES = {
    "tf→onnx": (1e-4, 1e-3),
    "onnx→optimized": (1e-5, 1e-5),
    "optimized→engine": (1e-4, 1e-3),
    "validate": (1e-4, 1e-3),  # the `validate` subcommand, between any two models
}

# Tolerances where precision is lowered: the float32 graph vs the fp16/int8 graph, and that graph vs the engine
# (TensorRT's fp16/int8 kernels round differently from onnxruntime's). The atol is scaled by the output's
# peak magnitude where that exceeds 1 (see validate.effective_atol): float16 and int8 errors are relative to
# the values' scale, and an absolute bound fit for probabilities would fail every logit. fp16: unit roundoff is
# 4.9e-4 per operation, so 1% leaves room for a few dozen layers. bf16: 8 bits of mantissa, unit roundoff
# 2^-9 = 2.0e-3 (4x float16's), so 4% for the same few dozen layers. int8: 127 steps per tensor range, each
# quantized layer adds up to half a step (0.4% of its range), so 5%.
PRECISION_TOLERANCES = {
    "fp16": (1e-2, 1e-2),
    "bf16": (4e-2, 4e-2),
    "int8": (5e-2, 5e-2),
}
# On those seams an integer or boolean output (argmax, a class id, a selection count) comes from float
# comparisons that lowered precision may tip where two values were close: it must agree on this fraction of its
# elements (exactly equal everywhere else).
PRECISION_MIN_AGREEMENT = 0.95
PRECISION_SEAM_SAMPLES = 16  # random samples for a precision seam (top-1 agreement needs more than one)


@dataclass(frozen=True)
class ValidateConfig:
    enabled: bool = True
    atol: float | None = None  # None: the seam's default
    rtol: float | None = None
    seed: int = 0
    iterations: int = 1
    batch: int = 1  # used for a dynamic leading dimension when no --input-shapes
    data: str | None = None  # --data: real input samples (compiler/common/samples.py) instead of seeded random ones
    val_ranges: dict = field(default_factory=dict)  # --val-range: input -> (low, high) of random data ("" = all)
    timeout_s: float = DEFAULT_TIMEOUT_S  # each evaluation (a seam's side, folding, calibration) may run this long

    def __post_init__(self):
        check_timeout(self.timeout_s)

    def __post_init__(self):
        check_tolerances(self.atol, self.rtol)

    def tolerances(self, seam: str, precision: str = "fp32") -> tuple[float, float]:
        """(atol, rtol) for ``seam``; a seam that lowers precision, or an engine built from a lowered graph,
        gets the precision's (see PRECISION_TOLERANCES), the others their own."""
        if lowers(seam, precision):
            atol, rtol = PRECISION_TOLERANCES[precision]
        else:
            atol, rtol = DEFAULT_TOLERANCES.get(seam, DEFAULT_TOLERANCES["validate"])
        return (atol if self.atol is None else self.atol, rtol if self.rtol is None else self.rtol)


def precision_seam(precision: str) -> str:
    return f"fp32→{precision}"


def lowers(seam: str, precision: str) -> bool:
    """True for the seams that see lowered precision: the one lowering it, and the engine built from it."""
    return precision != "fp32" and seam in (precision_seam(precision), "optimized→engine")


@dataclass(frozen=True)
class CompileConfig:
    export: ExportConfig = field(default_factory=ExportConfig)
    optimize: OptimizeConfig = field(default_factory=OptimizeConfig)
    precision: PrecisionConfig = field(default_factory=PrecisionConfig)
    build: BuildConfig = field(default_factory=BuildConfig)
    validate: ValidateConfig = field(default_factory=ValidateConfig)
    keep_intermediates: Path | None = None
    report_path: Path | None = None  # None: OUT.report.json


DUMP_NAMES = ("[0-9][0-9][0-9]_*.onnx",)  # what --dump-passes writes (passes/infra.py)


def calib_cache_path(pcfg: PrecisionConfig, out: Path) -> Path | None:
    """Where int8 calibration is cached: the setting, else OUT.calib.json beside the output; None otherwise."""
    return (pcfg.calib_cache or out.with_name(out.name + ".calib.json")) if pcfg.mode == "int8" else None
