"""runtime: load any artifact, adapt feeds to it, `run` and `bench` (library and CLI), on real compiled artifacts."""
from __future__ import annotations

import json

import numpy as np
import pytest

from compiler.artifacts import TensorSpec
from compiler.errors import ConfigError, RunError
from compiler.interface import Interface
from compiler.runtime import (ONNX_MODEL, ORT_FORMAT, TENSORRT_PLAN, BenchResult, benchmark, detect_format, load,
                              prepare_feed, run)
from tests.conftest import (COMPILABLE, FIXTURES, GOLDEN, assert_outputs_match, golden, ort_run, run_cli,
                            tensorrt_available)

# The goldens come from TensorFlow: the tolerance of the compile's tf→onnx seam.
ATOL, RTOL = 1e-4, 1e-3


@pytest.fixture(scope="module")
def ort_artifact(tmp_path_factory, exported):
    from compiler.backends import onnxruntime as ort_backend

    out = tmp_path_factory.mktemp("rt") / "cnn.engine"
    ort_backend.build(exported["cnn_nhwc"], out)
    return out


def _compile(out, model, *flags):
    from compiler.cli import main

    code = main([str(model), str(out), "--backend", "onnxruntime", *map(str, flags), "--quiet"])
    assert code == 0, f"compiling {model} {flags} failed ({code})"
    return out


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """Every compilable fixture compiled with the real pipeline (the onnxruntime backend; OpenVINO's runs are in
    test_backend_openvino.py), once."""
    d = tmp_path_factory.mktemp("artifacts")
    return {name: _compile(d / f"{name}.engine", FIXTURES / name, *flags) for name, flags in COMPILABLE.items()}


@pytest.fixture(scope="module")
def variants(tmp_path_factory):
    """cnn_nhwc (and depth_to_space) built with the options that change what an artifact takes or returns."""
    d = tmp_path_factory.mktemp("variants")
    cnn = FIXTURES / "cnn_nhwc"
    return {
        "fp16": _compile(d / "fp16.engine", cnn, "--precision", "fp16"),
        "int8": _compile(d / "int8.engine", cnn, "--precision", "int8"),
        "fp16_io": _compile(d / "fp16io.engine", cnn, "--precision", "fp16", "--fp16-io"),
        "nchw": _compile(d / "nchw.engine", cnn, "--inputs-as-nchw", "image"),
        "d2s_nchw": _compile(d / "d2s.engine", FIXTURES / "depth_to_space", "--inputs-as-nchw", "x",
                             "--outputs-as-nchw", "y"),
    }


def _assert_matches(got: dict, expected: dict, atol=ATOL, rtol=RTOL):
    assert_outputs_match(got, expected, atol, rtol)


def _one_line_error(err: str, stage: str):
    assert err.startswith(f"error: {stage}:"), err
    assert err.count("\n") == 1 and "Traceback" not in err, err


# ---------------------------------------------------------------- detection and loading


@pytest.mark.tf
def test_detects_formats_by_content(ort_artifact, exported, tmp_path):
    assert detect_format(ort_artifact) == ORT_FORMAT
    assert detect_format(exported["cnn_nhwc"]) == ONNX_MODEL
    renamed = tmp_path / "model.plan"  # the name does not matter, only the bytes
    renamed.write_bytes(ort_artifact.read_bytes())
    assert detect_format(renamed) == ORT_FORMAT
    plan = tmp_path / "x.onnx"
    plan.write_bytes(b"ftrt" + bytes(64))
    assert detect_format(plan) == TENSORRT_PLAN


