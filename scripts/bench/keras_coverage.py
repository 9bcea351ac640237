#!/usr/bin/env python3
"""Coverage survey: compile Keras models end to end and tabulate what converts and validates.

    python scripts/bench/keras_coverage.py [--only NAME,...] [--json FILE] [--keep DIR]
                                           [--timeout S] [--list]

What it measures. For every model in the survey it

  1. builds the model in a child process (this script's internal ``--export-one`` mode) with
     ``keras.utils.set_random_seed(0)`` and exports it with ``model.export(dir, verbose=False)``
     (a SavedModel whose ``serving_default`` signature has a dynamic batch dimension);
  2. compiles it with ``python -m compiler DIR OUT.engine --quiet --keep-intermediates DIR2``
     as a separate process from the repository root (TensorFlow → tf2onnx → passes →
     onnxruntime CPU artifact, with the three validation seams);
  3. reads ``OUT.report.json`` and re-checks the exported ``model.onnx`` with
     ``onnx.checker.check_model(full_check=True)`` on its own (in a child process).

One table row per model:

  model       the model's name (what ``--only`` takes)
  input       the input shape without the batch dimension
  params      Keras parameter count
  export      ``report["stages"]["export"]["status"]``: tf2onnx converted the SavedModel and the
              compiler's export verification (standard ONNX ops only, checker, onnxruntime load)
              passed; ``build`` when the Keras model itself could not be built or exported
  valid ONNX  ``yes``: the kept model.onnx passes ``onnx.checker`` (full check) in this script too;
              ``no``: the compiler's export verification rejected it (TensorFlow ops left in the
              graph, a checker error or an onnxruntime load error; see the error), or this
              script's own check failed; ``-``: no ONNX model came out to judge
  tf→onnx     the largest ``max_abs`` over the outputs of the ``tf→onnx`` seam of
              ``report["validation"]`` (TensorFlow on the SavedModel vs onnxruntime on the
              exported ONNX, seeded random inputs in [-1, 1], batch 1); ``!`` marks a failed seam
  validated   ``yes`` when the report's status is ``ok``: every stage and all three seams passed
  seconds     wall time of the compile process (spawn to reap; includes importing TensorFlow)
  RSS MiB     peak resident memory of the compile process (``ru_maxrss`` from ``os.wait4``). On Linux a
              child's ru_maxrss starts at the RSS of the process that spawned it, so this script
              keeps itself small (Keras discovery and the ONNX check run in children too) and
              prints that floor, measured with a bare ``python -c pass`` child
  note        ``const``: a seam warned that a reference output is constant (validation could not
              detect errors there); ``const-keras``: the model's output was constant already in Keras
  error       ``report["error"]["message"]`` (the compiler's one-line error), or the last line of
              the child's stderr when there is no report (crash, timeout, Keras build failure)

The full error lines are printed again under the table, and the last line is the summary
``N/M compiled and validated``.

The models.

  (a) ``keras.applications``: the families are discovered from the installed Keras (every model
      constructor in ``keras.applications`` and its submodules, grouped by the module that defines
      it, so aliases such as ``keras.applications.resnet50`` collapse into their family), and the
      smallest constructor of each family is picked by its name (B0 < B1, Tiny < Small < Base <
      Large, 50 < 101, Mobile < Large, ...); ``--list`` shows the choice. Each is built with
      ``weights=None`` (nothing is downloaded) at 96x96x3, or at the minimum size the family's
      constructor demands when that is larger, and with ``classifier_activation=None``: logits,
      not a 1000-way softmax, whose values of about 1e-3 would pass the default atol of 1e-4
      whatever the error.
  (b) tiny models of common Keras layers (MultiHeadAttention, LayerNormalization,
      GroupNormalization, GELU exact and tanh-approximate, EinsumDense, Resizing bilinear and
      nearest, Normalization adapted on random data, Conv1D, Conv3D, LSTM, GRU, SimpleRNN,
      Bidirectional LSTM), each with a fixed input shape and a dynamic batch dimension.

Fresh BatchNormalization layers with random convolutions can drive a model into a constant
output, against which validation proves nothing; as in ``make_mobilenetv2.py``, every
BatchNormalization layer gets seeded statistics (gamma U(0.5, 1.5), beta U(-0.2, 0.2), moving mean
U(-0.1, 0.1), moving variance U(0.5, 2)).

Robustness. The Keras build and the compile run in child processes, one model at a time, so a
model that fails, crashes or hangs (``--timeout``, per process) costs only its own row. The script
exits 0 whenever the survey ran, failures included (it is a measurement, not a gate), and 2 for
bad arguments. Linux and macOS only (``os.wait4``).

Reproduce (run nothing else meanwhile; seconds and RSS are only comparable on the same machine
and the same package versions, which the script prints):

    .venv/bin/python scripts/bench/keras_coverage.py --list
    .venv/bin/python scripts/bench/keras_coverage.py --json coverage.json
    .venv/bin/python scripts/bench/keras_coverage.py --only MobileNetV2,LSTM --keep /tmp/kcov

``--keep DIR`` keeps each model's SavedModel, ONNX files, report and the children's logs under
``DIR/NAME/`` for diagnosis; by default they live in a temporary directory that is removed.
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

# Set before TensorFlow is imported (here or in the children), or its C++ logging is already on stderr.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO_ROOT = Path(__file__).resolve().parents[2]
SELF = str(Path(__file__).resolve())
SEED = 0
APP_SIZE = 96  # input height/width for keras.applications, raised to a family's minimum when needed
TF_ONNX = "tf→onnx"
VERSIONED_PACKAGES = ("keras", "tensorflow", "tf2onnx", "onnx", "onnxruntime")
ERROR_COLUMN_WIDTH = 70

# Size words in keras.applications constructor names, smallest first. "B" is EfficientNet's
# B0..B7 (and EfficientNetV2's B0..B3, which are smaller than its S/M/L); "" is a bare number
# (ResNet50, DenseNet121).
_SIZE_RANK = {"": 0, "b": 0, "tiny": 0, "mobile": 1, "small": 1, "s": 1, "base": 2, "medium": 3, "m": 3,
              "large": 4, "l": 4, "xlarge": 5, "xl": 5}


# --------------------------------------------------------------------------- model catalogue

@dataclass
class Spec:
    """One model of the survey. ``build`` runs only in the ``--export-one`` child."""

    name: str
    group: str  # "applications" or "layers"
    build: Callable[[], object] = field(repr=False)
    input_shapes: str | None = None  # --input-shapes for the compiler, when more than the batch is dynamic
    detail: str = ""  # shown by --list


def _application_families():
    """{family: [constructor, ...]} for every keras.applications model constructor installed.

    A family is the module that defines the constructor (``keras.src.applications.mobilenet_v3``
    → ``mobilenet_v3``). Constructors are collected from ``keras.applications`` itself and from its
    public submodules: some are only in one of the two (``keras.applications.mobilenet_v3`` exports
    no constructor), and aliases (``keras.applications.resnet50.ResNet50``) are counted once.
    """
    import keras

    namespaces = [keras.applications] + [getattr(keras.applications, n) for n in sorted(dir(keras.applications))
                                         if not n.startswith("_")
                                         and inspect.ismodule(getattr(keras.applications, n))]
    families: dict[str, list] = {}
    seen: set[int] = set()
    for ns in namespaces:
        for attr in sorted(dir(ns)):
            obj = getattr(ns, attr)
            if not attr[:1].isupper() or not callable(obj) or id(obj) in seen or "weights" not in _params(obj):
                continue
            seen.add(id(obj))
            family = (getattr(obj, "__module__", None) or ns.__name__).rsplit(".", 1)[-1]
            families.setdefault(family, []).append(obj)
    return dict(sorted(families.items()))


def _params(fn) -> set[str]:
    try:
        return set(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return set()


def _tokens(name: str) -> list[str]:
    # "EfficientNetV2B0" → Efficient Net V 2 B 0; "ConvNeXtXLarge" → Conv Ne Xt X Large
    return re.findall(r"[A-Z][a-z]*|[a-z]+|\d+", name)


def _size_key(name: str, family_names: list[str]) -> tuple:
    """Order the constructors of one family by size, from their names alone (see _SIZE_RANK).

    The tokens all names share at the start and at the end are dropped (``ResNet`` and ``V2`` in
    ResNet50V2/ResNet101V2), and what is left is a size word and/or a number: ``B0``, ``Tiny``,
    ``Mobile``, ``XLarge``, ``121``.
    """
    toks = [_tokens(n) for n in family_names]
    mine = _tokens(name)
    shortest = min(len(t) for t in toks)
    head = 0
    while head < shortest and len({t[head] for t in toks}) == 1:
        head += 1
    tail = 0
    while tail < shortest - head and len({t[len(t) - 1 - tail] for t in toks}) == 1:
        tail += 1
    core = mine[head:len(mine) - tail]
    word = "".join(t for t in core if not t.isdigit()).lower()
    number = int("".join(t for t in core if t.isdigit()) or 0)
    return (_SIZE_RANK.get(word, 98), number, name)


def _build_application(ctor):
    """Build ``ctor`` with weights=None at APP_SIZE, or at the minimum size it asks for when larger."""
    size = APP_SIZE
    kwargs = {"weights": None}
    if "classifier_activation" in _params(ctor):
        kwargs["classifier_activation"] = None  # logits: see the module docstring
    for _ in range(2):
        try:
            return ctor(input_shape=(size, size, 3), **kwargs)
        except ValueError as e:
            m = re.search(r"at least (\d+)x(\d+)", str(e))
            if not m or int(m.group(1)) <= size:
                raise
            size = int(m.group(1))
    raise RuntimeError(f"{ctor.__name__}: no valid input size found")


def application_specs() -> list[Spec]:
    specs = []
    for family, ctors in _application_families().items():
        names = [c.__name__ for c in ctors]
        ctor = min(ctors, key=lambda c: _size_key(c.__name__, names))
        others = sorted(set(names) - {ctor.__name__}, key=lambda n: _size_key(n, names))
        specs.append(Spec(ctor.__name__, "applications", lambda ctor=ctor: _build_application(ctor),
                          detail=f"family {family}" + (f"; larger: {', '.join(others)}" if others else "")))
    return specs


def _functional(inputs, outputs, name):
    import keras

    return keras.Model(inputs, outputs, name=name)


def _mha():
    import keras
    x = keras.Input((16, 32))
    return _functional(x, keras.layers.MultiHeadAttention(num_heads=4, key_dim=8)(x, x), "mha")


def _layernorm():
    import keras
    x = keras.Input((16, 32))
    return _functional(x, keras.layers.LayerNormalization()(keras.layers.Dense(32)(x)), "layernorm")


def _groupnorm():
    import keras
    x = keras.Input((16, 16, 8))
    y = keras.layers.Conv2D(16, 3, padding="same")(x)
    return _functional(x, keras.layers.GroupNormalization(groups=4)(y), "groupnorm")


def _gelu(approximate: bool):
    import keras
    x = keras.Input((64,))
    y = keras.activations.gelu(keras.layers.Dense(64)(x), approximate=approximate)
    return _functional(x, y, f"gelu_{'approx' if approximate else 'exact'}")


def _einsum_dense():
    import keras
    x = keras.Input((16, 32))
    y = keras.layers.EinsumDense("abc,cde->abde", output_shape=(16, 4, 8), bias_axes="de")(x)
    return _functional(x, y, "einsum_dense")


def _resizing(interpolation: str):
    import keras
    x = keras.Input((20, 20, 3))
    # 20 → 32: a non-integer scale, where coordinate-transform and rounding conventions show.
    return _functional(x, keras.layers.Resizing(32, 32, interpolation=interpolation)(x), f"resize_{interpolation}")


def _normalization():
    import keras
    import numpy as np
    norm = keras.layers.Normalization(axis=-1)
    data = np.random.default_rng(SEED).normal(3.0, 2.0, (256, 10)).astype("float32")
    norm.adapt(data)
    x = keras.Input((10,))
    return _functional(x, keras.layers.Dense(4)(norm(x)), "normalization")


def _conv1d():
    import keras
    x = keras.Input((32, 8))
    y = keras.layers.Conv1D(16, 3, padding="same", activation="relu")(x)
    y = keras.layers.Conv1D(16, 3, padding="causal", dilation_rate=2)(y)
    y = keras.layers.Conv1D(8, 5, strides=2, padding="valid")(y)
    return _functional(x, y, "conv1d")


def _conv3d():
    import keras
    x = keras.Input((8, 16, 16, 3))
    y = keras.layers.Conv3D(8, 3, padding="same", activation="relu")(x)
    y = keras.layers.Conv3D(4, 3, strides=2, padding="valid")(y)
    return _functional(x, y, "conv3d")


def _rnn(kind: str):
    import keras
    x = keras.Input((12, 8))
    if kind == "LSTM":
        y = keras.layers.LSTM(16)(x)
    elif kind == "GRU":
        y = keras.layers.GRU(16, return_sequences=True)(x)
    elif kind == "SimpleRNN":
        y = keras.layers.SimpleRNN(16)(x)
    else:
        y = keras.layers.Bidirectional(keras.layers.LSTM(16, return_sequences=True))(x)
    return _functional(x, y, kind.lower())


def layer_specs() -> list[Spec]:
    return [
        Spec("MultiHeadAttention", "layers", _mha, detail="(16, 32), self-attention, 4 heads, key_dim 8"),
        Spec("LayerNormalization", "layers", _layernorm, detail="(16, 32), Dense then LayerNormalization"),
        Spec("GroupNormalization", "layers", _groupnorm, detail="(16, 16, 8), Conv2D then GroupNormalization(4)"),
        Spec("gelu_exact", "layers", lambda: _gelu(False), detail="(64,), Dense then gelu(approximate=False)"),
        Spec("gelu_approx", "layers", lambda: _gelu(True), detail="(64,), Dense then gelu(approximate=True)"),
        Spec("EinsumDense", "layers", _einsum_dense, detail="(16, 32), 'abc,cde->abde', bias 'de'"),
        Spec("Resizing_bilinear", "layers", lambda: _resizing("bilinear"), detail="(20, 20, 3) → 32x32"),
        Spec("Resizing_nearest", "layers", lambda: _resizing("nearest"), detail="(20, 20, 3) → 32x32"),
        Spec("Normalization", "layers", _normalization, detail="(10,), adapted on N(3, 2) data, then Dense"),
        Spec("Conv1D", "layers", _conv1d, detail="(32, 8), same / causal dilated / strided valid"),
        Spec("Conv3D", "layers", _conv3d, detail="(8, 16, 16, 3), same then strided valid"),
        Spec("LSTM", "layers", lambda: _rnn("LSTM"), detail="(12, 8), LSTM(16), last output"),
        Spec("GRU", "layers", lambda: _rnn("GRU"), detail="(12, 8), GRU(16), sequences"),
        Spec("SimpleRNN", "layers", lambda: _rnn("SimpleRNN"), detail="(12, 8), SimpleRNN(16), last output"),
        Spec("Bidirectional_LSTM", "layers", lambda: _rnn("Bidirectional"),
             detail="(12, 8), Bidirectional(LSTM(16)), sequences"),
    ]


def all_specs() -> list[Spec]:
    return application_specs() + layer_specs()


def discover() -> int:
    """Child process (``--discover``): print the survey's models as JSON, without their builders."""
    print(json.dumps([{"name": s.name, "group": s.group, "input_shapes": s.input_shapes, "detail": s.detail}
                      for s in all_specs()]))
    return 0


