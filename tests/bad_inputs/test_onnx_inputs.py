"""Bad ONNX (and SavedModel) inputs are blamed on the input, at inspect (exit 3), naming what is wrong.

Before: most of these got "the passes produced an invalid model" (exit 5), raw onnxruntime text blaming a
pass at build (exit 6), or a traceback (a cycle). Each case also checks that no onnxruntime or Polygraphy
log line leaks onto the terminal.
"""
from __future__ import annotations

import pytest

import onnx_cases as cases
from corpus import assert_clean_failure, cli, leftovers
from guards import assert_no_library_logs

# name -> (builder or raw bytes, words the error line must hold)
BAD_ONNX = {
    "empty": (b"", ["is empty"]),
    "garbage": (b"hello, not a model\n", ["is not an ONNX model"]),
    "opset1": (lambda: cases.relu(opset=1), ["opset 1", "supported"]),
    "opset99": (lambda: cases.relu(opset=99), ["opset 99", "supported"]),
    "unknown_op": (cases.unknown_op, ["FrobnicateTensor", "'frob'"]),
    "custom_domain": (cases.custom_domain_op, ["com.example", "'plugin'"]),
    "no_outputs": (cases.no_outputs, ["no outputs"]),
    "duplicate_tensor": (cases.duplicate_tensor, ["'t'"]),
    "duplicate_input": (cases.duplicate_input, ["'x'", "input"]),
    "cycle": (cases.cycle, ["cycle"]),
    "undefined_input": (cases.undefined_input, ["'ghost'"]),
    "wrong_attribute": (cases.wrong_attribute, ["color"]),
}


@pytest.fixture(scope="module")
def bad_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_onnx")
    for name, (make, _) in BAD_ONNX.items():
        path = root / f"{name}.onnx"
        if isinstance(make, bytes):
            path.write_bytes(make)
        else:
            cases.save(make(), path)
    cases.save(cases.relu(), root / "good.onnx")
    empty_sm = root / "empty_saved_model"
    empty_sm.mkdir()
    (empty_sm / "saved_model.pb").write_bytes(b"")
    return root


def _check(result, workdir, needles, code=3, stage="inspect"):
    assert_clean_failure(result, code, stage, *needles)
    assert_no_library_logs(result)
    assert leftovers(workdir) == []


@pytest.mark.parametrize("name", sorted(BAD_ONNX))
def test_inspect_blames_the_input(bad_dir, workdir, name):
    _check(cli("inspect", bad_dir / f"{name}.onnx"), workdir, BAD_ONNX[name][1])


@pytest.mark.parametrize("name", ["empty", "opset1", "custom_domain", "no_outputs", "duplicate_input", "cycle"])
def test_compile_blames_the_input(bad_dir, workdir, name):
    result = cli(bad_dir / f"{name}.onnx", workdir / "out.engine")
    _check(result, workdir, BAD_ONNX[name][1])
    assert not (workdir / "out.engine").exists()


@pytest.mark.parametrize("name", ["opset99", "unknown_op", "duplicate_tensor", "undefined_input"])
def test_optimize_blames_the_input(bad_dir, workdir, name):
    result = cli("optimize", bad_dir / f"{name}.onnx", workdir / "out.onnx")
    _check(result, workdir, BAD_ONNX[name][1])
    assert not (workdir / "out.onnx").exists()


@pytest.mark.parametrize("name", ["garbage", "wrong_attribute", "duplicate_input"])
def test_validate_blames_the_input(bad_dir, workdir, name):
    result = cli("validate", bad_dir / f"{name}.onnx", bad_dir / "good.onnx")
    _check(result, workdir, BAD_ONNX[name][1])


@pytest.mark.parametrize("command", ["inspect", "compile"])
def test_empty_saved_model_pb(bad_dir, workdir, command):
    args = ["inspect", bad_dir / "empty_saved_model"] if command == "inspect" else \
        [bad_dir / "empty_saved_model", workdir / "out.engine"]
    _check(cli(*args), workdir, ["saved_model.pb", "is empty"])
