"""Trust boundaries (DESIGN.md): a model directory is a sandbox. External data, SavedModel variables/assets and
golden samples must resolve, after symlinks, inside their own directory; anything else is refused before a byte
of it is read, and no byte of a file outside the sandbox reaches any output (stdout, stderr, engine, report,
goldens, outputs files)."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from corpus import ROOT, assert_clean_failure, cli, leftovers, snapshot
from models import (SECRET, SECRET_VALUES, add_model, constant_outside, function_outside, initializer_outside, save,
                    sparse_outside, subgraph_outside)

@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> dict[str, Path]:
    """A secret file outside every model directory, and models whose tensors point at it in every way."""
    root = tmp_path_factory.mktemp("sandbox")
    secret = root / "secret.bin"
    secret.write_bytes(SECRET)
    models = {"good": save(add_model(), root / "good" / "m.onnx")}
    rel = "../../secret.bin"  # from root/models/<case>/
    for name, build, location in (
            ("relative", initializer_outside, rel),
            ("absolute", initializer_outside, str(secret)),
            ("passwd", initializer_outside, "../../../../../../../../etc/passwd"),
            ("constant", constant_outside, rel),
            ("subgraph", subgraph_outside, rel),
            ("sparse", sparse_outside, rel),
            ("function", function_outside, rel),
            ("symlink", initializer_outside, "w.bin")):
        models[name] = save(build(location), root / "models" / name / "m.onnx")
    os.symlink(secret, root / "models" / "symlink" / "w.bin")
    inside = save(initializer_outside("w.bin"), root / "inside" / "m.onnx")  # legitimate external data
    (inside.parent / "w.bin").write_bytes(np.full(4, 2.0, np.float32).tobytes())
    models["inside"] = inside
    models["root"] = root
    models["secret"] = secret
    return models


def _assert_no_secret(result, workdir: Path) -> None:
    """No byte of the secret in anything the case printed or wrote."""
    texts = [result.out, result.err]
    for text in texts:
        assert SECRET.decode() not in text
        for value in SECRET_VALUES:
            assert f"{value:.6g}" not in text and f"{value:.3e}" not in text, (value, text[-2000:])
    for f in workdir.rglob("*"):
        if f.is_file():
            assert SECRET not in f.read_bytes(), f


def _refused(result, workdir, *needles):
    line = assert_clean_failure(result, 3, "inspect", "external data", *needles)
    _assert_no_secret(result, workdir)
    assert leftovers(workdir) == []
    return line


# Every subcommand that reads an ONNX file, with the bad model in the place it reads it from.
COMMANDS = {
    "inspect": lambda m, w, s: ["inspect", m],
    "inspect-tensors": lambda m, w, s: ["inspect", m, "--tensors"],
    "compile": lambda m, w, s: [m, w / "out.engine"],
    "optimize": lambda m, w, s: ["optimize", m, w / "o.onnx"],
    "build": lambda m, w, s: ["build", m, w / "o.engine", "--backend", "onnxruntime"],
    "validate-candidate": lambda m, w, s: ["validate", s["good"], m],
    "run": lambda m, w, s: ["run", m, "--outputs", w / "y.npz"],
    "bench": lambda m, w, s: ["bench", m, "--warmup", "1", "--iterations", "2"],
    "record": lambda m, w, s: ["record", m, "--golden", w / "g", "--samples", "1"],
    "localize-reference": lambda m, w, s: ["localize", m, s["good"]],
    "check-trt": lambda m, w, s: ["check-trt", m],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_loader_refuses_external_data_outside(sandbox, workdir, command):
    before = snapshot(sandbox["root"])
    result = cli(*COMMANDS[command](sandbox["relative"], workdir, sandbox), cwd=workdir)
    _refused(result, workdir, "../../secret.bin", "'w'")
    assert snapshot(sandbox["root"]) == before


def test_check_refuses_external_data_outside(sandbox, workdir):
    golden = workdir / "g"
    assert cli("record", sandbox["good"], "--golden", golden, "--samples", "1").code == 0
    result = cli("check", sandbox["relative"], "--golden", golden, "--junit", workdir / "j.xml")
    _refused(result, workdir, "../../secret.bin")
    assert not (workdir / "j.xml").exists()


@pytest.mark.parametrize("case, needle", [
    ("absolute", "absolute"),
    ("passwd", "etc/passwd"),
    ("constant", "constant"),
    ("subgraph", "then"),
    ("sparse", "sparse"),
    ("function", "AddSecret"),
    ("symlink", "w.bin"),
])
def test_every_place_a_tensor_keeps_external_bytes_is_checked(sandbox, workdir, case, needle):
    result = cli("run", sandbox[case], "--outputs", workdir / "y.npz", cwd=workdir)
    _refused(result, workdir, needle)
    assert not (workdir / "y.npz").exists()


def test_compile_does_not_bake_a_symlinked_weight_into_the_engine(sandbox, workdir):
    result = cli(sandbox["symlink"], workdir / "out.engine", "--keep-intermediates", workdir / "keep")
    _refused(result, workdir, "w.bin", "outside")
    assert not (workdir / "out.engine").exists()


def test_external_data_inside_the_model_directory_still_loads(sandbox, workdir):
    result = cli("run", sandbox["inside"], "--outputs", workdir / "y.npz", "--json")
    assert result.code == 0, result.err
    with np.load(workdir / "y.npz") as y:
        x = y["y"] - 2.0  # y = x + w with w = 2 from w.bin beside the model
        assert np.all(np.abs(x) <= 1.0)


# ------------------------------------------------------------------------------------ SavedModel symlinks


@pytest.fixture(scope="module")
def linked_models(tmp_path_factory) -> dict[str, Path]:
    """cnn_nhwc copies whose variables (a directory, or one file) or assets are symlinks to outside."""
    root = tmp_path_factory.mktemp("linked")
    outside = root / "outside"
    shutil.copytree(ROOT / "fixtures" / "cnn_nhwc" / "variables", outside / "variables")
    (outside / "vocab.txt").write_bytes(SECRET)
    made = {}
    for name in ("variables_dir", "variables_file", "assets"):
        model = root / name
        shutil.copytree(ROOT / "fixtures" / "cnn_nhwc", model, symlinks=True)
        made[name] = model
    shutil.rmtree(made["variables_dir"] / "variables")
    os.symlink(outside / "variables", made["variables_dir"] / "variables")
    index = made["variables_file"] / "variables" / "variables.index"
    index.unlink()
    os.symlink(outside / "variables" / "variables.index", index)
    (made["assets"] / "assets").mkdir()
    os.symlink(outside / "vocab.txt", made["assets"] / "assets" / "vocab.txt")
    return made


@pytest.mark.parametrize("case, command", [
    ("variables_dir", "inspect"), ("variables_file", "compile"), ("assets", "export")])
def test_saved_model_symlinks_out_of_its_directory_are_refused(linked_models, workdir, case, command):
    model = linked_models[case]
    args = {"inspect": ["inspect", model], "compile": [model, workdir / "out.engine"],
            "export": ["export", model, workdir / "m.onnx"]}[command]
    result = cli(*args)
    assert_clean_failure(result, 3, "inspect", "outside", "symlink")
    _assert_no_secret(result, workdir)
    assert leftovers(workdir) == [] and not (workdir / "out.engine").exists() and not (workdir / "m.onnx").exists()


# ------------------------------------------------------------------------------------ golden sample names


@pytest.fixture(scope="module")
def golden(tmp_path_factory, sandbox) -> Path:
    root = tmp_path_factory.mktemp("golden")
    result = cli("record", sandbox["good"], "--golden", root / "g", "--samples", "1")
    assert result.code == 0, result.err
    (root / "outside.npz").write_bytes((root / "g" / "0000.npz").read_bytes())
    return root / "g"


def _golden_with(golden: Path, workdir: Path, file_entry, link: str | None = None) -> Path:
    """A copy of ``golden`` whose first manifest entry names ``file_entry`` (with the real sample's sha256)."""
    copy = workdir / "golden"
    shutil.copytree(golden, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["samples"][0]["file"] = file_entry
    (copy / "manifest.json").write_text(json.dumps(manifest))
    if link:
        os.symlink(golden.parent / "outside.npz", copy / link)
    return copy


def _entry_cases(golden_root: Path) -> dict:
    return {"parent": "../outside.npz", "parent-missing": "../missing.npz", "etc": "/etc/shadow",
            "absolute-existing": str(golden_root / "outside.npz"), "subdir": "sub/0000.npz", "dotdot": "..",
            "dot": ".", "empty": "", "backslash": "..\\outside.npz"}


@pytest.mark.parametrize("case", ["parent", "etc", "absolute-existing", "subdir", "dotdot", "empty", "symlink",
                                  "number"])
def test_golden_sample_names_must_be_plain_files_inside(golden, sandbox, workdir, case):
    entry = {"symlink": "link.npz", "number": 42}.get(case) or _entry_cases(golden.parent)[case]
    copy = _golden_with(golden, workdir, entry, link="link.npz" if case == "symlink" else None)
    result = cli("check", sandbox["good"], "--golden", copy)
    line = assert_clean_failure(result, 11, "golden", "sample")
    assert repr(str(entry)) in line or f"'{entry}'" in line, line
    assert leftovers(workdir) == []


def test_golden_refusal_does_not_reveal_whether_a_path_exists(golden, sandbox, workdir):
    lines = []
    for entry in ("../outside.npz", "../nothere.npz"):
        copy = _golden_with(golden, workdir / entry[3:-4], entry)
        lines.append(assert_clean_failure(cli("check", sandbox["good"], "--golden", copy), 11, "golden")
                     .replace(str(copy), "DIR").replace(entry, "ENTRY"))
    assert lines[0] == lines[1]
