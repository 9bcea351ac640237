"""`python -m compiler batch`: a project file, one process per model under limits, incremental reruns, the index
pages and JUnit for CI, Ray, and the Triton repository it hands to serving.

One module-scoped zoo is built once with the real CLI (3 compiles, a broken model, a hanging one); the other
tests read it, rerun it (everything skipped), or run three of its models again on a local Ray cluster.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from compiler.batch import Options, input_hash, run_batch, tool_digest
from compiler.cli import make_parser
from compiler.errors import ConfigError
from compiler.project import compile_subparser, load_project
from compiler.report import versions
from tests.conftest import FIXTURES, ROOT, run_cli
from tests.test_html_report import _chromium

ZOO = """
[defaults]
timeout_s = 600
backend = "onnxruntime"      # its Triton repository needs engines Triton serves (not OpenVINO blobs)

[models.cnn]                 # fp32, checked against a golden recorded from the SavedModel
path = "{fixtures}/cnn_nhwc"
golden = "goldens/cnn"

[models.nchw_int8]           # NCHW input, int8 calibrated on a data directory
path = "{fixtures}/depth_to_space"
inputs_as_nchw = ["x"]
precision = "int8"
calib_data = "data/calib"

[models.broken]              # tf2onnx cannot convert Lgamma: the export stage fails (exit 4)
path = "{fixtures}/unsupported_op"

