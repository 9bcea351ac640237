"""Regression goldens: record once (from the SavedModel, through TensorFlow), check every later engine.

Real models throughout: each fixture's SavedModel is recorded, compiled to the onnxruntime artifact, and
checked; a changed weight must fail the check; damaged golden directories must be refused by name.
"""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from compiler.errors import ConfigError, GoldenError
from compiler.regress import check, compare_output, junit_xml, read_golden, record
from compiler.runtime import detect_format
from tests.conftest import COMPILABLE, FIXTURES, run_cli

pytestmark = pytest.mark.tf


def _shapes(name):
    from compiler.config import parse_shapes

    flags = COMPILABLE[name]
    return parse_shapes(flags[flags.index("--input-shapes") + 1]) if "--input-shapes" in flags else {}


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    """Each fixture compiled once (validation off: the check below is the validation here)."""
    from compiler import CompileConfig, OptimizeConfig, ValidateConfig, compile_model

    out = tmp_path_factory.mktemp("engines")
    built = {}
    for name in COMPILABLE:
        cfg = CompileConfig(optimize=OptimizeConfig(input_shapes=_shapes(name)), validate=ValidateConfig(enabled=False),
                            keep_intermediates=out / f"{name}.work")
        compile_model(FIXTURES / name, out / f"{name}.engine", cfg)
        built[name] = out / f"{name}.engine"
    return built


@pytest.fixture(scope="module")
def goldens(tmp_path_factory):
    out = tmp_path_factory.mktemp("goldens")
    # record runs a SavedModel in TensorFlow, with no ONNX graph to read index ranges from: a table input gets
    # its range the way a user gives it, --val-range.
    ranges = {"small_table": {"segment_ids": (0, 1), "token_ids": (0, 15)}}
    return {name: (record(FIXTURES / name, out / name, samples=2, shapes=_shapes(name), ranges=ranges.get(name)),
                   out / name) for name in COMPILABLE}


@pytest.mark.parametrize("name", list(COMPILABLE))
def test_record_then_check_every_fixture(name, engines, goldens):
    manifest, golden = goldens[name]
    assert manifest["model"]["kind"] == "saved_model" and manifest["backend"] == "tensorflow"
    assert manifest["precision"] == "fp32" and len(manifest["samples"]) == 2
    result = check(engines[name], golden)
    assert result["passed"], [(o["name"], o["max_abs"], o["detail"]) for o in result["outputs"]]
    assert {o["name"] for o in result["outputs"]} == {o["name"] for o in manifest["outputs"]}
    assert result["model_changed"]  # the engine is not the SavedModel that was recorded


def test_check_cli_table_json_junit(engines, goldens, tmp_path, capsys):
    _, golden = goldens["cnn_nhwc"]
    junit = tmp_path / "junit.xml"
    code, stdout, stderr = run_cli(capsys, "check", engines["cnn_nhwc"], "--golden", golden, "--junit", junit)
    assert code == 0, stderr
    assert "output_0  elementwise" in stdout and stdout.strip().endswith("check: passed")
    suite = ET.parse(junit).getroot()
    assert suite.get("tests") == "1" and suite.get("failures") == "0"
    code, stdout, _ = run_cli(capsys, "check", engines["cnn_nhwc"], "--golden", golden, "--json")
    data = json.loads(stdout)
    assert code == 0 and data["status"] == "passed" and data["samples"] == 2
    assert data["outputs"][0]["histogram"]["counts"]  # for the HTML report's plots


@pytest.fixture(scope="module")
def perturbed(engines, tmp_path_factory):
    """cnn_nhwc's optimized graph with one Conv weight scaled by 1.05, built into an onnxruntime artifact."""
    from compiler.api import build_engine

    work = engines["cnn_nhwc"].parent / "cnn_nhwc.work"
    model = onnx.load(str(work / "model.opt.onnx"))
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    weight = next(i for i in model.graph.initializer if i.name == conv.input[1])
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * 1.05, weight.name))
    out = tmp_path_factory.mktemp("perturbed")
    onnx.save(model, str(out / "changed.onnx"))
    build_engine(out / "changed.onnx", out / "changed.engine")
    return out / "changed.engine", out / "changed.onnx", conv.name


