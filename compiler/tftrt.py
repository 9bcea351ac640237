"""TF-TRT's converter API, running this compiler: a TF-TRT user's script works with one changed import::

    from compiler import tftrt as trt   # was: from tensorflow.python.compiler.tensorrt import trt_convert as trt

``TrtGraphConverterV2`` (alias ``Converter``) takes TF-TRT's keywords and checks them as TF-TRT did
(``ValueError`` for invalid combinations). Its methods keep TF-TRT's meaning:

- ``convert(calibration_input_fn=None)``: export (tf2onnx), the passes and the precision stage; INT8 with
  ``use_calibration`` calibrates from the generator (in dynamic-shape mode when ``build()`` runs, as TF-TRT
  did). Returns a callable that runs the converted graph (after ``build()``, the engine).
- ``build(input_fn)``: optimization profiles from the shapes the generator yields, by the chosen strategy;
  one engine holds them all; it is validated against the SavedModel in TensorFlow on those inputs.
- ``save(dir, save_gpu_specific_engines=True)``: a directory with the engine(s), the converted graph, the
  calibration cache, a report, a manifest and a copy of the SavedModel (TF-TRT's native fallback). Load it
  with ``compiler.tftrt.load`` (or ``compiler.runtime.load``; on a TensorRT-only box ``compiler.deploy.load``).
- ``summary()``: engines, node counts, IO dtypes and shapes, profiles, precisions.

A whole-graph engine has no segments, so options about segments are accepted and explained once with a
``TftrtWarning`` saying what happens instead (README, "Coming from TF-TRT", lists every option). Nothing here
imports TensorFlow until a method needs it.
"""
from __future__ import annotations

import collections
import json
import math
import numbers
import shutil
import tempfile
import warnings
import weakref
from pathlib import Path

import numpy as np

from . import deploy
from .backends import tensorrt as trt_backend
from .api import build_engine, export_model, inspect_model, lower_precision, optimize_model, validate_artifacts
from .config import BuildConfig, ExportConfig, OptimizeConfig, PrecisionConfig, ValidateConfig
from .deploy import TftrtWarning
from .errors import RunError, ValidationError
from .profiles import ShapeProfile, derive_profiles
from .runtime import load as load_artifact

__all__ = ["Converter", "ConversionParams", "DEFAULT_TRT_CONVERSION_PARAMS", "DEFAULT_TRT_MAX_WORKSPACE_SIZE_BYTES",
           "TftrtWarning", "TrtConversionParams", "TrtGraphConverterV2", "TrtPrecisionMode", "load",
           "supported_profile_strategies"]


def lean_backend() -> str:
    """The backend a Converter builds with: TensorRT where it runs, else onnxruntime. Not ``auto``'s OpenVINO:
    a saved directory must open in compiler.deploy's lean runtime, which runs TensorRT plans and ORT artifacts."""
    return "tensorrt" if trt_backend.availability()[0] else "onnxruntime"


class TrtPrecisionMode:
    FP32 = "FP32"
    FP16 = "FP16"
    INT8 = "INT8"

    @staticmethod
    def supported_precision_modes() -> list[str]:
        modes = [TrtPrecisionMode.FP32, TrtPrecisionMode.FP16, TrtPrecisionMode.INT8]
        return modes + [m.lower() for m in modes]


DEFAULT_TRT_MAX_WORKSPACE_SIZE_BYTES = 1 << 30  # TF-TRT's documented default; left as is, TensorRT's own applies

PROFILE_STRATEGY_RANGE = "Range"
PROFILE_STRATEGY_OPTIMAL = "Optimal"
PROFILE_STRATEGY_RANGE_OPTIMAL = "Range+Optimal"
PROFILE_STRATEGY_IMPLICIT_BATCH_MODE_COMPATIBLE = "ImplicitBatchModeCompatible"
IMPLICIT = "implicit"  # our name for TF-TRT's implicit batch mode (no dynamic shape) and its compatible strategy


def supported_profile_strategies() -> list[str]:
    return [PROFILE_STRATEGY_RANGE, PROFILE_STRATEGY_OPTIMAL, PROFILE_STRATEGY_RANGE_OPTIMAL,
            PROFILE_STRATEGY_IMPLICIT_BATCH_MODE_COMPATIBLE]