def check_onnx(path: Path) -> int:
    """Child process (``--check-onnx``): onnx.checker with full_check; print ``ok`` or the complaint."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
        print("ok")
    except Exception as e:  # checker and shape-inference errors, or an unreadable file
        first = str(e).strip().splitlines()
        print(f"{type(e).__name__}: {first[0] if first else ''}")
    return 0


# --------------------------------------------------------------------------- child: build and export

def _walk_layers(layer):
    yield layer
    for sub in getattr(layer, "layers", None) or []:
        yield from _walk_layers(sub)


def seed_batchnorm(model, rng) -> int:
    """Give every BatchNormalization layer seeded, plausible statistics; return how many."""
    import keras

    n = 0
    for layer in _walk_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            weights = layer.get_weights()
            # gamma and beta are absent when scale/center are off; the moving statistics are always last.
            shapes = [w.shape for w in weights]
            new = []
            ranges = [(0.5, 1.5)] * layer.scale + [(-0.2, 0.2)] * layer.center + [(-0.1, 0.1), (0.5, 2.0)]
            for shape, (lo, hi) in zip(shapes, ranges):
                new.append(rng.uniform(lo, hi, shape).astype(weights[0].dtype))
            layer.set_weights(new)
            n += 1
    return n


def export_one(name: str, out_dir: Path, meta_path: Path) -> int:
    """Child process: build ``name``, seed it, probe it, export it. Prints one error line on failure."""
    try:
        import keras
        import numpy as np

        specs = {s.name: s for s in all_specs()}
        keras.utils.set_random_seed(SEED)
        model = specs[name].build()
        rng = np.random.default_rng(SEED)
        n_bn = seed_batchnorm(model, rng)
        shape = tuple(model.inputs[0].shape[1:])
        probe_in = rng.uniform(-1, 1, (2, *shape)).astype("float32")
        probe = keras.ops.convert_to_numpy(model(probe_in))
        model.export(str(out_dir), verbose=False)
        meta = {"input": list(shape), "params": int(model.count_params()), "batchnorm_layers": n_bn,
                "probe_ptp": float(np.ptp(probe))}
        meta_path.write_text(json.dumps(meta))
        return 0
    except Exception as e:
        return build_failed(e)


def read_report(path: Path, notes: list) -> dict | None:
    """The compile's JSON report at ``path``; None when it is missing or unreadable (said in ``notes``)."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        notes.append(f"unreadable report ({e})")
        return None


