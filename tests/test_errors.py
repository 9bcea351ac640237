"""Bad input: one line naming stage, cause and fix; distinct exit code; no traceback; no engine written."""
from __future__ import annotations

import os
import shutil

import pytest

from compiler.errors import ALL_ERRORS
from tests.conftest import FIXTURES, run_cli


def test_exit_codes_are_distinct():
    codes = [e.exit_code for e in ALL_ERRORS]
    assert len(codes) == len(set(codes))


def _fails(capsys, tmp_path, *args, code, stage, words):
    out = tmp_path / "out.engine"
    got, stdout, stderr = run_cli(capsys, *[a if a != "OUT" else out for a in args])
    assert got == code, stderr
    err_lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(err_lines) == 1 and err_lines[0].startswith(f"error: {stage}: ") and "; fix: " in err_lines[0]
    for w in words:
        assert w in err_lines[0]
    assert "Traceback" not in stderr
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    return err_lines[0]


def test_missing_path(capsys, tmp_path):
    _fails(capsys, tmp_path, tmp_path / "nope", "OUT", code=3, stage="inspect", words=["does not exist"])


def test_directory_that_is_not_a_saved_model(capsys, tmp_path):
    line = _fails(capsys, tmp_path, FIXTURES, "OUT", code=3, stage="inspect", words=["no saved_model.pb"])
    assert "did you mean" in line


def test_keras_file_that_is_not_a_zip_is_explained(capsys, tmp_path):
    k = tmp_path / "m.keras"
    k.write_bytes(b"PK")
    _fails(capsys, tmp_path, k, "OUT", code=3, stage="inspect", words=["Keras", "cannot load"])


@pytest.mark.tf
def test_unknown_signature_lists_available(capsys, tmp_path):
    _fails(capsys, tmp_path, FIXTURES / "cnn_nhwc", "OUT", "--signature", "predict", code=3, stage="inspect",
           words=["'predict' not found", "serve, serving_default"])


@pytest.mark.tf
def test_unknown_tag_lists_available(capsys, tmp_path):
    _fails(capsys, tmp_path, FIXTURES / "cnn_nhwc", "OUT", "--tag", "train", code=3, stage="inspect",
           words=["tag 'train'", "serve"])


@pytest.mark.tf
def test_op_tf2onnx_cannot_convert_names_op_and_node(capsys, tmp_path):
    line = _fails(capsys, tmp_path, FIXTURES / "unsupported_op", "OUT", code=4, stage="export",
                  words=["Lgamma", "node '"])
    assert "Lgamma" in line


@pytest.mark.tf
def test_dynamic_dims_need_input_shapes(capsys, tmp_path):
    _fails(capsys, tmp_path, FIXTURES / "multi_io", "OUT", code=3, stage="inspect",
           words=["dynamic dimensions", "--input-shapes x:1xNx8"])


@pytest.mark.parametrize("spec, words", [("x:2xfivex8", ["'five'"]), ("x2x5x8", ["no 'name:'"])])
def test_malformed_input_shapes(capsys, tmp_path, spec, words):
    _fails(capsys, tmp_path, FIXTURES / "multi_io", "OUT", "--input-shapes", spec, code=2, stage="config",
           words=words)


@pytest.mark.tf
def test_input_shapes_for_unknown_input(capsys, tmp_path):
    _fails(capsys, tmp_path, FIXTURES / "cnn_nhwc", "OUT", "--input-shapes", "img:1x32x32x3", code=2,
           stage="config", words=["'img'", "inputs are: image"])


def test_unwritable_output(capsys, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o500)
    try:
        if os.access(ro, os.W_OK) and os.geteuid() == 0:  # root ignores modes: use a path under a file instead
            target = tmp_path / "file"
            target.write_text("")
            args = (FIXTURES / "cnn_nhwc", target / "x.engine")
        else:
            args = (FIXTURES / "cnn_nhwc", ro / "x.engine")
        code, _, stderr = run_cli(capsys, *args)
        assert code == 8 and stderr.startswith("error: output: cannot write engine")
        assert "Traceback" not in stderr
    finally:
        os.chmod(ro, 0o700)


def test_missing_output_directory(capsys, tmp_path):
    code, _, stderr = run_cli(capsys, FIXTURES / "cnn_nhwc", tmp_path / "no" / "dir" / "x.engine")
    assert code == 8 and "does not exist" in stderr and "mkdir -p" in stderr


def test_unknown_flag_is_a_config_error(capsys, tmp_path):
    _fails(capsys, tmp_path, FIXTURES / "cnn_nhwc", "OUT", "--frobnicate", code=2, stage="config",
           words=["--frobnicate"])


def test_backend_tensorrt_without_tensorrt(capsys, tmp_path):
    from tests.conftest import tensorrt_available

    ok, _ = tensorrt_available()
    if ok:
        pytest.skip("TensorRT is available here; the missing-TensorRT message cannot be provoked")
    _fails(capsys, tmp_path, FIXTURES / "cnn_nhwc", "OUT", "--backend", "tensorrt", code=6, stage="build",
           words=["TensorRT backend cannot run here", "--backend onnxruntime"])


@pytest.mark.tf
def test_failed_validation_leaves_no_engine_but_a_failed_report(capsys, tmp_path):
    """An absurd tolerance of 0 fails the TF seam (different kernels); nothing but the report remains."""
    _fails(capsys, tmp_path, FIXTURES / "cnn_nhwc", "OUT", "--atol", "0", "--rtol", "0", code=7, stage="validate",
           words=["differs from"])
    import json

    report = json.loads((tmp_path / "out.engine.report.json").read_text())
    assert report["status"] == "failed" and report["error"]["stage"] == "validate"
    assert report["stages"]["validate"]["status"] == "failed"


@pytest.mark.tf
def test_corrupt_saved_model(capsys, tmp_path):
    bad = tmp_path / "bad_model"
    shutil.copytree(FIXTURES / "cnn_nhwc", bad)
    (bad / "saved_model.pb").write_bytes(b"\x00garbage\xff" * 10)
    _fails(capsys, tmp_path, bad, "OUT", code=3, stage="inspect", words=["not a valid SavedModel"])