_FIELDS = ("max_workspace_size_bytes", "precision_mode", "minimum_segment_size", "maximum_cached_engines",
           "use_calibration", "allow_build_at_runtime",
           # TF 2.0-2.3 fields, accepted so ``DEFAULT_TRT_CONVERSION_PARAMS._replace(is_dynamic_op=True)`` runs
           "rewriter_config_template", "is_dynamic_op", "max_batch_size")


class TrtConversionParams(collections.namedtuple("TrtConversionParams", _FIELDS)):
    """TF-TRT's conversion parameters (a namedtuple: ``_replace`` works). The last three are TF 2.0-2.3's;
    None means not given."""

    __slots__ = ()

    def __new__(cls, max_workspace_size_bytes=DEFAULT_TRT_MAX_WORKSPACE_SIZE_BYTES,
                precision_mode=TrtPrecisionMode.FP32, minimum_segment_size=3, maximum_cached_engines=1,
                use_calibration=True, allow_build_at_runtime=True, *, rewriter_config_template=None,
                is_dynamic_op=None, max_batch_size=None):
        return super().__new__(cls, max_workspace_size_bytes, precision_mode, minimum_segment_size,
                               maximum_cached_engines, use_calibration, allow_build_at_runtime,
                               rewriter_config_template, is_dynamic_op, max_batch_size)


ConversionParams = TrtConversionParams
DEFAULT_TRT_CONVERSION_PARAMS = TrtConversionParams()

# What a whole-graph engine does instead of the segment options TF-TRT had (said once per option).
_INSTEAD = {
    "minimum_segment_size": "the whole graph becomes one engine, so there are no segments to size; a node "
                            "TensorRT cannot run stops the build with its name (see `python -m compiler check-trt`) "
                            "instead of staying in TensorFlow",
    "rewriter_config_template": "Grappler does not run; the graph is exported with tf2onnx and rewritten by this "
                                "compiler's passes",
    "max_batch_size": "TF 2 ignored it too; the batch sizes an engine takes come from build()'s input_fn "
                      "(its optimization profiles)",
}


def _explain(option: str, value) -> None:
    warnings.warn(f"TF-TRT option {option}={value!r} has no effect here: {_INSTEAD[option]}", TftrtWarning,
                  stacklevel=4)


def _check_params(p: TrtConversionParams) -> None:
    """TF-TRT's checks (ValueError), plus the ones its C++ side made later."""
    modes = TrtPrecisionMode.supported_precision_modes()
    if p.precision_mode not in modes:
        raise ValueError(f"precision mode '{p.precision_mode}' is not supported. It should be one of {modes}")
    if p.minimum_segment_size <= 0 and p.minimum_segment_size != -1:
        raise ValueError("minimum segment size should be positive or -1 (to disable main graph conversion).")
    if p.is_dynamic_op is False:
        raise ValueError("Option is_dynamic_op=False is not supported in TF 2.0, please set it to True instead.")
    if not isinstance(p.maximum_cached_engines, numbers.Integral) or p.maximum_cached_engines < 1:
        raise ValueError(f"maximum_cached_engines must be a positive integer, not {p.maximum_cached_engines!r}")
    if not isinstance(p.max_workspace_size_bytes, numbers.Integral) or p.max_workspace_size_bytes < 1:
        raise ValueError(f"max_workspace_size_bytes must be a positive integer, not {p.max_workspace_size_bytes!r}")
    if p.minimum_segment_size != 3:
        _explain("minimum_segment_size", p.minimum_segment_size)
    for legacy in ("rewriter_config_template", "max_batch_size"):
        if getattr(p, legacy) is not None:
            _explain(legacy, getattr(p, legacy))


def _strategy(use_dynamic_shape: bool, strategy: str | None) -> str:
    """Our profile strategy for TF-TRT's settings (its names are case-insensitive)."""
    if not use_dynamic_shape:
        if strategy is not None:
            warnings.warn(f"dynamic_shape_profile_strategy={strategy!r} is ignored without use_dynamic_shape=True "
                          "(as in TF-TRT); engines follow implicit batch rules: one profile per input shape, "
                          "batch 1 up to its size", TftrtWarning, stacklevel=3)
        return IMPLICIT
    if strategy is None:
        return "range"
    names = {s.lower(): s for s in supported_profile_strategies()}
    if not isinstance(strategy, str) or strategy.lower() not in names:
        raise ValueError(f"profile_strategy '{strategy}' is not supported. It should be one of "
                         f"{supported_profile_strategies()}")
    return IMPLICIT if strategy.lower() == PROFILE_STRATEGY_IMPLICIT_BATCH_MODE_COMPATIBLE.lower() else \
        strategy.lower()


