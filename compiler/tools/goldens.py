"""Regression goldens: record what a model outputs once, then check every later build against it.

``record`` runs anything the compiler reads or writes (a SavedModel through
TensorFlow, an ONNX file through onnxruntime, a built engine through its
runtime) on input samples from the one sample loader (``compiler/common/samples.py``)
and writes a golden directory::

    DIR/manifest.json   what was recorded, from what, with which tolerances and library versions
    DIR/0000.npz ...    one sample each: ``in:NAME`` and ``out:NAME`` arrays (the fixtures' golden form)

The manifest lists each sample file with its sha256, so a truncated or edited
golden is refused rather than silently compared. ``check`` feeds the recorded
inputs to a model, compares each output with the recording and returns a
result whose ``passed`` gates CI. Inputs recorded in the SavedModel's layout
are adapted to an engine that transposed them (``runtime.prepare_feed``), and
its outputs mapped back, so goldens recorded from the SavedModel check every
later engine.

Outputs that are sets rather than tensors compare by matching
(``--compare NAME:MODE``):

- ``elementwise`` (default): |a-b| <= atol or |a-b|/|ref| <= rtol at every
  element (Polygraphy's rule, as the compile seams use); integers and booleans exactly.
- ``indices``: each row (last axis) as a set: the same indices in any order.
- ``boxes``: rows of 4 coordinates; each recorded box is paired with the nearest
  unpaired box of the output (L∞ distance, greedily, closest pairs first), then
  the pairs are compared elementwise. The order of the boxes does not matter.
"""
from __future__ import annotations

import datetime
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import numpy as np
import onnx

from .. import __version__
from ..artifacts import TensorSpec, content_sha256, partial_dir, refuse_replacing_inputs
from ..config import DEFAULT_TOLERANCES, PRECISION_TOLERANCES, PRECISIONS, ExportConfig, check_tolerances, is_tolerance
from ..common.dtypes import LOW_FLOATS, narrow_floats
from ..common.samples import load_samples, spec_paths
from ..errors import ConfigError, GoldenError, OutputError, RunError
from ..frontend.tfrun import TfSavedModelRunner
from ..report import versions
from ..runtime import ONNX_MODEL, load, run
from ..sandbox import member
from ..stages.inspect import inspect_model, require_safe
from ..validate import error_histogram, error_stats, mismatches, nonfinite_matches, resolve_shapes

GOLDEN_FORMAT = "tf2trt-golden/1"
MANIFEST = "manifest.json"
COMPARE_MODES = ("elementwise", "indices", "boxes")


# ------------------------------------------------------------------------------------------- subjects


@dataclass
class Subject:
    """Anything record/check can run, with ``infer(feed) -> {output: array}`` in the model's own interface."""

    path: Path
    kind: str  # saved_model | onnx | onnxruntime-ort | tensorrt-plan
    backend: str  # tensorflow | onnxruntime | tensorrt
    inputs: tuple[TensorSpec, ...]
    sha256: str
    _infer: object = None
    notes: list[str] = field(default_factory=list)
    _close: object = None

    def infer(self, feed: dict) -> dict:
        return self._infer(feed)

    def close(self) -> None:
        if self._close is not None:
            self._close()
            self._close = None


def open_subject(path: Path, export_cfg: ExportConfig = ExportConfig(), plugins=()) -> Subject:
    """A runnable Subject for a SavedModel directory, an ONNX file or a built artifact."""
    path = Path(path)
    if path.is_dir():
        info = inspect_model(path, export_cfg)
        require_safe(info, export_cfg)
        runner = TfSavedModelRunner(path, info.signature, export_cfg.tag, info.inputs)
        runner.activate()

        def infer_tf(feed):
            return dict(runner.infer(feed, check_inputs=False))

        return Subject(path, "saved_model", "tensorflow", info.inputs, content_sha256(path), infer_tf,
                       _close=runner.deactivate)
    if not path.exists():
        raise RunError(f"'{path}' does not exist", "pass a SavedModel directory, an .onnx file or a built engine")
    runner = load(path, plugins=plugins)
    subject = Subject(path, runner.format, runner.backend, runner.inputs, content_sha256(path))  # load detected it

    def infer_artifact(feed):
        result = run(runner, feed)
        for note in result.notes:
            if note not in subject.notes:
                subject.notes.append(note)
        return dict(result.outputs)

    subject._infer = infer_artifact
    if subject.kind == ONNX_MODEL:
        subject.notes.append("ONNX model run on onnxruntime's CPU provider as written (no graph optimizations)")
    return subject