[models.hang]                # its rules file sleeps forever: killed at the time limit
path = "{fixtures}/cnn_nhwc"
rules = "sleepy_rules.py"
timeout_s = 3
"""


def _cli(*args, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH")))))
    return subprocess.run([sys.executable, "-m", "compiler", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=1200)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """The project directory after one `batch --jobs 2 --triton-repo` run: (dir, completed process, index)."""
    root = tmp_path_factory.mktemp("zoo")
    (root / "tf2trt.toml").write_text(ZOO.format(fixtures=FIXTURES))
    (root / "sleepy_rules.py").write_text("import time\ntime.sleep(3600)\nRULES = []\n")
    calib = root / "data" / "calib"
    calib.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(4):
        np.savez(calib / f"{i}.npz", x=rng.uniform(-1, 1, (1, 8, 8, 4)).astype(np.float32))
    (root / "goldens").mkdir()
    rec = _cli("record", FIXTURES / "cnn_nhwc", "--golden", root / "goldens" / "cnn", "--samples", "2", cwd=root)
    assert rec.returncode == 0, rec.stderr[-2000:]
    done = _cli("batch", "--jobs", "2", "--triton-repo", root / "triton", cwd=root)
    return root, done, json.loads((root / "build" / "index.json").read_text())


def _by_name(index: dict) -> dict[str, dict]:
    return {r["name"]: r for r in index["models"]}


@pytest.mark.tf
@pytest.mark.slow
def test_batch_builds_each_model_in_its_own_directory(zoo):
    root, done, index = zoo
    assert done.returncode == 1, done.stderr[-3000:]  # broken and hang failed; the others passed
    models = _by_name(index)
    assert {n: m["status"] for n, m in models.items()} == {"cnn": "passed", "nchw_int8": "passed",
                                                          "broken": "failed", "hang": "failed"}
    for name in ("cnn", "nchw_int8"):
        d = root / "build" / name
        assert {"model.engine", "report.json", "report.html", "compile.log", "state.json"} <= {p.name for p in
                                                                                             d.iterdir()}
        assert models[name]["latency_ms"] > 0 and models[name]["size_bytes"] == (d / "model.engine").stat().st_size
        assert all(s["passed"] for s in models[name]["seams"]) and models[name]["seams"]
    assert models["cnn"]["check"]["passed"] and models["nchw_int8"]["check"] is None
    assert models["nchw_int8"]["precision"] == "int8"
    report = json.loads((root / "build" / "nchw_int8" / "report.json").read_text())
    assert "data/calib" in report["precision"]["calibration"]["source"]
    assert [t["shape"] for t in report["engine"]["io"] if t["mode"] == "input"] == [[-1, 4, 8, 8]]  # NCHW
    assert not list((root / "build").glob(".*"))  # no partial directories left behind


@pytest.mark.tf
@pytest.mark.slow
def test_failures_are_one_line_with_their_stage(zoo):
    root, done, index = zoo
    models = _by_name(index)
    assert models["broken"]["stage"] == "export" and models["broken"]["exit_code"] == 4
    assert models["broken"]["error"].startswith("export: ") and "Lgamma" in models["broken"]["error"]
    assert models["hang"]["stage"] == "timeout" and models["hang"]["exit_code"] is None
    assert models["hang"]["error"].startswith("timeout: killed after 3 s")
    assert models["hang"]["seconds"] < 30
    lines = done.stderr.splitlines()
    assert sum(line.startswith("[") and "/4]" in line for line in lines) == 4  # a progress line per model
    assert "batch: 2 passed, 0 unchanged, 2 failed" in done.stdout


@pytest.mark.tf
@pytest.mark.slow
def test_junit_gates_ci(zoo):
    root, _, _ = zoo
    suite = ET.parse(root / "build" / "junit.xml").getroot()
    assert suite.get("tests") == "4" and suite.get("failures") == "2"
    failed = {c.get("name"): c.find("failure").get("message") for c in suite if c.find("failure") is not None}
    assert set(failed) == {"broken", "hang"} and failed["hang"].startswith("timeout:")


@pytest.mark.tf
@pytest.mark.slow
def test_index_html_renders_offline(zoo, chromium, tmp_path):
    root, _, index = zoo
    page = root / "build" / "index.html"
    text = page.read_text()
    assert "<script" not in text.lower()
    links = re.findall(r'href="([^"]+)"', text)
    assert sorted(links) == ["broken/report.html", "cnn/report.html", "nchw_int8/report.html"]  # relative, no URL
    for link in links:
        assert (page.parent / link).is_file()
    dom = _chromium(chromium, "--dump-dom", page.as_uri(), cwd=tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count("<tr") == 1 + len(index["models"]) and "Lgamma" in dom.stdout and "timeout" in dom.stdout


@pytest.mark.tf
@pytest.mark.slow
def test_rerun_skips_everything_unchanged(zoo):
    root, _, first = zoo
    partial = root / "build" / ".cnn.partial-killed"  # what a run killed mid-model leaves
    partial.mkdir()
    done = _cli("batch", "--only", "cnn,nchw_int8", cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    index = json.loads((root / "build" / "index.json").read_text())
    assert [r["status"] for r in index["models"]] == ["unchanged", "unchanged"]
    assert not partial.exists()
    for name in ("cnn", "nchw_int8"):  # the recorded results stay as they were
        kept = {k: v for k, v in _by_name(index)[name].items() if k not in ("status", "triton")}
        assert kept == {k: v for k, v in _by_name(first)[name].items() if k not in ("status", "triton")}


@pytest.mark.tf
@pytest.mark.slow
def test_hash_covers_settings_data_and_toolchain(zoo, tmp_path):
    root, _, _ = zoo
    project = load_project(root / "tf2trt.toml", compile_subparser(make_parser()))
    spec = next(m for m in project.models if m.name == "nchw_int8")
    toolchain = {"tool": tool_digest(), "versions": versions()}
    before = input_hash(spec, toolchain)
    assert input_hash(spec, toolchain) == before
    assert input_hash(spec, {**toolchain, "tool": "other"}) != before
    assert root / "data" / "calib" in spec.inputs
    sample = root / "data" / "calib" / "0.npz"
    saved = sample.read_bytes()
    try:
        sample.write_bytes(saved[:-1] + bytes([saved[-1] ^ 1]))
        assert input_hash(spec, toolchain) != before
    finally:
        sample.write_bytes(saved)
    other = type(spec)(**{**spec.__dict__, "settings": {**spec.settings, "calib_method": "entropy"}})
    assert input_hash(other, toolchain) != before


@pytest.mark.tf
@pytest.mark.slow
def test_triton_repository_of_the_passed_models(zoo):
    """Each config parsed with Triton's own model-config protobuf (tritonclient), not compared as text."""
    model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
    from google.protobuf import text_format

    root, _, _ = zoo
    repo = root / "triton"
    assert sorted(p.name for p in repo.iterdir()) == ["cnn", "nchw_int8"]  # failed models are left out
    configs = {}
    for name in ("cnn", "nchw_int8"):
        configs[name] = text_format.Parse((repo / name / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
        assert (repo / name / "1" / "model.onnx").read_bytes() == (root / "build" / name / "model.engine").read_bytes()
    cnn, nchw = configs["cnn"], configs["nchw_int8"]
    assert (cnn.name, cnn.platform, cnn.max_batch_size) == ("cnn", "onnxruntime_onnx", 8)
    assert [(t.name, t.data_type, list(t.dims)) for t in cnn.input] == [("image", model_config_pb2.TYPE_FP32,
                                                                          [32, 32, 3])]
    assert [(t.name, list(t.dims)) for t in cnn.output] == [("output_0", [10])] and cnn.HasField("dynamic_batching")
    assert [list(t.dims) for t in nchw.input] == [[4, 8, 8]]  # the engine's NCHW input, batch dim left out


# ------------------------------------------------------------------------------------------------ Ray


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.mark.tf
@pytest.mark.slow
def test_ray_executor_matches_local(zoo, ray_cluster, tmp_path):
    """nchw_int8 unchanged (its build copied over), broken failing, cnn built (and checked) by a Ray task."""
    root, _, first = zoo
    shutil.copytree(root / "build" / "nchw_int8", tmp_path / "build" / "nchw_int8")
    index = run_batch(load_project(root / "tf2trt.toml", compile_subparser(make_parser())),
                      Options(only="cnn,broken,nchw_int8", executor="ray", build_dir=tmp_path / "build"),
                      log=lambda line: None)
    models = _by_name(index)
    assert models["nchw_int8"]["status"] == "unchanged" and not index["passed"]
    keys = ("status", "stage", "exit_code", "backend", "format", "precision", "size_bytes", "engine", "report")
    for name in ("broken", "cnn"):
        assert {k: models[name][k] for k in keys} == {k: _by_name(first)[name][k] for k in keys}, name
        assert [(s["seam"], s["passed"]) for s in models[name]["seams"]] == \
            [(s["seam"], s["passed"]) for s in _by_name(first)[name]["seams"]]
    assert models["broken"]["error"] == _by_name(first)["broken"]["error"]
    assert models["cnn"]["check"] == _by_name(first)["cnn"]["check"]
    assert {"model.engine", "report.html", "check.json", "state.json"} <= {p.name for p in (tmp_path / "build" /
                                                                                           "cnn").iterdir()}


# ------------------------------------------------------------------------------------------------ project file


def _load(tmp_path, text: str):
    (tmp_path / "model").mkdir(exist_ok=True)
    (tmp_path / "tf2trt.toml").write_text(text)
    return load_project(tmp_path / "tf2trt.toml", compile_subparser(make_parser()))


@pytest.mark.parametrize("text, words", [
    ('[models.a]\npath = "model"\natoll = 1e-3\n', ["tf2trt.toml:3", "[models.a]", "atoll", "did you mean 'atol'"]),
    ('[models.a]\npath = "model"\natol = "small"\n', ["tf2trt.toml:3", "atol", "expected a number", "str"]),
    ('[models.a]\npath = "model"\ninputs_as_nchw = true\n', ["inputs_as_nchw", "expected a string"]),
    ('[models.a]\npath = "model"\nprecision = "int4"\n', ["precision", "'int4' is not one of"]),
    ('[models.a]\nprecision = "fp16"\n', ["tf2trt.toml:1", "[models.a]", "has no path"]),
    ('[models.a]\npath = "nowhere"\n', ["[models.a]", "path", "'nowhere' does not exist"]),
    ('[defaults]\nbackend = "cpu"\n[models.a]\npath = "model"\n', ["[defaults]", "backend", "'cpu' is not one of"]),
    ('[model.a]\npath = "model"\n', ["model", "unknown table", "did you mean 'models'"]),
    ('[models.a]\npath = "model"\nout = "x"\n', ["out", "batch sets it"]),
    ('[models.a\npath = "model"\n', ["not valid TOML"]),
])
def test_bad_project_files_give_one_line(tmp_path, capsys, text, words):
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, text)
    line = err.value.one_line()
    assert "\n" not in line and line.startswith("config: ")
    for word in words:
        assert word in line, line
    code, _, stderr = run_cli(capsys, "batch", tmp_path / "tf2trt.toml")
    assert code == 2 and stderr.strip().count("\n") == 0 and stderr.startswith("error: config: ")


def test_settings_become_compile_flags(tmp_path):
    project = _load(tmp_path, '[defaults]\nprecision = "fp16"\natol = 1\nval_range = ["x:0,1"]\n'
                              '[models.a]\npath = "model"\ninput_shapes = ["x:1x2", "y:3"]\nauto_mixed = true\n'
                              '[models.b]\npath = "model"\nprecision = "fp32"\nauto_mixed = false\n')
    a, b = project.models
    assert a.argv == ("--precision", "fp16", "--atol", "1", "--val-range", "x:0,1", "--input-shapes", "x:1x2,y:3",
                      "--auto-mixed")
    assert b.argv == ("--precision", "fp32", "--atol", "1", "--val-range", "x:0,1")
    make_parser().parse_args(["compile", "m", "o", *a.argv])  # the compile parser accepts them as they are
    assert a.path == tmp_path / "model" and a.root == tmp_path


def test_pyproject_table_and_only(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n[tool.tf2trt.models.a]\npath = "model"\n'
                                             '[tool.tf2trt.models.b]\npath = "model"\natoll = 1\n')
    with pytest.raises(ConfigError, match=r"pyproject.toml:7: \[models.b\] atoll"):
        load_project(tmp_path / "pyproject.toml", compile_subparser(make_parser()))
    (tmp_path / "pyproject.toml").write_text('[tool.tf2trt.models.a]\npath = "model"\n')
    project = load_project(tmp_path / "pyproject.toml", compile_subparser(make_parser()))
    with pytest.raises(ConfigError, match="did you mean 'a'"):
        project.select("aa")


def test_sigterm_kills_the_children_and_leaves_no_partial_output(tmp_path):
    psutil = pytest.importorskip("psutil")
    (tmp_path / "sleepy_rules.py").write_text("import time\ntime.sleep(3600)\nRULES = []\n")
    (tmp_path / "tf2trt.toml").write_text(f'[models.slow]\npath = "{FIXTURES}/cnn_nhwc"\nrules = "sleepy_rules.py"\n')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH")))))
    proc = subprocess.Popen([sys.executable, "-m", "compiler", "batch"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    driver, children = psutil.Process(proc.pid), []
    for _ in range(600):  # until the compile child runs
        children = driver.children(recursive=True)
        if children and list((tmp_path / "build").glob(".slow.partial-*/compile.log")):
            break
        time.sleep(0.1)
    assert children, "no compile child started"
    proc.terminate()
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143 and stderr.strip().splitlines()[-1].startswith("error: terminated; ")
    assert not list((tmp_path / "build").iterdir())  # no partial directory, no index of nothing
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive


def test_memory_limit_fails_that_model_only(tmp_path):
    (tmp_path / "tf2trt.toml").write_text(f'[models.tight]\npath = "{FIXTURES}/cnn_nhwc"\nmemory_mib = 400\n'
                                          f'[models.typo]\npath = "{FIXTURES}/nowhere_else"\n')
    assert "does not exist" in _cli("batch", cwd=tmp_path).stderr  # the whole file is checked first
    (tmp_path / "tf2trt.toml").write_text(f'[models.tight]\npath = "{FIXTURES}/cnn_nhwc"\nmemory_mib = 400\n')
    done = _cli("batch", cwd=tmp_path)
    assert done.returncode == 1, done.stderr[-2000:]
    (tight,) = json.loads((tmp_path / "build" / "index.json").read_text())["models"]
    assert tight["stage"] == "memory" and tight["error"].startswith("memory: ran out of memory under memory_mib = 400")