def implicit_batch_profiles(inputs, sample_shapes) -> tuple[ShapeProfile, ...]:
    """TF-TRT's implicit batch mode as profiles: one per distinct set of sample shapes, taking any batch from 1
    up to the sample's (where the model's batch dimension is dynamic), every other dimension as seen."""
    by_name = {t.name: t for t in inputs}
    out = []
    for p in derive_profiles(inputs, sample_shapes, "optimal"):
        lo = {n: ((1,) + s[1:] if s and 0 in by_name[n].dynamic_dims else s) for n, s in p.min.items()}
        profile = ShapeProfile(lo, dict(p.opt), dict(p.max))
        if profile not in out:
            out.append(profile)
    return tuple(out)


class TrtGraphConverterV2:
    """TF-TRT's offline converter for TF 2 SavedModels (see the module docstring and TF-TRT's documentation)."""

    def __init__(self, input_saved_model_dir=None, input_saved_model_tags=None, input_saved_model_signature_key=None,
                 *, use_dynamic_shape=None, dynamic_shape_profile_strategy=None,
                 max_workspace_size_bytes=DEFAULT_TRT_MAX_WORKSPACE_SIZE_BYTES,
                 precision_mode=TrtPrecisionMode.FP32, minimum_segment_size=3, maximum_cached_engines=1,
                 use_calibration=True, allow_build_at_runtime=True, conversion_params=None):
        given = TrtConversionParams(max_workspace_size_bytes, precision_mode, minimum_segment_size,
                                    maximum_cached_engines, use_calibration, allow_build_at_runtime)
        if conversion_params is None:
            conversion_params = given
        else:
            overridden = [f for f in _FIELDS[:6] if getattr(given, f) != getattr(DEFAULT_TRT_CONVERSION_PARAMS, f)]
            if overridden:
                warnings.warn(f"conversion_params is given, so the keyword(s) {', '.join(overridden)} are ignored "
                              "(as in TF-TRT); set them in conversion_params", TftrtWarning, stacklevel=2)
        _check_params(conversion_params)
        if not input_saved_model_dir:
            raise ValueError("input_saved_model_dir is required: the SavedModel directory to convert")
        tags = list(input_saved_model_tags or ["serve"])
        if len(tags) > 1:
            warnings.warn(f"input_saved_model_tags={tags}: the MetaGraph tagged '{tags[0]}' is converted",
                          TftrtWarning, stacklevel=2)
        self._params = conversion_params
        self._source = Path(input_saved_model_dir).absolute()  # later calls may run from another directory
        self._tags = tags
        self._key = input_saved_model_signature_key or "serving_default"
        self._export_cfg = ExportConfig(signature=self._key, tag=tags[0])
        self._dynamic = bool(use_dynamic_shape)
        self._strategy = _strategy(self._dynamic, dynamic_shape_profile_strategy)
        self._mode = conversion_params.precision_mode.lower()
        self._need_calibration = self._mode == "int8" and bool(conversion_params.use_calibration)
        self._tmp = tempfile.TemporaryDirectory(prefix="tf2trt-tftrt-")
        self._work = Path(self._tmp.name)
        weakref.finalize(self, self._tmp.cleanup)
        self._converted = self._calibrated = self._built = False
        self._info = self._exported = self._graph = self._engine = self._calib_dir = None
        self._shape_feeds: list[dict] = []  # static-mode INT8: the calibration shapes get an engine too
        self._profiles: tuple = ()
        self._report: dict = {"converter": {k: v for k, v in conversion_params._asdict().items()
                                            if k != "rewriter_config_template"},
                              "use_dynamic_shape": self._dynamic, "profile_strategy": self._strategy}

    # ------------------------------------------------------------------ inputs

    @property
    def _names(self) -> tuple[str, ...]:
        """The signature's inputs in TensorFlow's positional order (by name, as TF-TRT's function took them)."""
        return tuple(t.name for t in self._info.inputs)

    def _feed(self, item, what: str, index: int) -> dict[str, np.ndarray]:
        """One generator item (list, tuple, dict, array or TF tensor) as {input name: array}."""
        names = self._names
        if isinstance(item, dict):
            values = dict(item)
            unknown = [k for k in values if k not in names]
            if unknown or len(values) != len(names):
                raise ValueError(f"{what} item {index} names {sorted(values)}; the signature's inputs are {list(names)}")
        elif isinstance(item, (list, tuple)):
            if len(item) != len(names):
                raise ValueError(f"{what} item {index} holds {len(item)} value(s); the signature takes {len(names)} "
                                 f"({', '.join(names)}, in this order)")
            values = dict(zip(names, item))
        elif len(names) == 1:
            values = {names[0]: item}
        else:
            raise ValueError(f"{what} item {index} is one value; the signature takes {len(names)} inputs "
                             f"({', '.join(names)}): yield a list, tuple or dict")
        try:
            return {k: np.asarray(v) for k, v in values.items()}
        except Exception as e:  # whatever the value's own __array__ raises
            raise RuntimeError(f"Failed to convert input to tensor: {what} item {index} ({e})") from None

    def _collect(self, fn, what: str) -> tuple[Path, list[dict]]:
        """Every item ``fn()`` yields, saved as one .npz per sample (compiler/data.py's directory form)."""
        directory = self._work / what
        directory.mkdir(exist_ok=True)
        feeds = []
        for i, item in enumerate(fn()):
            feed = self._feed(item, what, i)
            np.savez(directory / f"{i:06d}.npz", **feed)
            feeds.append(feed)
        if not feeds:
            raise ValueError(f"the {what} input function yielded no inputs")
        return directory, feeds

    # ------------------------------------------------------------------ convert

    def convert(self, calibration_input_fn=None):
        """Export, passes and precision (see the module docstring). Returns the converted function."""
        if self._converted:
            raise RuntimeError("convert() was already called on this converter; create a new one to convert again")
        if self._need_calibration and not calibration_input_fn:
            raise ValueError("Should specify calibration_input_fn because INT8 calibration is needed")
        if not self._need_calibration and calibration_input_fn:
            raise ValueError("Should not specify calibration_input_fn because INT8 calibration is not needed")
        self._info = inspect_model(self._source, self._export_cfg)
        calib_feeds = None
        if calibration_input_fn:
            self._calib_dir, calib_feeds = self._collect(calibration_input_fn, "calibration")
        self._exported = export_model(self._source, self._work / "exported.onnx", self._export_cfg, self._info)
        if self._mode == "int8" and not self._need_calibration:
            self._graph = self._lower("fp32")
            self._require_quantized()
        elif self._need_calibration and self._dynamic:  # TF-TRT calibrates in build() in dynamic-shape mode
            self._graph = self._lower("fp32")
        else:
            self._graph = self._lower(self._mode)
            self._calibrated = self._need_calibration
            if calib_feeds:
                self._shape_feeds = list(calib_feeds)
        self._converted = True
        return ConvertedFunction(self)

    def _lower(self, mode: str):
        """The exported graph through the passes and, for fp16/int8, the precision stage."""
        if mode == "fp32":
            art, records = optimize_model(self._exported.path, self._work / "model.fp32.onnx", OptimizeConfig())
            self._report["passes"] = [r.to_json() for r in records]
            self._report["precision"] = {"mode": "fp32"}
            return art
        # The precision stage needs shapes for its samples; freezing them would lose the dynamic dimensions.
        shapes = self._sample_shapes()
        ocfg = OptimizeConfig(input_shapes=shapes, skip_passes=("freeze_input_shapes",))
        pcfg = PrecisionConfig(mode=mode)
        if mode == "int8":
            pcfg = PrecisionConfig(mode=mode, calib_data=str(self._calib_dir), calib_cache=self._calibration_cache)
        art, records, result = lower_precision(self._exported.path, self._work / f"model.{mode}.onnx", ocfg, pcfg)
        self._report["passes"] = [r.to_json() for r in records]
        self._report["precision"] = result.to_json()
        return art

    @property
    def _calibration_cache(self) -> Path:
        return self._work / "calibration.json"

    def _sample_shapes(self) -> dict:
        """The calibration samples' shapes, or each input's with 1 for dynamic dimensions."""
        if self._calib_dir is not None:
            first = np.load(sorted(self._calib_dir.glob("*.npz"))[0])
            return {k: tuple(first[k].shape) for k in first.files}
        return {t.name: tuple(d if isinstance(d, int) and d >= 0 else 1 for d in t.shape) for t in self._info.inputs}

    def _require_quantized(self) -> None:
        """INT8 without calibration needs the ranges of a quantization-aware-trained graph (TF-TRT: an error)."""
        import onnx

        ops = {n.op_type for n in onnx.load(str(self._graph.path), load_external_data=False).graph.node}
        if "QuantizeLinear" not in ops:
            raise ValueError("precision_mode INT8 with use_calibration=False needs quantization ranges in the "
                             "graph (fake-quant nodes from quantization-aware training), and this graph has none; "
                             "set use_calibration=True and pass calibration_input_fn to convert()")

    # ------------------------------------------------------------------ build

    def build(self, input_fn):
        """Profiles from the shapes ``input_fn`` yields (by the strategy), one engine holding them, validated
        against the SavedModel on those inputs. INT8 deferred in convert() is calibrated first."""
        if self._built:
            raise NotImplementedError("build() is already called. It is not supported to call build() more than once.")
        if not input_fn:
            raise RuntimeError("input_fn is None. Method build() needs input_fn to be specified in order to build "
                               "TensorRT engines")
        if not self._converted:
            raise RuntimeError("Need to call convert() before build()")
        if self._need_calibration and not self._calibrated and self._calib_dir is None:
            raise RuntimeError("Need to provide the calibration_input_fn arg while calling convert().")
        directory, feeds = self._collect(input_fn, "build")
        if self._need_calibration and not self._calibrated:
            self._graph = self._lower(self._mode)
            self._calibrated = True
        self._build_engine(self._shape_feeds + feeds)
        self._validate(directory, feeds[0])
        self._built = True

    def _build_engine(self, feeds: list[dict]) -> None:
        shapes = [{k: tuple(v.shape) for k, v in f.items()} for f in feeds]
        inputs = self._graph.inputs
        if self._strategy == IMPLICIT:
            profiles = implicit_batch_profiles(inputs, shapes)
            how = "implicit batch (TF-TRT without dynamic shape)"
        else:
            profiles = derive_profiles(inputs, shapes, self._strategy)
            how = next(s for s in supported_profile_strategies() if s.lower() == self._strategy)
        how += f" over {len(shapes)} input(s)"
        workspace = self._params.max_workspace_size_bytes
        cfg = BuildConfig(backend=lean_backend(),
                          workspace_mib=None if workspace == DEFAULT_TRT_MAX_WORKSPACE_SIZE_BYTES
                          else max(1, math.ceil(workspace / 2 ** 20)))
        self._engine = build_engine(self._graph.path, self._work / "engine_0", cfg, profiles=profiles or None,
                                    profile_source=how)
        self._profiles = profiles
        self._report["engine"] = {"backend": self._engine.backend, "format": self._engine.format,
                                  "profiles": [p.to_json() for p in profiles], "profile_source": how,
                                  **{k: v for k, v in self._engine.summary.items() if k != "profiles"}}

    def _validate(self, directory: Path, first: dict) -> None:
        """The engine against the SavedModel in TensorFlow, on the build inputs, at the precision's tolerance:
        a failure stops an FP32 build (ValidationError) and is a warning at FP16/INT8."""
        vcfg = ValidateConfig(data=str(directory))
        result = validate_artifacts(self._source, self._engine.path, "tensorflow→engine", vcfg,
                                    shapes={k: tuple(v.shape) for k, v in first.items()},
                                    tolerances=vcfg.tolerances("optimized→engine", self._mode),
                                    export_cfg=self._export_cfg, labels=("tensorflow", "engine"))
        self._report["validation"] = result.to_json()
        if result.passed:
            return
        if self._mode != "fp32":  # an argmax over close logits may tip on a few build inputs: say it, not stop
            warnings.warn(f"{result.failure_line()} (at {self._mode.upper()}; see summary())", TftrtWarning,
                          stacklevel=3)
            return
        raise ValidationError(result.failure_line(), "the engine does not reproduce the SavedModel on build()'s "
                              "inputs; see the report (converter.summary()) for each output's error")

    # ------------------------------------------------------------------ save

    def save(self, output_saved_model_dir, save_gpu_specific_engines=True, options=None):
        """Write the converted directory (see the module docstring). ``options`` (tf.saved_model.SaveOptions)
        has nothing to configure here and is ignored."""
        if not self._converted:
            raise RuntimeError("Need to call convert() before save()")
        if self._need_calibration and not self._calibrated:
            raise RuntimeError("A model that requires INT8 calibration has to be built before saving it. Call "
                               "build() to build and calibrate the TensorRT engines.")
        out = Path(output_saved_model_dir).resolve()
        self._check_output(out)
        if self._engine is None and self._shape_feeds and save_gpu_specific_engines:
            self._build_engine(self._shape_feeds)  # TF-TRT's INT8 engine at the calibration shape
            self._validate(self._calib_dir, self._shape_feeds[0])
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            self._write(staging, save_gpu_specific_engines)
            if out.exists():
                shutil.rmtree(out)
            staging.rename(out)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def _check_output(self, out: Path) -> None:
        source = self._source.resolve()
        if out == source or source in out.parents or out in source.parents:
            raise ValueError(f"output_saved_model_dir '{out}' overlaps the input SavedModel '{source}'; "
                             "save to another directory")
        if not out.parent.is_dir():
            raise ValueError(f"the directory '{out.parent}' that would hold '{out.name}' does not exist")
        if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not deploy.is_converted(out))):
            raise ValueError(f"output_saved_model_dir '{out}' exists and is not an empty directory or a converted "
                             "model; save to a new directory")

    def _write(self, staging: Path, with_engines: bool) -> None:
        shutil.copyfile(self._graph.path, staging / "graph.onnx")
        calibration = None
        if self._mode == "int8" and self._calibration_cache.is_file():
            calibration = "calibration.json"
            shutil.copyfile(self._calibration_cache, staging / calibration)
        engines = []
        if self._engine is not None:
            entry = {"file": None, "backend": self._engine.backend, "format": self._engine.format,
                     "profiles": [p.to_json() for p in self._profiles]}
            if with_engines:
                suffix = ".plan" if self._engine.format == deploy.TENSORRT_PLAN else ".ort"
                (staging / "engines").mkdir()
                entry["file"] = f"engines/engine_0{suffix}"
                shutil.copyfile(self._engine.path, staging / entry["file"])
            engines.append(entry)
        shutil.copytree(self._source, staging / "native", symlinks=False)
        (staging / "report.json").write_text(json.dumps(self._report, indent=1, default=str))
        (staging / deploy.MANIFEST).write_text(json.dumps(self._manifest(engines, calibration), indent=1))

    def _manifest(self, engines: list[dict], calibration: str | None) -> dict:
        p = self._params
        workspace = p.max_workspace_size_bytes
        return {"format": deploy.FORMAT, "version": deploy.VERSION, "signature_key": self._key, "tags": self._tags,
                "inputs": [t.to_json() for t in self._info.inputs],
                "outputs": [t.to_json() for t in self._info.outputs],
                "positional": list(self._names), "precision": self._mode,
                "use_dynamic_shape": self._dynamic, "profile_strategy": self._strategy,
                "allow_build_at_runtime": bool(p.allow_build_at_runtime),
                "maximum_cached_engines": int(p.maximum_cached_engines),
                "workspace_mib": None if workspace == DEFAULT_TRT_MAX_WORKSPACE_SIZE_BYTES
                else max(1, math.ceil(workspace / 2 ** 20)),
                "graph": "graph.onnx", "calibration_cache": calibration, "native_saved_model": "native",
                "report": "report.json", "engines": engines}

    # ------------------------------------------------------------------ summary

    def summary(self, line_length=160, detailed=True, print_fn=None):
        """TF-TRT's table: one row per engine (the converted graph before build()), then its ops when
        ``detailed``, its profiles and precisions."""
        name = type(self).__name__
        if not self._converted:
            raise RuntimeError(f"Impossible to call `{name}.summary()` before calling {name}.convert()`.")
        if line_length < 160:
            raise ValueError(f"Invalid `line_length` value has been received: {line_length}. Minimum: 160.")
        for line in summary_lines(self, line_length, detailed):
            (print_fn or print)(line)