def detect_precision(path: Path) -> str | None:
    """fp32/fp16/bf16/int8 of an ONNX model from its tensors (Q/DQ nodes: int8; float16 tensors: fp16; bfloat16
    tensors: bf16); None for
    what cannot be read as ONNX (a SavedModel is fp32)."""
    path = Path(path)
    if path.is_dir():
        return "fp32"
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # an engine file: not ONNX
        return None
    if not model.graph.node:
        return None
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node):
        return "int8"
    narrow = narrow_floats(model)  # float16 wins where a graph holds both
    if narrow:
        return LOW_FLOATS[min(narrow, key=lambda t: t != onnx.TensorProto.FLOAT16)]
    return "fp32"


def parse_compare(specs) -> dict[str, str]:
    """Repeated ``--compare NAME:MODE`` into ``{name: mode}``."""
    modes = {}
    for spec in specs or ():
        name, _, mode = str(spec).rpartition(":")
        if not name or mode not in COMPARE_MODES:
            raise ConfigError(f"--compare '{spec}' is not NAME:MODE with MODE one of {', '.join(COMPARE_MODES)}",
                              "write e.g. --compare detections:boxes --compare top_classes:indices")
        modes[name] = mode
    return modes


# --------------------------------------------------------------------------------------------- record


def record(model: Path, golden: Path, *, inputs: str | None = None, shapes: dict | None = None, batch: int = 1,
           seed: int = 0, samples: int = 8, ranges: dict | None = None, precision: str | None = None,
           tolerances: tuple[float | None, float | None] = (None, None), compare: dict | None = None,
           export_cfg: ExportConfig = ExportConfig(), plugins=(), force: bool = False) -> dict:
    """Run ``model`` on the samples and write the golden directory ``golden`` (atomically); returns the manifest."""
    golden = Path(golden)
    refuse_replacing_inputs([model, *spec_paths(inputs)], [("golden directory", golden)])
    if golden.exists() and (not golden.is_dir() or any(golden.iterdir())) and not force:
        raise GoldenError(f"'{golden}' already exists and is not empty",
                          "choose a new directory, or pass --force to replace the recording")
    if precision is not None and precision not in PRECISIONS:
        raise ConfigError(f"unknown precision '{precision}'", f"use one of {', '.join(PRECISIONS)}")
    check_tolerances(*tolerances)
    parent = golden.parent if str(golden.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"cannot write golden '{golden}': directory '{parent}' does not exist",
                          f"create it first (mkdir -p {parent})")
    precision = precision or detect_precision(Path(model)) or "fp32"
    default_atol, default_rtol = PRECISION_TOLERANCES.get(precision, DEFAULT_TOLERANCES["validate"])
    tol = {"atol": default_atol if tolerances[0] is None else tolerances[0],
           "rtol": default_rtol if tolerances[1] is None else tolerances[1]}
    subject = open_subject(model, export_cfg, plugins)
    try:
        specs = subject.inputs  # an engine's own interface (it may take inputs transposed): record in it
        needs_shapes = inputs is None or inputs == "random"
        resolved = resolve_shapes(specs, dict(shapes or {}), batch) if needs_shapes else dict(shapes or {})
        data = load_samples(inputs, specs, resolved, what="golden", error=ConfigError, seed=seed,
                            random_count=samples, ranges=ranges)
        with partial_dir(golden) as tmp:
            manifest = _write(subject, data, tmp, dict(compare or {}),
                              {"precision": precision, "seed": seed if data.random else None, "tolerances": tol})
            if golden.exists():
                shutil.rmtree(golden) if golden.is_dir() else golden.unlink()
            os.replace(tmp, golden)
    finally:
        subject.close()
    return manifest


