"""Every evaluation the tool starts is bounded in time (--validate-timeout) and memory (size caps).

Before: a Loop with 2^62 iterations hung compile, validate, run, localize and --check-each-pass; a
177-byte ConstantOfShape of 6.4 GB made folding allocate it; huge --input-shapes and --batch ended in
MemoryError tracebacks; an Expand to 320 GB at validation was an internal error. Every case runs under an
address-space limit (guards.limited_cli), so a regression fails the case instead of exhausting the machine.
"""
from __future__ import annotations

import json

import pytest

import onnx_cases as cases
from corpus import assert_clean_failure, leftovers
from guards import assert_no_library_logs, limited_cli

TIMEOUT = ["--validate-timeout", "1"]
HANG = 90  # seconds after which a case counts as a hang (the budget is 1 s per evaluation)
LOW_RSS = 1536 << 20  # what a run of these tiny models may reach


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("bounded")
    builders = {"loop": cases.endless_loop, "loop_fold": lambda: cases.endless_loop(foldable=True),
                "big_fill": cases.huge_constant_of_shape, "big_expand": cases.huge_expand,
                "dynamic": cases.dynamic_relu, "batch": cases.batch_relu, "relu": cases.relu}
    return {name: cases.save(make(), root / f"{name}.onnx") for name, make in builders.items()}


def _run(*args, memory=3 << 30):
    result, rss = limited_cli(*args, memory=memory, timeout=HANG)
    assert result.code != -9, f"hung: {args}"
    return result, rss


def _clean(result, workdir, code, stage, *needles):
    line = assert_clean_failure(result, code, stage, *needles)
    assert_no_library_logs(result)
    assert leftovers(workdir) == []
    return line


LOOP_CASES = {  # command -> (args after the model, exit code, stage)
    "compile": (["{out}/m.engine", "--backend", "onnxruntime"], 7, "validate"),
    # OpenVINO's compile may run the Loop (then the build is stopped) or leave it to run time (then validation is)
    "compile-openvino": (["{out}/m.engine", "--backend", "openvino"], None, None),
    "validate": (["{model}"], 7, "validate"),
    "run": ([], 9, "run"),
    "bench": (["--warmup", "0", "--iterations", "1"], 9, "run"),
    "record": (["--golden", "{out}/golden", "--samples", "1"], 9, "run"),
    "localize": (["{model}"], 7, "validate"),
    "optimize-check-each-pass": (["{out}/m.opt.onnx", "--check-each-pass"], 5, "optimize"),
    "compile-check-each-pass": (["{out}/m.engine", "--check-each-pass"], 5, "optimize"),
    "compile-int8": (["{out}/m.engine", "--precision", "int8", "--calib-samples", "1"], 10, "precision"),
    "compile-auto-mixed": (["{out}/m.engine", "--precision", "fp16", "--auto-mixed"], 10, "precision"),
}


@pytest.mark.parametrize("case", sorted(LOOP_CASES))
def test_endless_loop_times_out(models, workdir, case):
    rest, code, stage = LOOP_CASES[case]
    command = case.split("-")[0]
    args = [a.format(out=workdir, model=models["loop"]) for a in rest]
    args = ([] if command == "compile" else [command]) + [models["loop"], *args, *TIMEOUT]
    result, _ = _run(*args)
    if code is None:  # either stage may be the one that runs it: whichever it is stops it
        code, stage = (6, "build") if result.code == 6 else (7, "validate")
    _clean(result, workdir, code, stage, "longer than 1 s", "--validate-timeout")
    assert not (workdir / "m.engine").exists() and not (workdir / "golden").exists()


def test_endless_constant_loop_is_left_unfolded(models, workdir):
    """Folding gives up on the Loop after the budget (not folding is safe); the pass stats say so."""
    out = workdir / "m.opt.onnx"
    result, _ = _run("optimize", models["loop_fold"], out, *TIMEOUT)
    assert result.code == 0, result.err[-2000:]
    assert_no_library_logs(result)
    assert out.exists() and leftovers(workdir) == []