def build_failed(e: BaseException) -> int:
    """A child's failed model build: the traceback to its log, one line for the parent's error column; exit 1."""
    import traceback

    traceback.print_exc()
    first = str(e).strip().splitlines()
    print(f"error: build: {type(e).__name__}: {first[0] if first else ''}"[:500], file=sys.stderr)
    return 1


# --------------------------------------------------------------------------- parent: run and measure

@dataclass
class Result:
    name: str
    group: str
    input: list | None = None
    params: int | None = None
    build_ok: bool = False
    build_s: float | None = None
    export: str = "-"  # ok | failed | skipped | build | -
    valid_onnx: str = "-"  # yes | no | -
    tf_onnx_max_abs: float | None = None
    tf_onnx_passed: bool | None = None
    validated: bool = False
    exit_code: int | None = None
    seconds: float | None = None
    peak_rss_mib: float | None = None
    notes: list = field(default_factory=list)
    error: str | None = None
    error_stage: str | None = None
    seams: dict = field(default_factory=dict)  # seam → {max_abs, max_rel, passed, note}
    code: str | None = None  # git HEAD when the compile started, "+dirty" with uncommitted compiler/passes edits
    stage_seconds: dict = field(default_factory=dict)


def _maxrss_mib(ru_maxrss: int) -> float:
    return ru_maxrss / (1024 * 1024) if sys.platform == "darwin" else ru_maxrss / 1024