_COLUMNS = (("Engine", .20), ("Backend", .09), ("# Nodes", .05), ("# Inputs", .09), ("# Outputs", .09),
            ("Input DTypes", .12), ("Output Dtypes", .12), ("Input Shapes", .12), ("Output Shapes", .12))


def _row(fields, line_length: int) -> str:
    widths = [int(line_length * share) for _, share in _COLUMNS]
    return "".join(str(f)[:w - 1].ljust(w) for f, w in zip(fields, widths)).rstrip()


def summary_lines(conv: TrtGraphConverterV2, line_length: int, detailed: bool) -> list[str]:
    import onnx

    graph = onnx.load(str(conv._graph.path), load_external_data=False).graph
    ops = collections.Counter(n.op_type for n in graph.node)
    engine = conv._engine
    label = "engine_0" if engine is not None else "graph (no engine built yet)"
    backend = engine.backend if engine is not None else "-"
    ins, outs = conv._graph.inputs, conv._graph.outputs
    shape = lambda t: t.shape_text()  # noqa: E731
    lines = [_row([h for h, _ in _COLUMNS], line_length), "=" * line_length,
             _row([label, backend, sum(ops.values()), len(ins), len(outs), ",".join(t.dtype for t in ins),
                   ",".join(t.dtype for t in outs), ",".join(shape(t) for t in ins),
                   ",".join(shape(t) for t in outs)], line_length)]
    if detailed:
        lines += [""] + [f"\t- {op}: {n}x" for op, n in sorted(ops.items())]
    precision = conv._report.get("precision", {})
    counts = "; ".join(f"{sum(table.values())} node(s) in {prec}" + (f" ({', '.join(sorted(table))})"
                                                                       if prec == "fp32" else "")
                       for prec, table in precision.get("ops", {}).items())
    lines += ["", f"Precision: {conv._mode.upper()}" + (f" ({counts})" if counts else "")]
    for k, p in enumerate(conv._profiles):
        lines.append(f"Profile {k}: {p.text()}")
    validation = conv._report.get("validation")
    if validation:
        lines.append(f"Validated against TensorFlow on build() inputs: {'passed' if validation['passed'] else 'FAILED'}")
    lines += ["", "=" * line_length, f"[*] Total number of engines: {int(engine is not None)}",
              f"[*] % of OPs Converted: 100.00% [{sum(ops.values())}/{sum(ops.values())}] (one whole-graph engine)", ""]
    return lines


