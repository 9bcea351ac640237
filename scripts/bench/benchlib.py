"""What the benchmark scripts under scripts/bench/ share: which models they run, the header that says on what,
and timing by medians of alternating runs.

* ``fixture_names`` / ``export_fixtures``: the compilable fixtures of tests/conftest.py, chosen by name, each
  exported once to ONNX with ``compiler.api.export_model``.
* ``KERAS_APPS`` / ``keras_app``: keras.applications models as SavedModels, ``weights=None`` (nothing is
  downloaded), ``classifier_activation=None`` (logits, so errors are not hidden by a softmax), every initializer
  seeded and BatchNormalization statistics set to seeded random values: fresh statistics (mean 0, variance 1)
  with random convolutions drive these networks to a constant output, and validating a constant proves nothing.
* ``engine_variants`` / ``lowered_graph``: our engines, one per available backend of compiler.backends.REGISTRY
  (onnxruntime twice: native and portable builds) and precision, and the graph each is built from, made with
  the library's own stage entry points as `compile` makes them.
* ``workspace``: the work directory (``--workdir`` or a temporary one) with its ``exported/`` folder.
* ``header``: prints the package versions and the machine, returns them for the JSON.
* ``alternating``: ``rounds`` rounds over named measurements, each round starting with the next one in turn, so
  drift in machine load is spread over all of them; each measurement's per-round results, for medians.

Scripts import it as ``benchlib`` after putting this directory's parent's parent (the repository root) first on
sys.path, which they do anyway for ``compiler`` and ``tests``.
"""
from __future__ import annotations

import contextlib
import os
import platform
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

KERAS_APPS = ("MobileNetV2", "ResNet50", "ConvNeXtTiny", "EfficientNetB0")
KERAS_INPUT = (224, 224, 3)


Shapes = dict[str, tuple[int, ...]]


@dataclass
class Model:
    """A model the passes and precision benchmarks run: its exported ONNX and the shapes it runs with."""

    name: str
    onnx: Path
    shapes: Shapes


class BadInput(Exception):
    """A model or setting the benchmark cannot use; the message says why and what to do (exit status 2)."""


def fixture_names(spec: str | None) -> list[str]:
    """``a,b`` as fixture names (every compilable fixture for None); unknown names are a BadInput."""
    from tests.conftest import COMPILABLE

    names = [n.strip() for n in spec.split(",") if n.strip()] if spec else list(COMPILABLE)
    unknown = sorted(set(names) - set(COMPILABLE))
    if unknown:
        raise BadInput(f"unknown fixture(s) {', '.join(unknown)}; fix: choose from {', '.join(COMPILABLE)}")
    return names


def export_fixtures(names: list[str], workdir: Path) -> list[tuple[str, Path, dict]]:
    """(name, exported ONNX, the shapes it runs with: its golden inputs', else its --input-shapes) per fixture."""
    from compiler.api import export_model
    from tests.conftest import FIXTURES, fixture_input_shapes

    exported = []
    for name in names:
        print(f"exporting fixture {name} ...", flush=True)
        exported.append((name, export_model(FIXTURES / name, workdir / f"{name}.onnx").path,
                         fixture_input_shapes(name)))
    return exported


def keras_app(name: str, out_dir: Path, seed: int = 0) -> Path:
    """The SavedModel of keras.applications ``name`` at ``out_dir`` (made there when missing; see above)."""
    if (out_dir / "saved_model.pb").is_file():
        return out_dir
    if name not in KERAS_APPS:
        raise BadInput(f"unknown keras model '{name}'; fix: choose from {', '.join(KERAS_APPS)}")
    import keras
    import numpy as np

    print(f"making keras.applications.{name} at {out_dir} ...", flush=True)
    keras.utils.set_random_seed(seed)
    model = getattr(keras.applications, name)(weights=None, input_shape=KERAS_INPUT, classifier_activation=None)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            weights = layer.get_weights()  # [gamma, beta,] mean, variance
            weights[-2] = rng.uniform(-0.1, 0.1, weights[-2].shape)
            weights[-1] = rng.uniform(0.5, 2.0, weights[-1].shape)
            if len(weights) == 4:
                weights[0] = rng.uniform(0.5, 1.5, weights[0].shape)
                weights[1] = rng.uniform(-0.2, 0.2, weights[1].shape)
            layer.set_weights(weights)
    probe = model(rng.uniform(-1, 1, (2, *KERAS_INPUT)).astype("float32")).numpy()
    if np.ptp(probe) == 0:
        raise BadInput(f"{name}'s output is constant with seed {seed}; fix: use another --seed")
    model.export(str(out_dir), verbose=False)
    return out_dir