def run_measured(cmd: list[str], log_dir: Path, tag: str, timeout: float, env: dict) -> tuple[int, float, float, bool]:
    """Run ``cmd`` with output to ``log_dir/tag.{out,err}``; return (exit code, wall s, peak RSS MiB, timed out)."""
    with open(log_dir / f"{tag}.out", "wb") as out, open(log_dir / f"{tag}.err", "wb") as err:
        start = time.perf_counter()
        # Its own session, so a timeout kills the child's whole process group and nothing else.
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=REPO_ROOT, env=env,
                                start_new_session=True)
        timed_out = False
        try:
            deadline = start + timeout
            while True:
                # Reap the child ourselves to get its rusage; Popen.wait() would discard it.
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if time.perf_counter() > deadline:
                    timed_out = True
                    os.killpg(proc.pid, signal.SIGKILL)
                    _, status, usage = os.wait4(proc.pid, 0)
                    break
                time.sleep(0.05)
        except BaseException:  # e.g. Ctrl-C: do not leave the child running
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # so Popen never waits for a reused pid
    return proc.returncode, wall, _maxrss_mib(usage.ru_maxrss), timed_out


def _last_error_line(path: Path) -> str:
    lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln.startswith("error:"):
            return ln
    return lines[-1] if lines else "(no output)"