def _write(subject: Subject, data, tmp: Path, compare: dict, settings: dict) -> dict:
    """Run every sample and write it, then the manifest, into ``tmp``; returns the manifest."""
    files, outputs = [], None
    for i, feed in enumerate(data):
        result = subject.infer(feed)
        if outputs is None:
            outputs = [{"name": k, "dtype": np.asarray(v).dtype.name, "shape": list(np.asarray(v).shape)}
                       for k, v in result.items()]
            unknown = sorted(set(compare) - set(result))
            if unknown:
                raise ConfigError(f"--compare names '{unknown[0]}', which is not an output",
                                  f"outputs are: {', '.join(result)}")
        name = f"{i:04d}.npz"
        np.savez(tmp / name, **{f"in:{k}": v for k, v in feed.items()},
                 **{f"out:{k}": np.asarray(v) for k, v in result.items()})
        files.append({"file": name, "sha256": content_sha256(tmp / name)})
    manifest = {
        "format": GOLDEN_FORMAT,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "tool": f"tf2trt-compiler {__version__}",
        "model": {"path": str(subject.path), "kind": subject.kind, "sha256": subject.sha256},
        "backend": subject.backend, "precision": settings["precision"], "seed": settings["seed"],
        "inputs_source": data.source, "inputs_digest": data.digest,
        "inputs": [{"name": k, "dtype": v.dtype.name, "shape": list(v.shape)} for k, v in data[0].items()],
        "outputs": outputs, "samples": files, "tolerances": settings["tolerances"], "compare": compare,
        "notes": subject.notes, "versions": versions(),
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


# ---------------------------------------------------------------------------------------------- check


def read_golden(golden: Path) -> tuple[dict, list[tuple[dict, dict]]]:
    """(manifest, [(inputs, outputs) per sample]) of a golden directory, each file verified against the manifest."""
    golden = Path(golden)
    fix = "record it again: python -m compiler record MODEL --golden DIR"
    if not golden.is_dir():
        raise GoldenError(f"golden directory '{golden}' does not exist", fix)
    path = golden / MANIFEST
    if not path.is_file():
        raise GoldenError(f"'{golden}' has no {MANIFEST}; it is not a golden directory", fix)
    try:
        manifest = json.loads(path.read_text())
    except ValueError as e:
        raise GoldenError(f"'{path}' is not valid JSON ({e})", fix) from None
    if not isinstance(manifest, dict) or manifest.get("format") != GOLDEN_FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise GoldenError(f"'{path}' has format {found!r}, not {GOLDEN_FORMAT!r}", fix)
    if not manifest.get("samples"):
        raise GoldenError(f"'{path}' lists no samples", fix)
    samples = []
    for entry in manifest["samples"]:
        if not isinstance(entry, dict):
            raise GoldenError(f"manifest sample entry '{entry}' is not an object with 'file' and 'sha256'", fix)
        file = member(golden, entry.get("file"), "manifest sample", GoldenError, "list samples by their file names in the "
                      "golden directory; record it again: python -m compiler record MODEL --golden DIR")
        if not file.is_file():
            raise GoldenError(f"sample '{entry.get('file')}' listed in the manifest is missing from '{golden}'", fix)
        if content_sha256(file) != entry.get("sha256"):
            raise GoldenError(f"sample '{file.name}' does not match its sha256 in the manifest (changed or "
                              "truncated since it was recorded)", fix)
        samples.append(_read_sample(file, fix))
    return manifest, samples


def _read_sample(file: Path, fix: str) -> tuple[dict, dict]:
    """(inputs, outputs) of one golden sample: an .npz of numeric ``in:NAME``/``out:NAME`` arrays, else GoldenError
    (no pickled objects are ever loaded)."""
    try:
        with np.load(file, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except Exception as e:  # ValueError (object arrays), BadZipFile, OSError, EOFError...
        raise GoldenError(f"sample '{file.name}' cannot be read as numeric arrays ({type(e).__name__}: "
                          f"{str(e).strip().splitlines()[0][:200] if str(e).strip() else ''})", fix) from None
    bad = [f"'{k}' ({v.dtype})" for k, v in arrays.items() if v.dtype.kind not in "biufc"]
    if bad:
        raise GoldenError(f"sample '{file.name}' holds non-numeric array(s) {', '.join(bad)}", fix)
    ins = {k[3:]: v for k, v in arrays.items() if k.startswith("in:")}
    outs = {k[4:]: v for k, v in arrays.items() if k.startswith("out:")}
    if not ins or not outs:
        raise GoldenError(f"sample '{file.name}' lacks in:NAME and out:NAME arrays", fix)
    return ins, outs


def _elementwise(ref: np.ndarray, got: np.ndarray, atol: float, rtol: float) -> tuple[bool, dict]:
    """(verdict, error statistics) by the seams' rule (``validate.mismatches``: NaN agrees only with NaN)."""
    with np.errstate(invalid="ignore"):
        return not bool(mismatches(ref, got, atol, rtol).any()), error_stats(ref, got)


def _match_boxes(ref: np.ndarray, got: np.ndarray) -> np.ndarray:
    """``got``'s boxes reordered so box i is the one paired with ``ref``'s box i (nearest first, L∞)."""
    ref2, got2 = ref.reshape(-1, ref.shape[-1]), got.reshape(-1, got.shape[-1])
    dist = np.max(np.abs(ref2[:, None, :].astype(np.float64) - got2[None, :, :].astype(np.float64)), axis=-1)
    order = np.argsort(dist, axis=None, kind="stable")
    paired = np.full(len(ref2), -1)
    used = np.zeros(len(got2), bool)
    for flat in order:
        i, j = divmod(int(flat), len(got2))
        if paired[i] < 0 and not used[j]:
            paired[i], used[j] = j, True
    return got2[paired].reshape(ref.shape)


def compare_output(name: str, refs: list[np.ndarray], gots: list[np.ndarray], mode: str, atol: float,
                   rtol: float) -> dict:
    """One output over every sample: statistics, the |a-b| histogram, and the verdict of ``mode``."""
    detail = None
    for ref, got in zip(refs, gots):
        if ref.shape != got.shape:
            return {"name": name, "compare": mode, "passed": False, "shape": list(ref.shape), "atol": atol,
                    "rtol": rtol, "histogram": None, "detail": f"shape {list(got.shape)}, recorded {list(ref.shape)}",
                    **dict.fromkeys(("max_abs", "mean_abs", "p99_abs", "max_rel", "mean_rel", "p99_rel"))}
    passed = True
    if mode == "indices":
        rows = same = 0
        for ref, got in zip(refs, gots):
            r2 = ref.reshape(-1, ref.shape[-1] if ref.ndim else 1)
            g2 = got.reshape(-1, got.shape[-1] if got.ndim else 1)
            same += sum(np.array_equal(np.sort(a), np.sort(b)) for a, b in zip(r2, g2))
            rows += len(r2)
        passed = same == rows
        detail = f"{same} of {rows} row(s) hold the same indices (in any order)"
        gots = [np.sort(g.reshape(-1, g.shape[-1]), axis=-1).reshape(g.shape) if g.ndim else g for g in gots]
        refs = [np.sort(r.reshape(-1, r.shape[-1]), axis=-1).reshape(r.shape) if r.ndim else r for r in refs]
    elif mode == "boxes":
        if refs[0].ndim < 2 or refs[0].shape[-1] != 4:
            raise ConfigError(f"--compare {name}:boxes needs an output of boxes [..., 4], but it is "
                              f"{list(refs[0].shape)}", f"compare '{name}' elementwise or as indices")
        gots = [_match_boxes(r, g) for r, g in zip(refs, gots)]
        detail = "boxes paired nearest-first (L∞), then compared elementwise; order does not matter"
    flat_ref = np.concatenate([np.asarray(r).ravel() for r in refs])
    flat_got = np.concatenate([np.asarray(g).ravel() for g in gots])
    ok, stats = _elementwise(flat_ref, flat_got, atol, rtol)
    exact = flat_ref.dtype.kind in "iub"
    passed = passed and ok
    return {"name": name, "compare": mode, "passed": passed, "shape": list(refs[0].shape),
            "atol": 0.0 if exact else atol, "rtol": 0.0 if exact else rtol,
            "histogram": error_histogram(flat_ref, flat_got), "detail": detail,
            "nonfinite_matched": 0 if exact else nonfinite_matches(flat_ref, flat_got), **stats}


def check(model: Path, golden: Path, *, atol: float | None = None, rtol: float | None = None,
          compare: dict | None = None, export_cfg: ExportConfig = ExportConfig(), plugins=()) -> dict:
    """Re-run ``model`` on the recorded inputs and compare every output; ``result["passed"]`` is the gate."""
    start = time.perf_counter()
    check_tolerances(atol, rtol)
    manifest, samples = read_golden(golden)
    subject = open_subject(model, export_cfg, plugins)
    recorded = [i["name"] for i in manifest.get("inputs", [])]
    takes = sorted(t.name for t in subject.inputs)
    if sorted(recorded) != takes:
        raise GoldenError(f"'{golden}' was recorded for inputs {', '.join(sorted(recorded))}, but '{model}' takes "
                          f"{', '.join(takes)}", "check the model it was recorded for, or record a new golden")
    modes = {**manifest.get("compare", {}), **(compare or {})}
    atol, rtol = _recorded_tolerances(manifest, golden, atol, rtol)
    try:
        results = [subject.infer(ins) for ins, _ in samples]
    finally:
        subject.close()
    names = list(samples[0][1])
    missing = [n for n in names if n not in results[0]]
    if missing:
        raise GoldenError(f"'{model}' has no output(s) {', '.join(missing)}, which '{golden}' recorded "
                          f"(it outputs {', '.join(results[0])})", "check the model it was recorded for")
    unknown = sorted(set(compare or {}) - set(names))
    if unknown:
        raise ConfigError(f"--compare names '{unknown[0]}', which is not a recorded output",
                          f"outputs are: {', '.join(names)}")
    outputs = [compare_output(n, [np.asarray(o[n]) for _, o in samples], [np.asarray(r[n]) for r in results],
                              modes.get(n, "elementwise"), atol, rtol) for n in names]
    passed = all(o["passed"] for o in outputs)
    notes = list(subject.notes) + [
        f"output '{o['name']}' is NaN or infinite at {o['nonfinite_matched']} element(s) in both the golden and the "
        "model; they count as equal there, so only its finite values were checked"
        for o in outputs if o.get("nonfinite_matched")]
    return {"status": "passed" if passed else "failed", "passed": passed, "artifact": str(model),
            "format": subject.kind, "backend": subject.backend, "golden": str(golden),
            "model_changed": subject.sha256 != manifest.get("model", {}).get("sha256"),
            "manifest": {k: manifest.get(k) for k in ("created", "tool", "model", "backend", "precision", "seed",
                                                       "inputs_source", "tolerances", "versions")},
            "samples": len(samples), "tolerances": {"atol": atol, "rtol": rtol}, "outputs": outputs,
            "first_divergence": None, "notes": notes, "seconds": time.perf_counter() - start}


def _recorded_tolerances(manifest: dict, golden: Path, atol, rtol) -> tuple[float, float]:
    """(atol, rtol): the overrides given, else the manifest's, which must be finite numbers >= 0."""
    tol = manifest.get("tolerances")
    tol = tol if isinstance(tol, dict) else {}
    chosen = []
    for key, given, default in (("atol", atol, DEFAULT_TOLERANCES["validate"][0]),
                                ("rtol", rtol, DEFAULT_TOLERANCES["validate"][1])):
        value = tol.get(key, default) if given is None else given
        if not is_tolerance(value):
            raise GoldenError(f"'{Path(golden) / MANIFEST}' records tolerance {key} {value!r}, which is not a finite "
                              "number >= 0", f"record it again, or override it with --{key}")
        chosen.append(value)
    return chosen[0], chosen[1]


def table(result: dict) -> str:
    """The check result as the text table the CLI prints."""
    rows = [["output", "compare", "max abs", "mean abs", "p99 abs", "max rel", "atol/rtol", "result"]]
    for o in result["outputs"]:
        def num(key):
            return "—" if o[key] is None else f"{o[key]:.2e}"

        rows.append([o["name"], o["compare"], num("max_abs"), num("mean_abs"), num("p99_abs"), num("max_rel"),
                     f"{o['atol']:.3g}/{o['rtol']:.3g}", "ok" if o["passed"] else "REGRESSION"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for o in result["outputs"]:
        if o.get("detail") and (not o["passed"] or o["compare"] != "elementwise"):
            lines.append(f"  {o['name']}: {o['detail']}")
    return "\n".join(lines)


def junit_xml(result: dict) -> str:
    """A JUnit XML report (one testcase per output) for CI systems that read it."""
    failures = sum(not o["passed"] for o in result["outputs"])
    suite = f"tf2trt-check {Path(result['artifact']).name}"
    cases = []
    for o in result["outputs"]:
        head = (f'  <testcase classname={quoteattr(suite)} name={quoteattr(o["name"])} '
                f'time="{result.get("seconds", 0) / max(len(result["outputs"]), 1):.3f}"')
        if o["passed"]:
            cases.append(head + " />")
            continue
        message = (f"{o['name']} regressed against {result['golden']}: max abs {o['max_abs']}, max rel "
                   f"{o['max_rel']} (atol {o['atol']}, rtol {o['rtol']})" + (f"; {o['detail']}" if o["detail"] else ""))
        cases.append(f"{head}>\n    <failure message={quoteattr(message)} type=\"regression\">"
                     f"{escape(json.dumps({k: v for k, v in o.items() if k != 'histogram'}))}</failure>\n  </testcase>")
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<testsuite name={quoteattr(suite)} '
            f'tests="{len(result["outputs"])}" failures="{failures}" errors="0" '
            f'time="{result.get("seconds", 0):.3f}">\n' + "\n".join(cases) + "\n</testsuite>\n")