class ConvertedFunction:
    """What convert() returns: called like the SavedModel's signature, it runs the converted graph (after
    build(), the engine) and returns a dict keyed by the SavedModel's output names."""

    def __init__(self, converter: TrtGraphConverterV2):
        self._conv, self._path, self._runner = converter, None, None

    def __call__(self, *args, **kwargs) -> dict:
        conv = self._conv
        path = conv._engine.path if conv._engine is not None else conv._graph.path
        if path != self._path:
            self._runner, self._path = load_artifact(path), path
        feed = deploy.bind_arguments(conv._names, args, kwargs, "the converted function")
        outputs = self._runner.infer(deploy.conform(feed, self._runner.inputs))
        names = [t.name for t in conv._info.outputs]
        values = [outputs[n] for n in names] if set(names) <= set(outputs) else list(outputs.values())
        return {n: deploy.as_output(v) for n, v in zip(names, values)}


Converter = TrtGraphConverterV2


def load(output_saved_model_dir, tags=None, options=None) -> deploy.ConvertedModel:
    """Load a directory written by ``save()``: ``model.signatures["serving_default"](**inputs)``. ``tags`` and
    ``options`` are accepted for ``tf.saved_model.load``'s signature and have no effect."""
    path = Path(output_saved_model_dir)
    if not deploy.is_converted(path):
        raise RunError(f"'{path}' is not a directory written by Converter.save() (no {deploy.MANIFEST})",
                       "pass the output_saved_model_dir given to save()")
    return load_artifact(path)
