"""Bad paths, flags, sample data, golden contents and engines, and concurrent runs: one line each, no traceback.

Before: --keep-intermediates naming a file, a user rule that raises, and golden samples holding strings or
Python objects ended in exit 70 with a traceback.
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import onnx_cases as cases
from corpus import assert_clean_failure, cli, cli_env, leftovers
from guards import assert_no_library_logs

RULE_TEMPLATE = '''
from passes.rules import Rule


class Boom(Rule):
    name = "boom"
    op = "Relu"

    def wants(self, node, graph):
        {wants}
        return True

    def check(self, node, graph):
        {check}
        return None

    def apply(self, node, graph):
        {apply}


RULES = [Boom()]
'''
RULE_FILES = {
    "apply-raises": dict(wants="pass", check="pass", apply="raise ValueError('no luck')"),
    "check-raises": dict(wants="pass", check="raise KeyError('missing')", apply="pass"),
    "wants-raises": dict(wants="raise RuntimeError('confused')", check="pass", apply="pass"),
    "apply-out-of-memory": dict(wants="pass", check="pass", apply="raise MemoryError()"),
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("flags")
    made = {"relu": cases.save(cases.relu(), root / "relu.onnx")}
    for name, parts in RULE_FILES.items():
        made[name] = root / f"{name}.py"
        made[name].write_text(RULE_TEMPLATE.format(**parts))
    made["a_file"] = root / "a_file.txt"
    made["a_file"].write_text("not a directory\n")
    made["strings.npz"] = root / "strings.npz"
    np.savez(made["strings.npz"], x=np.array([["a", "b", "c", "d"]]))
    made["objects.npz"] = root / "objects.npz"
    np.savez(made["objects.npz"], x=np.array([[1, "b", None, 2.0]], dtype=object))
    data = root / "objects_dir"
    data.mkdir()
    np.save(data / "0.npy", np.array([[1, None, 2, 3]], dtype=object), allow_pickle=True)
    made["objects_dir"] = data
    made["empty_engine"] = root / "empty.engine"
    made["empty_engine"].write_bytes(b"")
    made["plan_engine"] = root / "plan.engine"
    made["plan_engine"].write_bytes(b"ftrt" + bytes(60))
    return made


def _check(result, workdir, code, stage, *needles):
    line = assert_clean_failure(result, code, stage, *needles)
    assert_no_library_logs(result)
    assert leftovers(workdir) == []
    return line


@pytest.mark.parametrize("where", ["existing-file", "below-a-file"])
def test_keep_intermediates_not_a_directory(files, workdir, where):
    target = files["a_file"] if where == "existing-file" else files["a_file"] / "sub"
    result = cli(files["relu"], workdir / "m.engine", "--keep-intermediates", target)
    _check(result, workdir, 8, "output", "--keep-intermediates", str(files["a_file"].name))
    assert not (workdir / "m.engine").exists()
    assert files["a_file"].read_text() == "not a directory\n"


@pytest.mark.parametrize("name", sorted(RULE_FILES))
def test_user_rule_that_raises(files, workdir, name):
    result = cli(files["relu"], workdir / "m.engine", "--rules", files[name])
    _check(result, workdir, 5, "optimize", "'boom'", name.split("-")[0] if "memory" not in name else "memory")
    assert not (workdir / "m.engine").exists()


@pytest.fixture(scope="module")
def golden(files, tmp_path_factory):
    """A real recording of relu.onnx, to corrupt in copies."""
    root = tmp_path_factory.mktemp("golden")
    done = cli("record", files["relu"], "--golden", root / "g", "--samples", "2")
    assert done.code == 0, done.err
    return root / "g"


def _corrupt(golden, workdir, arrays: dict, pickle=False):
    """A copy of ``golden`` whose first sample holds ``arrays`` (the manifest's sha256 updated to match)."""
    import hashlib
    import shutil

    copy = workdir / "golden"
    shutil.copytree(golden, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    sample = copy / manifest["samples"][0]["file"]
    with open(sample, "wb") as f:
        np.savez(f, **arrays) if not pickle else np.savez(f, allow_pickle=True, **arrays)
    manifest["samples"][0]["sha256"] = hashlib.sha256(sample.read_bytes()).hexdigest()
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


GOLDEN_CONTENTS = {
    "strings": {"in:x": np.array([["a", "b", "c", "d"]]), "out:y": np.zeros((1, 4), np.float32)},
    "objects": {"in:x": np.array([[1, None, "c", 2.0]], dtype=object), "out:y": np.zeros((1, 4), np.float32)},
    "string-output": {"in:x": np.zeros((1, 4), np.float32), "out:y": np.array([["a", "b", "c", "d"]])},
    "no-arrays": {},
}


@pytest.mark.parametrize("case", sorted(GOLDEN_CONTENTS))
def test_golden_sample_contents(files, golden, workdir, case):
    copy = _corrupt(golden, workdir, GOLDEN_CONTENTS[case])
    result = cli("check", files["relu"], "--golden", copy)
    _check(result, workdir, 11, "golden")


def test_golden_sample_not_a_zip(files, golden, workdir):
    import hashlib

    copy = _corrupt(golden, workdir, {})
    manifest = json.loads((copy / "manifest.json").read_text())
    sample = copy / manifest["samples"][0]["file"]
    sample.write_bytes(b"not a zip file at all")
    manifest["samples"][0]["sha256"] = hashlib.sha256(sample.read_bytes()).hexdigest()
    (copy / "manifest.json").write_text(json.dumps(manifest))
    _check(cli("check", files["relu"], "--golden", copy), workdir, 11, "golden")


@pytest.mark.parametrize("which", ["strings.npz", "objects.npz"])
def test_run_inputs_not_numbers(files, workdir, which):
    _check(cli("run", files["relu"], "--inputs", files[which]), workdir, 9, "run", which.split(".")[0])


@pytest.mark.parametrize("which", ["strings.npz", "objects.npz", "objects_dir"])
def test_validation_data_not_numbers(files, workdir, which):
    result = cli(files["relu"], workdir / "m.engine", "--data", files[which])
    _check(result, workdir, 7, "validate")


@pytest.mark.parametrize("which", ["empty_engine", "plan_engine"])
def test_run_bad_engine(files, workdir, which):
    _check(cli("run", files[which]), workdir, 9, "run", files[which].name)


def test_run_truncated_engine(files, workdir):
    built = workdir / "m.engine"
    assert cli("build", files["relu"], built).code == 0
    truncated = workdir / "cut.engine"
    truncated.write_bytes(built.read_bytes()[:100])
    _check(cli("run", truncated), workdir, 9, "run", "cut.engine")


def test_two_compiles_of_one_output(files, workdir):
    """Both finish (each renames its own complete engine into place); the engine left is a whole one."""
    out = workdir / "m.engine"
    args = [sys.executable, "-m", "compiler", str(files["relu"]), str(out), "--quiet"]
    procs = [subprocess.Popen(args, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, results):
        assert p.returncode == 0 and "Traceback" not in err, err
    assert cli("run", out).code == 0
    assert leftovers(workdir) == []