def _check_onnx(path: Path, timeout: float, env: dict) -> str | None:
    """None when ``path`` passes onnx.checker (full check), else the first line of its complaint.

    Runs in a child: loading a large model here would raise this process's RSS, and every child
    spawned afterwards inherits that as its ``ru_maxrss`` floor (see run_measured).
    """
    try:
        proc = subprocess.run([sys.executable, SELF, "--check-onnx", str(path)], capture_output=True, text=True,
                              timeout=timeout, env=env, cwd=REPO_ROOT)
    except subprocess.TimeoutExpired:
        return f"onnx.checker timed out after {timeout:.0f} s"
    lines = proc.stdout.strip().splitlines()
    if proc.returncode == 0 and lines and lines[-1] == "ok":
        return None
    return lines[-1] if lines else f"onnx.checker child exited {proc.returncode}: {proc.stderr.strip()[-300:]}"


_INVALID_EXPORT = ("no ONNX conversion", "invalid ONNX", "does not load in onnxruntime")


def survey_one(spec: dict, work: Path, timeout: float, env: dict) -> Result:
    """Build, export, compile and judge one model (``spec``: an entry of ``--discover``'s JSON)."""
    res = Result(spec["name"], spec["group"])
    work.mkdir(parents=True, exist_ok=True)
    sm_dir, meta_path, inter = work / "saved_model", work / "meta.json", work / "intermediates"
    engine, report_path = work / "model.engine", work / "model.engine.report.json"

    # 1. Keras build + model.export, in a child of its own.
    rc, wall, _, timed_out = run_measured(
        [sys.executable, SELF, "--export-one", spec["name"], str(sm_dir), str(meta_path)],
        work, "build", timeout, env)
    res.build_s = wall
    if rc != 0 or not meta_path.is_file():
        res.export, res.error_stage = "build", "build"
        res.error = (f"build: timed out after {timeout:.0f} s" if timed_out else _last_error_line(work / "build.err"))
        return res
    meta = json.loads(meta_path.read_text())
    res.build_ok, res.input, res.params = True, meta["input"], meta["params"]
    if meta["probe_ptp"] == 0:
        res.notes.append("const-keras")

    # 2. The compile, measured. The code it runs is recorded: compiler/ may change while a survey runs.
    res.code = code_label(git_state())
    cmd = [sys.executable, "-m", "compiler", str(sm_dir), str(engine), "--quiet", "--keep-intermediates", str(inter)]
    if spec["input_shapes"]:
        cmd += ["--input-shapes", spec["input_shapes"]]
    rc, wall, rss, timed_out = run_measured(cmd, work, "compile", timeout, env)
    res.exit_code, res.seconds, res.peak_rss_mib = rc, wall, rss

    # 3. The report.
    report = read_report(report_path, res.notes)
    if report is None:
        res.error_stage = "compile"
        res.error = (f"compile: timed out after {timeout:.0f} s" if timed_out else
                     f"no report (exit {rc}): {_last_error_line(work / 'compile.err')}")
        return res

    res.export = report["stages"]["export"]["status"]
    res.stage_seconds = {k: v.get("seconds") for k, v in report["stages"].items()}
    res.validated = report["status"] == "ok" and rc == 0
    if report.get("error"):
        res.error_stage = report["error"].get("stage")
        res.error = report["error"].get("message")
    elif rc != 0:
        res.error = f"exit {rc}: {_last_error_line(work / 'compile.err')}"
    for seam in report.get("validation") or []:
        outs = seam.get("outputs") or {}
        max_abs = max((o["max_abs"] for o in outs.values() if o.get("max_abs") is not None), default=None)
        max_rel = max((o["max_rel"] for o in outs.values() if o.get("max_rel") is not None), default=None)
        res.seams[seam["seam"]] = {"max_abs": max_abs, "max_rel": max_rel, "passed": seam["passed"],
                                   "note": seam.get("note")}
        if seam["seam"] == TF_ONNX:
            res.tf_onnx_max_abs, res.tf_onnx_passed = max_abs, seam["passed"]
        if seam.get("warnings"):
            res.notes.append("const")
    res.notes = sorted(set(res.notes))

    # 4. Valid ONNX: judged by this script too, not only by the compiler's export verification.
    onnx_path = inter / "model.onnx"
    if res.export == "ok" and onnx_path.is_file():
        complaint = _check_onnx(onnx_path, timeout, env)
        res.valid_onnx = "yes" if complaint is None else "no"
        if complaint:
            res.notes.append(f"onnx.checker: {complaint}")
    elif res.export == "failed" and res.error and any(s in res.error for s in _INVALID_EXPORT):
        res.valid_onnx = "no"
    return res