@pytest.mark.tf
def test_truncated_artifact_is_a_clear_error(ort_artifact, tmp_path):
    cut = tmp_path / "cut.engine"
    cut.write_bytes(ort_artifact.read_bytes()[: len(ort_artifact.read_bytes()) // 2])
    with pytest.raises(RunError, match="cannot load") as e:
        load(cut)
    assert "\n" not in str(e.value)


def test_foreign_and_missing_files(tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"GIF89a-not-a-model")
    with pytest.raises(RunError, match="is not a TensorRT plan"):
        detect_format(junk)
    with pytest.raises(RunError, match="does not exist"):
        detect_format(tmp_path / "absent")


def test_plan_without_tensorrt_says_what_to_install(tmp_path, capsys):
    ok, _ = tensorrt_available()
    if ok:
        pytest.skip("TensorRT is available here")
    plan = tmp_path / "x.engine"
    plan.write_bytes(b"ftrt" + bytes(64))
    with pytest.raises(RunError, match="TensorRT cannot run here.*--backend onnxruntime"):
        load(plan)
    with pytest.raises(RunError, match="TensorRT cannot run here"):
        load(plan, plugins=["libmyplugin.so"])
    code, _, err = run_cli(capsys, "run", plan)
    assert code == 9
    _one_line_error(err, "run")


@pytest.mark.tf
def test_runner_exposes_io_and_the_recorded_interface(artifacts, variants):
    r = load(variants["nchw"])
    assert (r.format, r.backend) == (ORT_FORMAT, "onnxruntime")
    assert [(t.name, t.dtype, t.shape) for t in r.inputs] == [("image", "float32", (None, 3, 32, 32))]
    assert [t.name for t in r.outputs] == ["output_0"]
    assert r.interface.inputs == {"image": {"perm": [0, 3, 1, 2]}}
    assert r.threads["intra_op_num_threads"] == 0 and r.threads["cpus"] >= 1
    assert not load(artifacts["cnn_nhwc"]).interface


# ---------------------------------------------------------------- run on every artifact


@pytest.mark.tf
@pytest.mark.parametrize("name", sorted(COMPILABLE))
def test_run_reproduces_the_goldens(name, artifacts, capsys, tmp_path):
    """`run --inputs golden.npz --outputs y.npz` on every fixture's artifact gives TensorFlow's outputs."""
    ins, outs = golden(name)
    feed = tmp_path / "x.npz"
    np.savez(feed, **ins)
    y = tmp_path / "y.npz"
    code, stdout, err = run_cli(capsys, "run", artifacts[name], "--inputs", feed, "--outputs", y, "--json")
    assert code == 0, err
    report = json.loads(stdout)
    assert report["format"] == ORT_FORMAT and report["backend"] == "onnxruntime"
    assert report["inputs"]["source"] == str(feed) and set(report["inputs"]["tensors"]) == set(ins)
    with np.load(y) as data:
        written = {k: data[k] for k in data.files}
    _assert_matches(written, outs)
    for k, v in written.items():  # the printed summary describes the written arrays
        s = report["outputs"][k]
        assert (s["dtype"], s["shape"]) == (v.dtype.name, list(v.shape))
        if v.size:
            assert s["min"] == pytest.approx(float(v.min())) and s["max"] == pytest.approx(float(v.max()))
            assert s["mean"] == pytest.approx(float(v.astype(np.float64).mean()), rel=1e-6, abs=1e-9)


@pytest.mark.tf
def test_run_text_output_and_golden_file_form(artifacts, capsys):
    """The fixtures' golden files (in:/out: keys) are accepted as they are; the text names every output."""
    code, stdout, err = run_cli(capsys, "run", artifacts["multi_io"], "--inputs", GOLDEN / "multi_io.npz",
                                "--plugins", "libnone.so")
    assert code == 0, err
    assert "its in: arrays" in stdout and "x float32 [2, 5, 8]" in stdout
    assert "note: --plugins ignored: onnxruntime needs no TensorRT plugins" in stdout
    _, outs = golden("multi_io")
    label_line = next(line for line in stdout.splitlines() if line.strip().startswith("label:"))
    assert f"int64 [2]  min {outs['label'].min()}  max {outs['label'].max()}" in label_line
    assert "logits: float32 [2, 4]  min" in stdout


@pytest.mark.tf
def test_run_random_inputs_match_the_exported_model(artifacts, exported, capsys, tmp_path):
    y = tmp_path / "y.npz"
    code, stdout, err = run_cli(capsys, "run", artifacts["multi_io"], "--input-shapes", "x:2x5x8,scale:2x1",
                                "--seed", 3, "--outputs", y)
    assert code == 0, err
    assert "inputs: random (seed 3): " in stdout
    from compiler.data import load_samples

    specs = load(artifacts["multi_io"]).inputs
    feed = load_samples(None, specs, {"x": (2, 5, 8), "scale": (2, 1)}, seed=3, random_count=1)[0]
    with np.load(y) as data:
        _assert_matches({k: data[k] for k in data.files}, ort_run(exported["multi_io"], feed), atol=1e-5, rtol=1e-4)


@pytest.mark.tf
def test_dynamic_dims_need_input_shapes(exported, capsys, tmp_path):
    from compiler.backends import onnxruntime as ort_backend

    art = ort_backend.build(exported["multi_io"], tmp_path / "dyn.engine").path  # x: [?, ?, 8], scale: [?, 1]
    code, _, err = run_cli(capsys, "run", art)
    assert code == 9 and "'x'" in err and "--input-shapes" in err
    _one_line_error(err, "run")
    y = tmp_path / "y.npz"
    code, stdout, err = run_cli(capsys, "run", art, "--input-shapes", "x:3x7x8,scale:3x1", "--outputs", y)
    assert code == 0, err
    assert "x float32 [3, 7, 8]" in stdout
    from compiler.data import load_samples

    feed = load_samples(None, load(art).inputs, {"x": (3, 7, 8), "scale": (3, 1)}, seed=0, random_count=1)[0]
    with np.load(y) as data:
        _assert_matches({k: data[k] for k in data.files}, ort_run(exported["multi_io"], feed), atol=1e-5, rtol=1e-4)


@pytest.mark.tf
def test_run_on_a_plain_onnx_model(exported, capsys):
    ins, outs = golden("cnn_nhwc")
    assert load(exported["cnn_nhwc"]).format == ONNX_MODEL
    code, stdout, err = run_cli(capsys, "run", exported["cnn_nhwc"], "--inputs", GOLDEN / "cnn_nhwc.npz", "--json")
    assert code == 0, err
    assert json.loads(stdout)["format"] == ONNX_MODEL
    _assert_matches(run(load(exported["cnn_nhwc"]), ins).outputs, outs)


# ---------------------------------------------------------------- precision and layout variants


@pytest.mark.tf
@pytest.mark.parametrize("variant, atol", [("fp16", 2e-3), ("int8", 2e-2)])
def test_run_reduced_precision_artifacts(variant, atol, variants):
    """fp16/int8 keep float32 IO: the golden feed runs as is, close to TensorFlow's outputs."""
    ins, outs = golden("cnn_nhwc")
    runner = load(variants[variant])
    assert runner.inputs[0].dtype == "float32"
    result = run(runner, ins)
    assert result.notes == ()
    _assert_matches(result.outputs, outs, atol=atol, rtol=0)
    assert np.abs(result.outputs["output_0"] - outs["output_0"]).max() > 0  # it really is a lower precision


@pytest.mark.tf
def test_fp16_io_casts_the_float32_feed_with_a_note(variants, capsys):
    ins, outs = golden("cnn_nhwc")
    runner = load(variants["fp16_io"])
    assert runner.inputs[0].dtype == "float16"
    result = run(runner, ins)
    assert "input 'image': cast float32 → float16, the artifact's dtype" in result.notes
    assert any("output 'output_0' is float16" in n for n in result.notes)
    assert result.outputs["output_0"].dtype == np.float16
    _assert_matches(result.outputs, outs, atol=2e-3, rtol=0)
    code, stdout, _ = run_cli(capsys, "run", variants["fp16_io"], "--inputs", GOLDEN / "cnn_nhwc.npz")
    assert code == 0 and "note: input 'image': cast float32 → float16" in stdout


@pytest.mark.tf
def test_nchw_artifact_takes_either_layout(variants, capsys, tmp_path):
    """--inputs-as-nchw: NHWC golden data is transposed for the artifact (with a note), NCHW data is used as is."""
    ins, outs = golden("cnn_nhwc")
    runner = load(variants["nchw"])
    nhwc = run(runner, ins)
    assert any("fed in the SavedModel's layout [?, 32, 32, 3], transposed by [0, 3, 1, 2]" in n for n in nhwc.notes)
    nchw = run(runner, {"image": ins["image"].transpose(0, 3, 1, 2)})
    assert nchw.notes == ()
    _assert_matches(nhwc.outputs, outs)
    np.testing.assert_array_equal(nhwc.outputs["output_0"], nchw.outputs["output_0"])
    np.save(tmp_path / "nchw.npy", ins["image"].transpose(0, 3, 1, 2))  # one .npy for a single-input artifact
    code, stdout, err = run_cli(capsys, "run", variants["nchw"], "--inputs", tmp_path / "nchw.npy")
    assert code == 0 and "note:" not in stdout, err
    code, stdout, err = run_cli(capsys, "run", variants["nchw"])  # random inputs come in the artifact's layout
    assert code == 0 and "image float32 [1, 3, 32, 32]" in stdout, err


@pytest.mark.tf
def test_outputs_come_back_in_the_layout_the_inputs_were_fed_in(variants):
    ins, outs = golden("depth_to_space")
    runner = load(variants["d2s_nchw"])
    assert runner.outputs[0].shape == (None, 16, 8, 8)
    nhwc = run(runner, ins)  # SavedModel layout in, SavedModel layout out
    assert any("output 'y': transposed back" in n for n in nhwc.notes)
    _assert_matches(nhwc.outputs, outs)
    nchw = run(runner, {"x": ins["x"].transpose(0, 3, 1, 2)})  # the artifact's layout in and out
    assert any("output 'y' is in the artifact's layout" in n for n in nchw.notes)
    _assert_matches(nchw.outputs, {"y": outs["y"].transpose(0, 3, 1, 2)})


@pytest.mark.tf
def test_float64_feed_is_cast_with_a_note(artifacts, capsys, tmp_path):
    ins, outs = golden("cnn_nhwc")
    result = run(load(artifacts["cnn_nhwc"]), {"image": ins["image"].astype(np.float64)})
    assert result.notes == ("input 'image': cast float64 → float32, the artifact's dtype",)
    _assert_matches(result.outputs, outs)
    # dtypes: the SavedModel's float64 input became float32 (TensorRT has no DOUBLE); its golden feed is float64
    code, stdout, err = run_cli(capsys, "run", artifacts["dtypes"], "--inputs", GOLDEN / "dtypes.npz")
    assert code == 0, err
    assert "note: input 'x': cast float64 → float32" in stdout
    assert "note: output 'y' is float32 (the SavedModel's is float64)" in stdout


# ---------------------------------------------------------------- feed errors (pure: prepare_feed)

IMAGE = (TensorSpec("image", "float32", (None, 3, 8, 8)),)
NCHW = Interface({"image": {"perm": [0, 3, 1, 2]}}, {})


def test_missing_and_unknown_inputs_are_named():
    specs = (TensorSpec("x", "float32", (2,)), TensorSpec("scale", "float32", (2,)))
    with pytest.raises(RunError, match=r"missing input\(s\) 'scale'; the artifact's inputs are: x, scale"):
        prepare_feed(specs, {"x": np.zeros(2, np.float32)})
    with pytest.raises(RunError, match=r"'scael' \(did you mean 'scale'\?\) is not an input of the artifact; "
                                       r"its inputs are: x, scale"):
        prepare_feed(specs, {"x": np.zeros(2, np.float32), "scael": np.zeros(2, np.float32)})
    with pytest.raises(RunError, match=r"^run: 'zzz' is not an input"):
        prepare_feed(specs, {"x": np.zeros(2, np.float32), "scale": np.zeros(2, np.float32), "zzz": 1})


def test_wrong_shape_names_input_got_and_expected():
    with pytest.raises(RunError, match=r"input 'image' has shape \[1, 8, 8, 4\] \(float32\) but the artifact takes "
                                       r"float32 \[\?, 3, 8, 8\]; fix: give 'image' an array of shape"):
        prepare_feed(IMAGE, {"image": np.zeros((1, 8, 8, 4), np.float32)})
    with pytest.raises(RunError, match=r"\(or \[\?, 8, 8, 3\] in the SavedModel's layout\)"):
        prepare_feed(IMAGE, {"image": np.zeros((1, 8, 8, 4), np.float32)}, NCHW)
    with pytest.raises(RunError, match="has shape"):  # rank differs
        prepare_feed(IMAGE, {"image": np.zeros((3, 8, 8), np.float32)})
    # dynamic dims fit any size
    assert prepare_feed(IMAGE, {"image": np.zeros((5, 3, 8, 8), np.float32)}).feed["image"].shape == (5, 3, 8, 8)


def test_dtype_rules():
    ints = (TensorSpec("ids", "int32", (3,)),)
    with pytest.raises(RunError, match="input 'image' has dtype int64 but the artifact takes float32"):
        prepare_feed(IMAGE, {"image": np.zeros((1, 3, 8, 8), np.int64)})
    with pytest.raises(RunError, match="input 'ids' has dtype float32 but the artifact takes int32"):
        prepare_feed(ints, {"ids": np.zeros(3, np.float32)})
    with pytest.raises(RunError, match=r"int64 values from 0 to 3000000000, which do not fit the artifact's int32"):
        prepare_feed(ints, {"ids": np.array([0, 1, 3_000_000_000])})
    fits = prepare_feed(ints, {"ids": np.array([0, 1, 7], np.int64)})
    assert fits.feed["ids"].dtype == np.int32 and fits.notes == ("input 'ids': cast int64 → int32",)
    half = (TensorSpec("x", "float16", (2,)),)
    with pytest.raises(RunError, match="1 value\\(s\\) beyond float16's range"):
        prepare_feed(half, {"x": np.array([1.0, 1e6], np.float32)})
    ok = prepare_feed(half, {"x": np.array([1.0, np.inf], np.float32)})  # inf stays inf: nothing was lost
    assert ok.feed["x"].dtype == np.float16
    with pytest.raises(RunError, match="holds strings or bytes, not numbers"):
        prepare_feed(half, {"x": np.array(["a", "b"])})


def test_layouts_are_consistent_and_ambiguity_prefers_the_artifact():
    two = (TensorSpec("a", "float32", (1, 3, 4, 4)), TensorSpec("b", "float32", (1, 3, 4, 4)))
    iface = Interface({"a": {"perm": [0, 3, 1, 2]}, "b": {"perm": [0, 3, 1, 2]}}, {})
    with pytest.raises(RunError, match="inputs are fed in two layouts: a in the SavedModel's, b in the artifact's"):
        prepare_feed(two, {"a": np.zeros((1, 4, 4, 3), np.float32), "b": np.zeros((1, 3, 4, 4), np.float32)}, iface)
    square = (TensorSpec("a", "float32", (1, 3, 3, 3)),)
    arr = np.arange(27, dtype=np.float32).reshape(1, 3, 3, 3)
    p = prepare_feed(square, {"a": arr}, Interface({"a": {"perm": [0, 3, 1, 2]}}, {}))
    np.testing.assert_array_equal(p.feed["a"], arr)
    assert "fits both" in p.notes[0] and p.mapping is None


@pytest.mark.tf
def test_cli_feed_errors_exit_9_in_one_line(artifacts, capsys, tmp_path):
    ins, _ = golden("multi_io")
    cases = {
        "missing": {"x": ins["x"]},
        "extra": {**ins, "sclae": ins["scale"]},
        "shape": {"x": ins["x"][:, :4], "scale": ins["scale"]},
        "dtype": {"x": ins["x"].astype(np.int32), "scale": ins["scale"]},
    }
    expected = {"missing": "missing input(s) 'scale'", "extra": "did you mean 'scale'",
                "shape": "input 'x' has shape [2, 4, 8]", "dtype": "input 'x' has dtype int32"}
    for case, feed in cases.items():
        np.savez(tmp_path / f"{case}.npz", **feed)
        code, stdout, err = run_cli(capsys, "run", artifacts["multi_io"], "--inputs", tmp_path / f"{case}.npz")
        assert code == 9 and expected[case] in err, (case, err)
        _one_line_error(err, "run")
        assert stdout == ""
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    code, _, err = run_cli(capsys, "run", artifacts["multi_io"], "--inputs", tmp_path / "bad.npz")
    assert code == 9 and "cannot be read" in err
    _one_line_error(err, "run")


@pytest.mark.tf
def test_cli_flag_and_output_errors(artifacts, capsys, tmp_path):
    art = artifacts["cnn_nhwc"]
    for args, stage, code_wanted in [
        (("bench", art, "--iterations", 0), "config", 2),
        (("bench", art, "--warmup", -1), "config", 2),
        (("bench", art, "--batch", 0), "config", 2),
        (("run", art, "--bogus"), "config", 2),
        (("run", art, "--inputs", GOLDEN / "cnn_nhwc.npz", "--input-shapes", "image:1x32x32x3"), "config", 2),
        (("run", art, "--input-shapes", "nope:1x2"), "config", 2),
        # checked before anything runs: the artifact does not even exist
        (("run", tmp_path / "absent.engine", "--outputs", tmp_path / "no" / "dir" / "y.npz"), "output", 8),
        (("bench", tmp_path / "absent.engine"), "run", 9),
    ]:
        code, _, err = run_cli(capsys, *args)
        assert code == code_wanted, (args, err)
        _one_line_error(err, stage)
    assert not list(tmp_path.iterdir())  # nothing half-written


# ---------------------------------------------------------------- bench


def _sane(result: dict, iterations: int, batch: int):
    lat = result["latency_ms"]
    assert result["iterations"] == iterations and result["batch"] == batch
    assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert lat["min"] <= lat["mean"] <= lat["max"]
    assert result["throughput_samples_per_s"] > 0
    assert result["throughput_samples_per_s"] == pytest.approx(batch * iterations / result["total_s"])
    assert result["measured"] == "host-to-host: feed copy, inference, output copy"


@pytest.mark.tf
def test_bench_json(artifacts, capsys):
    code, stdout, err = run_cli(capsys, "bench", artifacts["cnn_nhwc"], "--warmup", 2, "--iterations", 25, "--json")
    assert code == 0, err
    result = json.loads(stdout)
    _sane(result, 25, 1)
    assert result["warmup"] == 2 and result["format"] == ORT_FORMAT and result["inputs"] == "random (seed 0)"
    assert result["input_shapes"] == {"image": [1, 32, 32, 3]}
    assert result["threads"]["intra_op_num_threads"] == 0 and result["threads"]["cpus"] >= 1


@pytest.mark.tf
def test_bench_batch_sets_a_dynamic_batch_and_refuses_a_fixed_one(artifacts, capsys):
    code, stdout, err = run_cli(capsys, "bench", artifacts["cnn_nhwc"], "--batch", 4, "--warmup", 0,
                                "--iterations", 5, "--json")
    assert code == 0, err
    result = json.loads(stdout)
    assert result["input_shapes"] == {"image": [4, 32, 32, 3]}
    _sane(result, 5, 4)
    code, stdout, err = run_cli(capsys, "bench", artifacts["control_flow"], "--batch", 8)  # x: [2, 4]
    assert code == 9 and stdout == ""
    assert "the artifact has a fixed batch of 2 (input 'x' is [2, 4]), not 8" in err
    _one_line_error(err, "run")
    code, _, err = run_cli(capsys, "bench", artifacts["control_flow"], "--batch", 2, "--iterations", 2)
    assert code == 0, err


@pytest.mark.tf
def test_bench_text_with_inputs_in_the_savedmodel_layout(variants, capsys):
    code, stdout, err = run_cli(capsys, "bench", variants["nchw"], "--inputs", GOLDEN / "cnn_nhwc.npz",
                                "--warmup", 1, "--iterations", 10)
    assert code == 0, err
    assert "note: input 'image': fed in the SavedModel's layout" in stdout
    assert "measured: host-to-host: feed copy, inference, output copy; batch 2, 1 warm-up + 10 timed runs" in stdout
    assert "intra-op threads: onnxruntime default" in stdout
    lat = next(line for line in stdout.splitlines() if line.startswith("latency (ms):"))
    assert all(f" {k} " in lat for k in ("mean", "p50", "p90", "p99", "min", "max"))
    assert "samples/s" in stdout.splitlines()[-1]


@pytest.mark.tf
def test_benchmark_api(variants):
    ins, _ = golden("cnn_nhwc")
    runner = load(variants["nchw"])
    result = benchmark(runner, ins, warmup=0, iterations=4)
    assert isinstance(result, BenchResult)
    _sane(result.to_json(), 4, 2)
    assert result.input_shapes == {"image": (2, 3, 32, 32)}  # what the artifact ran on, after the transpose
    assert any("SavedModel's layout" in n for n in result.notes)
    with pytest.raises(ConfigError, match="--iterations must be at least 1"):
        benchmark(runner, ins, iterations=0)
    with pytest.raises(RunError, match="missing input"):
        benchmark(runner, {})