def test_a_changed_weight_fails_the_check(perturbed, goldens, tmp_path, capsys):
    engine, _, _ = perturbed
    _, golden = goldens["cnn_nhwc"]
    junit = tmp_path / "j.xml"
    code, stdout, stderr = run_cli(capsys, "check", engine, "--golden", golden, "--junit", junit)
    assert code == 1, stderr
    assert "REGRESSION" in stdout and "check: REGRESSION in output_0" in stdout
    suite = ET.parse(junit).getroot()
    assert suite.get("failures") == "1"
    assert "output_0 regressed" in suite.find("testcase/failure").get("message")


def test_localize_names_the_changed_node_on_the_golden_inputs(perturbed, engines, goldens):
    """The check above failed; localize, fed the recorded inputs, names the Conv whose weight changed."""
    from compiler.localize import localize

    _, changed, conv = perturbed
    original = engines["cnn_nhwc"].parent / "cnn_nhwc.work" / "model.opt.onnx"
    _, golden = goldens["cnn_nhwc"]
    feeds = [ins for ins, _ in read_golden(golden)[1]]
    found = localize(original, changed, feeds)
    first = found.to_json()["first_divergence"]
    assert not found and first["node"] == conv
    assert first["created_by"] in ("export", "fuse_into_conv")


def test_recording_an_engine_and_an_onnx_model(engines, tmp_path):
    """Goldens can come from any artifact; an fp16 ONNX graph records fp16 tolerances by itself."""
    manifest = record(engines["multi_io"], tmp_path / "g", shapes=_shapes("multi_io"), samples=3, seed=5)
    assert manifest["model"]["kind"] == detect_format(engines["multi_io"]) and manifest["seed"] == 5
    assert check(engines["multi_io"], tmp_path / "g")["passed"]
    from compiler import OptimizeConfig, PrecisionConfig, ValidateConfig, lower_precision

    work = engines["cnn_nhwc"].parent / "cnn_nhwc.work"
    lower_precision(work / "model.opt.onnx", tmp_path / "h.onnx", OptimizeConfig(), PrecisionConfig(mode="fp16"),
                    ValidateConfig())
    manifest = record(tmp_path / "h.onnx", tmp_path / "h", samples=2)
    assert manifest["precision"] == "fp16" and manifest["tolerances"] == {"atol": 1e-2, "rtol": 1e-2}


def test_val_range_and_data_forms(tmp_path):
    manifest = record(FIXTURES / "uint8_image", tmp_path / "g", samples=2, ranges={"image": (0, 255)})
    ins, _ = read_golden(tmp_path / "g")[1][0]
    assert ins["image"].dtype == np.uint8 and ins["image"].max() > 8  # not the default 0..8 integer range
    assert manifest["inputs_source"] == "2 random samples (seed 0)"
    data = tmp_path / "data"
    data.mkdir()
    np.save(data / "a.npy", np.full((1, 32, 32, 3), 7, np.uint8))
    manifest = record(FIXTURES / "uint8_image", tmp_path / "h", inputs=str(data))
    assert len(manifest["samples"]) == 1 and str(data) in manifest["inputs_source"]