# --------------------------------------------------------------------------- output

def _fmt_err(x: float | None, passed: bool | None) -> str:
    if x is None:
        return "-"
    return f"{x:.2e}" + ("" if passed in (None, True) else "!")


def _fmt_shape(shape) -> str:
    return "x".join(str(d) for d in shape) if shape else "-"


def _fmt_params(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(n)


def print_table(results: list[Result]) -> None:
    header = ["model", "input", "params", "export", "valid ONNX", "tf→onnx max abs", "validated",
              "seconds", "RSS MiB", "note", "error"]
    rows = []
    for r in results:
        err = r.error or ""
        if len(err) > ERROR_COLUMN_WIDTH:
            err = err[:ERROR_COLUMN_WIDTH - 1] + "…"
        rows.append([r.name, _fmt_shape(r.input), _fmt_params(r.params), r.export, r.valid_onnx,
                     _fmt_err(r.tf_onnx_max_abs, r.tf_onnx_passed), "yes" if r.validated else "no",
                     f"{r.seconds:.1f}" if r.seconds is not None else "-",
                     f"{r.peak_rss_mib:.0f}" if r.peak_rss_mib is not None else "-",
                     ",".join(n for n in r.notes if not n.startswith("onnx.checker")) or "", err])
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(header)]
    right = {2, 5, 7, 8}  # numeric columns

    def line(cells):
        cols = (c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
        return "  ".join(cols).rstrip()

    print(line(header))
    print(line(["-" * w for w in widths]))
    group = None
    for r, row in zip(results, rows):
        if group is not None and r.group != group:
            print()
        group = r.group
        print(line(row))


def versions(packages=VERSIONED_PACKAGES) -> dict[str, str]:
    """Versions of the packages that decide the results ("not installed" where absent)."""
    from compiler.report import versions as installed

    found = installed(packages)
    found.pop("python", None)
    return {pkg: v or "not installed" for pkg, v in found.items()}


def git_state() -> dict:
    """HEAD and whether the code the compile runs (compiler/, passes/) has uncommitted changes (read-only git)."""
    def git(*args):
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, cwd=REPO_ROOT,
                                  timeout=30).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    dirty = [ln[3:] for ln in git("status", "--porcelain", "--", "compiler", "passes").splitlines()]
    return {"head": git("rev-parse", "--short", "HEAD") or "unknown", "uncommitted": dirty}