def test_endless_constant_loop_compile(models, workdir):
    result, _ = _run(models["loop_fold"], workdir / "m.engine", "--backend", "onnxruntime", *TIMEOUT)
    _clean(result, workdir, 7, "validate", "longer than 1 s")


@pytest.mark.parametrize("model, extra, needles", [
    ("loop_fold", TIMEOUT, ["OpenVINO's compile ran longer than 1 s", "--validate-timeout"]),
    ("big_fill", [], ["OpenVINO ran out of memory"]),
    ("big_expand", [], ["OpenVINO ran out of memory"])])
def test_openvino_build_is_bounded(models, workdir, model, extra, needles):
    """OpenVINO evaluates constant subgraphs while it compiles: its compile runs in a child process, stopped at
    the budget, and a failed allocation there is a one-line build error."""
    result, _ = _run(models[model], workdir / "m.engine", "--backend", "openvino", *extra)
    _clean(result, workdir, 6, "build", *needles)


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon"])
def test_bad_timeout_values(models, workdir, value):
    result, _ = _run(models["relu"], workdir / "m.engine", "--validate-timeout", value)
    _clean(result, workdir, 2, "config", "--validate-timeout")


def test_huge_constant_is_not_folded(models, workdir):
    """optimize leaves the 6.4 GB ConstantOfShape unfolded, says so in the stats, and stays small."""
    out = workdir / "m.opt.onnx"
    result, rss = _run("optimize", models["big_fill"], out, "--passes", "infer_shapes,fold_constants")
    assert result.code == 0, result.err[-2000:]
    assert rss < LOW_RSS, rss
    assert out.stat().st_size < 100_000 and leftovers(workdir) == []
    assert_no_library_logs(result)


def test_huge_constant_compile(models, workdir):
    """compile refuses to run the model at validation (6.4 GB tensor), before allocating it."""
    result, rss = _run(models["big_fill"], workdir / "m.engine", "--report", workdir / "r.json", "--backend",
                       "onnxruntime")
    _clean(result, workdir, 7, "validate", "'big'", "GB")
    assert rss < LOW_RSS, rss
    stats = [p["stats"] for p in json.loads((workdir / "r.json").read_text())["passes"]
             if p["name"] == "fold_constants"]
    assert any("big" in json.dumps(s) for s in stats), stats


@pytest.mark.parametrize("command", ["compile", "validate", "run"])
def test_huge_expand_at_evaluation(models, workdir, command):
    model = models["big_expand"]
    args = {"compile": [model, workdir / "m.engine", "--backend", "onnxruntime"], "validate": ["validate", model, model],
            "run": ["run", model]}[command]
    result, rss = _run(*args)
    code, stage = (9, "run") if command == "run" else (7, "validate")
    _clean(result, workdir, code, stage, "'wide'", "GB")
    assert rss < LOW_RSS, rss


FEED_CASES = {  # name -> (args; {model} is replaced)
    "compile-input-shapes": ["{dynamic}", "{out}/m.engine", "--input-shapes", "x:2x100000000x8"],
    "validate-input-shapes": ["validate", "{dynamic}", "{dynamic}", "--input-shapes", "x:2x100000000x8"],
    "run-input-shapes": ["run", "{dynamic}", "--input-shapes", "x:2x100000000x8"],
    "bench-batch": ["bench", "{batch}", "--batch", "100000000"],
    "run-batch": ["run", "{batch}", "--batch", "1000000000"],
    "record-batch": ["record", "{batch}", "--golden", "{out}/golden", "--batch", "100000000"],
    "localize-input-shapes": ["localize", "{dynamic}", "{dynamic}", "--input-shapes", "x:2x100000000x8"],
    "compile-batch": ["{batch}", "{out}/m.engine", "--batch", "1000000000"],
}


@pytest.mark.parametrize("case", sorted(FEED_CASES))
def test_huge_feeds_are_refused(models, workdir, case):
    args = [a.format(out=workdir, **{k: str(v) for k, v in models.items()}) for a in FEED_CASES[case]]
    result, rss = _run(*args)
    _clean(result, workdir, 2, "config", "GB", "x")
    assert rss < LOW_RSS, rss