def engine_variants(precisions: list[str]) -> list[tuple[str, str, object]]:
    """(column name, precision, BuildConfig) for every available backend and precision; onnxruntime twice."""
    from compiler.backends import REGISTRY
    from compiler.config import BuildConfig

    variants = []
    for name, backend in REGISTRY.items():
        if not backend.availability()[0]:
            continue
        builds = ("native", "portable") if name == "onnxruntime" else (None,)
        for build in builds:
            cfg = BuildConfig(backend=name, **({"ort_build": build} if build else {}))
            variants += [(f"ours {name}{' ' + build if build else ''} {p}", p, cfg) for p in precisions]
    return variants


def lowered_graph(raw: Path, shapes: dict, precision: str, out: Path, calib_data: str | None = None) -> Path:
    """Our passes at ``shapes`` and, below fp32, the precision stage (int8: calibrated on ``calib_data``, else on
    32 seeded random samples): the ONNX graph the engine is built from, as `compile` makes it."""
    from compiler.api import lower_precision, optimize_model
    from compiler.config import OptimizeConfig, PrecisionConfig, ValidateConfig

    ocfg = OptimizeConfig(input_shapes=shapes)
    if precision == "fp32":
        return optimize_model(raw, out, ocfg)[0].path
    extra = {"calib_cache": out.parent / f"{precision}.calib.json", "calib_data": calib_data} \
        if precision == "int8" else {}
    return lower_precision(raw, out, ocfg, PrecisionConfig(mode=precision, **extra), ValidateConfig())[0].path


@contextlib.contextmanager
def workspace(workdir: Path | None, prefix: str):
    """``workdir`` (kept), else a temporary directory (removed), with an ``exported/`` folder in it."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        root = workdir.resolve() if workdir else Path(tmp)
        (root / "exported").mkdir(parents=True, exist_ok=True)
        yield root


def header(packages, timing: str) -> dict:
    """Print the versions of ``packages`` and the machine, with ``timing`` (how this script times); return them."""
    from compiler.report import versions as installed

    vers = {k: v or "not installed" for k, v in installed(packages).items()}
    print(f"versions: {', '.join(f'{k} {v}' for k, v in vers.items())}")
    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
          f"{timing}")
    return {"versions": vers, "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()}}


def alternating(measure: dict[str, Callable[[], object]], rounds: int) -> dict[str, list]:
    """Call every measurement once per round, round ``i`` starting with the ``i``-th; their results per round."""
    names = list(measure)
    results: dict[str, list] = {n: [] for n in names}
    for i in range(rounds):
        k = i % len(names) if names else 0
        for name in names[k:] + names[:k]:
            results[name].append(measure[name]())
    return results


def model_args(ap, without_fixtures: str) -> None:
    """``--fixtures A,B`` / ``--no-fixtures`` (``without_fixtures``: what then runs), ``--json``, ``--workdir``."""
    ap.add_argument("--fixtures", metavar="A,B", help="only these compilable fixtures (default: all of them)")
    ap.add_argument("--no-fixtures", action="store_true", help=f"no fixtures, only {without_fixtures}")
    ap.add_argument("--json", type=Path, metavar="FILE", help="write the rows, versions and settings as JSON")
    ap.add_argument("--workdir", type=Path, metavar="DIR", help="keep exports and outputs here (default: a temp dir)")


def checked_args(ap, a) -> dict:
    """Refuse contradicting ``model_args`` and a ``--runs`` below 1, make ``--json``'s folder now (not after minutes
    of runs); the environment for child processes, TensorFlow's start-up logging off here and there."""
    if a.runs < 1:
        ap.error("--runs must be at least 1")
    if a.no_fixtures and a.fixtures:
        ap.error("--fixtures and --no-fixtures contradict each other")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # the exports run in this process
    return dict(os.environ)


def finish(json_path: Path | None, payload: dict, failed: list[str], what: str) -> int:
    """Write ``payload`` to ``json_path`` (when given); exit status 1 naming ``failed`` (``what`` failed on them)."""
    if json_path:
        import json

        json_path.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"json: {json_path}")
    if failed:
        print(f"\nFAILED: {what}: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
