"""Tolerances are finite and >= 0 wherever they are accepted, and the comparison counts NaN (and infinity) as a
mismatch unless both sides hold the same one at the same place: a NaN tolerance must never turn a failing seam
into "ok"."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from corpus import assert_clean_failure, cli, leftovers
from models import add_model, save, scaled_model, unary_model


@pytest.fixture(scope="module")
def onnx_models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tol")
    made = {"add": save(add_model(), root / "add.onnx"), "shifted": save(add_model(np.full(4, 1.5)), root / "s.onnx"),
            "nan": save(scaled_model(float("nan")), root / "nan.onnx"),
            "inf": save(scaled_model(float("inf")), root / "inf.onnx"),
            "ninf": save(scaled_model(float("-inf")), root / "ninf.onnx"),
            "sqrt": save(unary_model("Sqrt"), root / "sqrt.onnx")}
    result = cli("record", made["add"], "--golden", root / "golden", "--samples", "2")
    assert result.code == 0, result.err
    made["golden"] = root / "golden"
    result = cli("record", made["nan"], "--golden", root / "nan_golden", "--samples", "2")
    assert result.code == 0, result.err
    made["nan_golden"] = root / "nan_golden"
    return made


COMMANDS = {
    "compile": lambda m, w: [m["add"], w / "out.engine"],
    "validate": lambda m, w: ["validate", m["add"], m["shifted"]],
    "record": lambda m, w: ["record", m["add"], "--golden", w / "g"],
    "check": lambda m, w: ["check", m["shifted"], "--golden", m["golden"]],
    "localize": lambda m, w: ["localize", m["add"], m["shifted"]],
    "optimize": lambda m, w: ["optimize", m["add"], w / "o.onnx", "--check-each-pass"],
}


@pytest.mark.parametrize("command, flag, value", [
    *((c, "--atol", "nan") for c in COMMANDS),
    ("validate", "--rtol", "nan"), ("compile", "--atol", "-1"), ("check", "--atol", "inf"),
    ("record", "--rtol", "-inf"), ("localize", "--rtol", "1e999"),
])
def test_tolerance_flags_must_be_finite_and_not_negative(onnx_models, workdir, command, flag, value):
    result = cli(*COMMANDS[command](onnx_models, workdir), f"{flag}={value}")  # "=": argparse takes -inf for a flag
    assert_clean_failure(result, 2, "config", flag.lstrip("-"), "finite")
    assert leftovers(workdir) == [] and not any(workdir.glob("out.engine*")) and not (workdir / "g").exists()


@pytest.mark.parametrize("key, value", [("atol", "NaN"), ("rtol", -1), ("atol", "0.1")])
def test_golden_manifest_tolerances_must_be_finite_numbers(onnx_models, workdir, key, value):
    copy = workdir / "golden"
    shutil.copytree(onnx_models["golden"], copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["tolerances"][key] = float(value) if value == "NaN" else value
    (copy / "manifest.json").write_text(json.dumps(manifest))
    result = cli("check", onnx_models["shifted"], "--golden", copy)
    assert_clean_failure(result, 11, "golden", key, "finite")


def test_nan_where_the_reference_is_finite_fails_validation(onnx_models):
    result = cli("validate", onnx_models["add"], onnx_models["nan"], "--atol", "1e30", "--rtol", "1e30")
    assert_clean_failure(result, 7, "validate", "nan")


def test_finite_where_the_reference_is_nan_fails_validation(onnx_models):
    result = cli("validate", onnx_models["nan"], onnx_models["add"], "--atol", "1e30", "--rtol", "1e30")
    assert_clean_failure(result, 7, "validate")


def test_opposite_infinities_fail_validation(onnx_models):
    result = cli("validate", onnx_models["inf"], onnx_models["ninf"], "--val-range=0.5,1")
    assert_clean_failure(result, 7, "validate")


@pytest.mark.parametrize("model, value_range", [("nan", "-1,1"), ("sqrt", "-1,-0.5"), ("inf", "0.5,1")])
def test_the_same_nan_or_inf_at_the_same_place_passes_and_says_so(onnx_models, model, value_range):
    result = cli("validate", onnx_models[model], onnx_models[model], f"--val-range={value_range}")
    assert result.code == 0 and "Traceback" not in result.err, result.err[-2000:]
    assert "validation: passed" in result.out
    assert "WARNING" in result.out and ("nan" in result.out.lower() or "inf" in result.out.lower()), result.out


def test_compile_of_an_all_nan_model_passes_with_a_warning(onnx_models, workdir):
    result = cli(onnx_models["nan"], workdir / "out.engine")
    assert result.code == 0 and "Traceback" not in result.err, result.err[-2000:]
    assert "nan" in result.out.lower() and "WARNING" in result.out
    assert leftovers(workdir) == []


def test_check_against_a_nan_golden(onnx_models, workdir):
    same = cli("check", onnx_models["nan"], "--golden", onnx_models["nan_golden"])
    assert same.code == 0 and "check: passed" in same.out, same.err[-2000:]
    assert "nan" in same.out.lower()
    regressed = cli("check", onnx_models["add"], "--golden", onnx_models["nan_golden"], "--atol", "1e30",
                    "--rtol", "1e30")
    assert regressed.code == 1 and "REGRESSION" in regressed.out and "Traceback" not in regressed.err