def code_label(state: dict) -> str:
    return state["head"] + ("+dirty" if state["uncommitted"] else "")


def load_specs(env: dict, script: str = SELF) -> list[dict]:
    """A survey's models, discovered by ``script --discover`` in a child so that this process never imports
    TensorFlow."""
    proc = subprocess.run([sys.executable, script, "--discover"], capture_output=True, text=True, env=env,
                          cwd=REPO_ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"error: survey: model discovery failed (exit {proc.returncode}): "
                         f"{proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def select_specs(specs: list[dict], only: str | None, ap) -> list[dict]:
    """The models ``--only NAME,...`` names (case-insensitive), all without it; an unknown name is a usage error."""
    if not only:
        return specs
    wanted = [n.strip() for n in only.split(",") if n.strip()]
    known = {s["name"].lower() for s in specs}
    unknown = [n for n in wanted if n.lower() not in known]
    if unknown:
        ap.error(f"unknown model(s): {', '.join(unknown)}; see --list")
    keep = {n.lower() for n in wanted}
    return [s for s in specs if s["name"].lower() in keep]


# --------------------------------------------------------------------------- main

def survey_parser(doc: str, timeout: float, children: str) -> argparse.ArgumentParser:
    """The options both surveys take (this one and keras_hub_coverage.py): --only, --list, --json, --keep and
    --timeout (default ``timeout`` seconds per child process: ``children``)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=doc)
    ap.add_argument("--only", metavar="NAME,...", help="run only these models (case-insensitive; see --list)")
    ap.add_argument("--list", action="store_true", help="list the models of the survey and exit")
    ap.add_argument("--json", type=Path, metavar="FILE", help="write the per-model results as JSON")
    ap.add_argument("--keep", type=Path, metavar="DIR",
                    help="keep each model's SavedModel, ONNX, report and logs under DIR/NAME/")
    ap.add_argument("--timeout", type=float, default=timeout, metavar="S",
                    help=f"limit per child process ({children}), seconds (default: {timeout:g})")
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Internal modes, run as children of the survey (see survey_one, load_specs, _check_onnx).
    if argv[:1] == ["--export-one"]:
        if len(argv) != 4:
            print("usage: keras_coverage.py --export-one NAME OUT_DIR META_JSON", file=sys.stderr)
            return 2
        return export_one(argv[1], Path(argv[2]), Path(argv[3]))
    if argv == ["--discover"]:
        return discover()
    if argv[:1] == ["--check-onnx"] and len(argv) == 2:
        return check_onnx(Path(argv[1]))

    ap = survey_parser(__doc__, 1200.0, "Keras build, compile")
    a = ap.parse_args(argv)
    if not hasattr(os, "wait4"):
        ap.error("os.wait4 is not available on this platform (Linux/macOS only)")

    env = dict(os.environ)
    specs = select_specs(load_specs(env), a.only, ap)
    if a.list:
        for s in specs:
            print(f"{s['name']:<22} {s['group']:<13} {s['detail']}")
        sys.stdout.flush()
        return 0
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)  # fail now, not after the survey

    tmp_root = None
    if a.keep:
        root = a.keep
        root.mkdir(parents=True, exist_ok=True)
    else:
        tmp_root = tempfile.mkdtemp(prefix="keras-coverage-")
        root = Path(tmp_root)

    vers, git = versions(), git_state()
    # On Linux a child's ru_maxrss starts at the RSS of the process it was spawned from (exec records
    # the old address space's high-water mark), so this process stays small (no TensorFlow, no ONNX
    # models loaded here) and the floor is measured and printed: RSS values at the floor mean "at most".
    _, _, floor_mib, _ = run_measured([sys.executable, "-c", "pass"], root, "rss-floor", 60, env)
    print(f"versions: {', '.join(f'{k} {v}' for k, v in vers.items())}; python {platform.python_version()}")
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs")
    print(f"code: HEAD {git['head']}" + (f", uncommitted changes in {', '.join(git['uncommitted'])}"
                                         if git["uncommitted"] else ", compiler/ and passes/ clean"))
    print(f"compile: {sys.executable} -m compiler SAVED_MODEL OUT.engine --quiet --keep-intermediates DIR "
          f"(cwd {REPO_ROOT})")
    print(f"peak RSS floor (a bare `python -c pass` child): {floor_mib:.0f} MiB")
    print(f"{len(specs)} models; applications at {APP_SIZE}x{APP_SIZE}x3 unless a family needs more, "
          f"weights=None, logits; seed {SEED}\n", flush=True)

    results: list[Result] = []
    started = time.perf_counter()
    try:
        for i, spec in enumerate(specs, 1):
            work = root / spec["name"]
            if work.exists():
                shutil.rmtree(work)
            try:
                r = survey_one(spec, work, a.timeout, env)
            except Exception as e:  # a bug in this script must not cost the other models either
                r = Result(spec["name"], spec["group"], error=f"survey: {type(e).__name__}: {e}",
                           error_stage="survey")
            results.append(r)
            status = "ok" if r.validated else f"FAILED ({r.error_stage or '?'})"
            secs = f"{r.seconds:.1f} s" if r.seconds is not None else "-"
            rss = f"{r.peak_rss_mib:.0f} MiB" if r.peak_rss_mib is not None else "-"
            print(f"[{i}/{len(specs)}] {spec['name']:<22} {status:<20} compile {secs:>8}  peak RSS {rss:>9}",
                  flush=True)
            if not a.keep:
                shutil.rmtree(work, ignore_errors=True)
    finally:
        if tmp_root:
            shutil.rmtree(tmp_root, ignore_errors=True)
    total = time.perf_counter() - started

    print()
    print_table(results)
    failures = [r for r in results if not r.validated]
    if failures:
        print("\nfailures (full error lines):")
        for r in failures:
            print(f"  {r.name}: {r.error or '(no error recorded; exit ' + str(r.exit_code) + ')'}")
    print("\nnote: const = a seam's reference output was constant (validation blind there); "
          "! = failed seam; seconds and RSS are the compile process's")
    codes = {r.code for r in results if r.code}
    if len(codes) > 1:
        print("\nWARNING: the compiler's code changed during the survey; rows ran on different code:")
        for code in sorted(codes, key=lambda c: min(i for i, r in enumerate(results) if r.code == c)):
            print(f"  {code}: {', '.join(r.name for r in results if r.code == code)}")
    ok = len(results) - len(failures)
    print(f"\n{ok}/{len(results)} compiled and validated (survey took {total / 60:.1f} min)")

    if a.json:
        a.json.write_text(json.dumps({
            "versions": {**vers, "python": platform.python_version()},
            "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
            "git": git, "rss_floor_mib": floor_mib,
            "app_size": APP_SIZE, "seed": SEED, "survey_seconds": total,
            "summary": {"models": len(results), "compiled_and_validated": ok},
            "results": [asdict(r) for r in results],
        }, indent=2, ensure_ascii=False) + "\n")
        print(f"json: {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