def test_damaged_and_mismatched_goldens_are_refused(engines, goldens, tmp_path, capsys):
    import shutil

    _, golden = goldens["cnn_nhwc"]
    cases = {}
    for case in ("no_manifest", "bad_json", "wrong_format", "truncated", "missing_sample"):
        copy = tmp_path / case
        shutil.copytree(golden, copy)
        cases[case] = copy
    (cases["no_manifest"] / "manifest.json").unlink()
    (cases["bad_json"] / "manifest.json").write_text("{not json")
    m = json.loads((cases["wrong_format"] / "manifest.json").read_text())
    (cases["wrong_format"] / "manifest.json").write_text(json.dumps(m | {"format": "something/9"}))
    data = (cases["truncated"] / "0001.npz").read_bytes()
    (cases["truncated"] / "0001.npz").write_bytes(data[: len(data) // 2])
    (cases["missing_sample"] / "0000.npz").unlink()
    expected = {"no_manifest": "has no manifest.json", "bad_json": "is not valid JSON",
                "wrong_format": "has format 'something/9'", "truncated": "does not match its sha256",
                "missing_sample": "'0000.npz' listed in the manifest is missing"}
    for case, match in expected.items():
        code, _, stderr = run_cli(capsys, "check", engines["cnn_nhwc"], "--golden", cases[case])
        assert code == 11 and match in stderr and stderr.count("\n") == 1, (case, stderr)
    code, _, stderr = run_cli(capsys, "check", engines["cnn_nhwc"], "--golden", tmp_path / "absent")
    assert code == 11 and "does not exist" in stderr
    _, other = goldens["multi_io"]
    with pytest.raises(GoldenError, match="recorded for inputs scale, x, but .* takes image"):
        check(engines["cnn_nhwc"], other)
    code, _, stderr = run_cli(capsys, "record", FIXTURES / "cnn_nhwc", "--golden", golden)
    assert code == 11 and "--force" in stderr  # an existing recording is never overwritten silently
    from compiler.regress import parse_compare

    with pytest.raises(ConfigError, match="not NAME:MODE"):
        parse_compare(["output_0:fuzzy"])


def test_compare_modes_match_sets_not_order():
    rng = np.random.default_rng(0)
    idx = np.stack([rng.permutation(50)[:10] for _ in range(3)]).astype(np.int32)
    shuffled = np.stack([rng.permutation(row) for row in idx])
    assert not compare_output("i", [idx], [shuffled], "elementwise", 0, 0)["passed"]
    as_sets = compare_output("i", [idx], [shuffled], "indices", 0, 0)
    assert as_sets["passed"] and as_sets["detail"].startswith("3 of 3 row(s)")
    other = shuffled.copy()
    other[1, 0] = 99
    assert not compare_output("i", [idx], [other], "indices", 0, 0)["passed"]

    boxes = rng.uniform(0, 1, (1, 16, 4)).astype(np.float32)
    reordered = boxes[:, rng.permutation(16)] + 1e-6
    assert not compare_output("b", [boxes], [reordered], "elementwise", 1e-4, 1e-3)["passed"]
    assert compare_output("b", [boxes], [reordered], "boxes", 1e-4, 1e-3)["passed"]
    moved = reordered.copy()
    moved[0, 3] += 0.2
    result = compare_output("b", [boxes], [moved], "boxes", 1e-4, 1e-3)
    assert not result["passed"] and result["max_abs"] == pytest.approx(0.2, abs=0.05)
    with pytest.raises(ConfigError, match="needs an output of boxes"):
        compare_output("b", [idx], [idx], "boxes", 0, 0)
    assert not compare_output("s", [boxes], [boxes[:, :8]], "elementwise", 1, 1)["passed"]  # shape changed


def test_compare_modes_on_a_real_nms_recording(engines, goldens):
    _, golden = goldens["combined_nms"]
    result = check(engines["combined_nms"], golden, compare={"nmsed_boxes": "boxes"})
    assert result["passed"]
    assert {o["name"]: o["compare"] for o in result["outputs"]}["nmsed_boxes"] == "boxes"


def test_junit_xml_escapes_and_counts():
    result = {"artifact": "a<b>.engine", "golden": "g&h", "seconds": 1.0,
              "outputs": [{"name": 'x"1', "passed": False, "max_abs": 1.0, "max_rel": 2.0, "atol": 0.1, "rtol": 0.1,
                           "detail": "<boom>", "histogram": None},
                          {"name": "y", "passed": True}]}
    root = ET.fromstring(junit_xml(result))
    assert root.get("tests") == "2" and root.get("failures") == "1"
    assert root.find("testcase/failure").get("message").startswith('x"1 regressed against g&h')


def test_golden_files_are_plain_npz(goldens):
    _, golden = goldens["multi_io"]
    files = sorted(Path(golden).glob("*.npz"))
    with np.load(files[0]) as data:
        assert {k.split(":")[0] for k in data.files} == {"in", "out"}


def test_check_html_on_a_real_regression(perturbed, goldens, tmp_path, capsys):
    import os
    import stat

    engine, _, _ = perturbed
    _, golden = goldens["cnn_nhwc"]
    page = tmp_path / "check.html"
    old = os.umask(0o022)
    try:
        code, stdout, _ = run_cli(capsys, "check", engine, "--golden", golden, "--html", page)
    finally:
        os.umask(old)
    assert code == 1 and f"html: {page}" in stdout
    text = page.read_text()
    assert "output_0" in text and text.count("<img") == 1 and "https://" not in text
    assert "failed" in text.lower()
    assert stat.S_IMODE(page.stat().st_mode) == 0o644  # as a plain open() would make it, not mkstemp's 0600
