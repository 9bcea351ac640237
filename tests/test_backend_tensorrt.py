"""The TensorRT backend's pure half, which runs everywhere: option mapping, parser-error explanation with the
pass that created each node, the engine-inspector summary, BuildConfig checks, and the CLI without TensorRT.
(tests/test_tensorrt.py builds real plans where TensorRT and a GPU are present.)"""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import onnx
import pytest

from compiler.backends.tensorrt import (HARDWARE_LEVELS, ParserIssue, config_options, explain_parser_errors,
                                        parser_failure, resolve_enums, summarize_layers)
from compiler.config import BuildConfig
from compiler.errors import ConfigError
from tests.conftest import FIXTURES, run_cli, tensorrt_available


def test_config_options_map_each_flag_and_leave_defaults_to_tensorrt(tmp_path):
    assert config_options(BuildConfig()) == {"profiling_verbosity": "DETAILED"}
    cache = tmp_path / "tc.bin"
    cfg = BuildConfig(workspace_mib=512, builder_opt_level=5, hardware_compatibility="ampere+",
                      version_compatible=True, exclude_lean_runtime=True, timing_cache=cache)
    opts = config_options(cfg)
    assert opts["memory_pool_limits"] == {"WORKSPACE": 512 * 2**20}
    assert opts["builder_optimization_level"] == 5
    assert opts["hardware_compatibility_level"] == "AMPERE_PLUS"
    assert opts["version_compatible"] is True and opts["exclude_lean_runtime"] is True
    assert "load_timing_cache" not in opts  # nothing to load yet: the build starts an empty cache and saves it
    cache.write_bytes(b"cache")
    assert config_options(cfg)["load_timing_cache"] == str(cache)
    assert config_options(BuildConfig(builder_opt_level=0))["builder_optimization_level"] == 0  # 0 is a level


def test_resolve_enums_takes_tensorrt_members_by_name():
    fake = SimpleNamespace(MemoryPoolType=SimpleNamespace(WORKSPACE="POOL"),
                           HardwareCompatibilityLevel=SimpleNamespace(**{v: f"HW_{v}" for v in HARDWARE_LEVELS.values()}),
                           ProfilingVerbosity=SimpleNamespace(DETAILED="VERB"))
    opts = config_options(BuildConfig(workspace_mib=1, hardware_compatibility="same-compute-capability"))
    out = resolve_enums(opts, fake)
    assert out["memory_pool_limits"] == {"POOL": 2**20}
    assert out["hardware_compatibility_level"] == "HW_SAME_COMPUTE_CAPABILITY"
    assert out["profiling_verbosity"] == "VERB"
    assert opts["memory_pool_limits"] == {"WORKSPACE": 2**20}  # the input is left as it was


@pytest.mark.parametrize("kwargs, match", [
    ({"exclude_lean_runtime": True}, "needs --version-compatible"),
    ({"builder_opt_level": 6}, "0..5"),
    ({"workspace_mib": 0}, "at least 1 MiB"),
    ({"hardware_compatibility": "turing+"}, "unknown hardware compatibility"),
    ({"profile_strategy": "fastest"}, "unknown profile strategy"),
    ({"profile_data": "samples/"}, "--profile-data needs --profile-strategy"),
    ({"plugins": (Path("/nonexistent/libplugin.so"),)}, "does not exist"),
])
def test_build_config_refusals(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        BuildConfig(**kwargs)


def test_build_config_lists_the_tensorrt_only_options_it_sets():
    from compiler.profiles import parse_profiles

    cfg = BuildConfig(workspace_mib=64, profiles=parse_profiles(["x:1x2"], [], ["x:4x2"]), version_compatible=True)
    assert cfg.tensorrt_only() == ["--workspace", "--min/--max-shapes", "--version-compatible"]
    assert BuildConfig().tensorrt_only() == []
    with pytest.raises(ConfigError, match="both define the optimization profiles"):
        BuildConfig(profiles=cfg.profiles, profile_strategy="range")


@pytest.fixture(scope="module")
def topk_optimized(tmp_path_factory, exported):
    """topk_large after the default passes: its TopK with K > 3840 was split by rewrite_tensorrt."""
    from compiler.api import optimize_model

    out = tmp_path_factory.mktemp("trt") / "topk.opt.onnx"
    optimize_model(exported["topk_large"], out)
    return onnx.load(str(out))


@pytest.mark.tf
def test_parser_errors_name_the_node_and_the_pass_that_created_it(topk_optimized):
    from passes import provenance

    model = topk_optimized
    origin = provenance(model)
    made = next(i for i, n in enumerate(model.graph.node) if origin.get(n.name) == "rewrite_tensorrt")
    exported = next(i for i, n in enumerate(model.graph.node) if n.name not in origin)
    issues = [ParserIssue("UNSUPPORTED_NODE", "No importer registered for op: TopK", node=made),  # no name given
              ParserIssue("INVALID_NODE", "bad  attribute\nvalue", node=exported,
                          node_name=model.graph.node[exported].name, op=model.graph.node[exported].op_type),
              ParserIssue("INVALID_GRAPH", "graph has no outputs")]
    explained = explain_parser_errors(issues, model)
    first, second, third = explained
    assert first["node"] == model.graph.node[made].name and first["op"] == model.graph.node[made].op_type
    assert first["created_by"] == "rewrite_tensorrt" and first["node_index"] == made
    assert second["created_by"] == "export"  # made by the exporter, before any pass
    assert third["node"] is None and third["created_by"] is None and third["node_index"] is None
    line = parser_failure(explained, limit=2)
    assert "\n" not in line and line.startswith("TensorRT's ONNX parser rejected 3 error(s)")
    assert f"{first['node']} ({first['op']}, from rewrite_tensorrt): No importer registered" in line
    assert "bad attribute value" in line  # whitespace collapsed to one line
    assert "and 1 more (see the report's error.details)" in line
    json.dumps(explained)  # goes into the report as it is


def test_summarize_layers_reads_tensorrt_10_and_11_inspector_json():
    trt10 = [{"Name": "conv1", "LayerType": "CaskConvolution",
              "Outputs": [{"Name": "a", "Format/Datatype": "Channel major FP16 format where channel % 8 == 0"}]},
             {"Name": "q", "LayerType": "Scale",
              "Outputs": [{"Name": "b", "Format/Datatype": "Row major linear Int8 format"}]},
             {"Name": "bf", "LayerType": "Reformat",
              "Outputs": [{"Name": "c", "Format/Datatype": "Row major linear BFloat16 format"}]},
             {"Name": "out", "LayerType": "Reformat",
              "Outputs": [{"Name": "d", "Format/Datatype": "Row major linear FP32"}]}]
    trt11 = [{"Name": "mm", "LayerType": "gemm", "Outputs": [{"Name": "e", "Datatype": "Half", "Format": "Row major"}]},
             {"Name": "shape", "LayerType": "Shape", "Outputs": []}]
    s = summarize_layers(trt10 + trt11)
    assert s["layers"] == 6
    assert s["layer_types"] == {"Reformat": 2, "CaskConvolution": 1, "Scale": 1, "gemm": 1, "Shape": 1}
    assert s["layer_precisions"] == {"fp16": 2, "int8": 1, "bf16": 1, "fp32": 1, "unknown": 1}
    assert summarize_layers(["conv1", "relu1"]) == {"layers": 2}  # names only: no guessing


@pytest.mark.tf
def test_provenance_survives_precision_and_the_onnxruntime_artifact(tmp_path, capsys):
    """The pass that created a node is recorded in the model, and kept by the precision stage and the ORT build,
    so every later error can name it."""
    import onnxruntime as ort

    from passes import PROVENANCE_KEY, provenance

    out = tmp_path / "t.engine"
    code, _, err = run_cli(capsys, FIXTURES / "topk_large", out, "--precision", "fp16", "--keep-intermediates",
                           tmp_path / "work", "--quiet", "--backend", "onnxruntime")
    assert code == 0, err
    opt = provenance(onnx.load(str(tmp_path / "work" / "model.opt.onnx")))
    fp16 = provenance(onnx.load(str(tmp_path / "work" / "model.fp16.onnx")))
    assert opt and set(opt.values()) == {"rewrite_tensorrt"}
    assert {k: v for k, v in fp16.items() if k in opt} == opt  # the precision passes kept what was recorded
    so = ort.SessionOptions()
    so.add_session_config_entry("session.load_model_format", "ORT")
    meta = ort.InferenceSession(str(out), so, providers=["CPUExecutionProvider"]).get_modelmeta()
    assert PROVENANCE_KEY in meta.custom_metadata_map


_OK, _WHY = tensorrt_available()


@pytest.mark.skipif(_OK, reason="TensorRT is available here: the real backend is tested in tests/test_tensorrt.py")
@pytest.mark.tf
def test_tensorrt_backend_without_tensorrt_is_one_clear_line(tmp_path, capsys):
    out = tmp_path / "x.engine"
    code, stdout, stderr = run_cli(capsys, FIXTURES / "cnn_nhwc", out, "--backend", "tensorrt")
    assert code == 6
    line = stderr.strip().splitlines()[-1]
    assert line.startswith("error: build: the TensorRT backend cannot run here") or \
        line.startswith("error: build: TensorRT's ONNX parser would reject")
    assert "--backend onnxruntime" in line and "Traceback" not in stderr
    assert not out.exists()


@pytest.mark.tf
def test_build_subcommand_derives_profiles_and_says_what_onnxruntime_ignores(tmp_path, capsys, exported):
    """`build` on CPU: the profile strategy runs on real samples and is checked; the onnxruntime artifact
    records the profiles a TensorRT build would use and names the options it ignored."""
    import numpy as np

    data = tmp_path / "samples"
    data.mkdir()
    for i, b in enumerate((1, 4, 2)):
        np.savez(data / f"s{i}.npz", x=np.zeros((b, 6, 8), np.float32), scale=np.ones((b, 1), np.float32))
    out = tmp_path / "m.engine"
    code, stdout, stderr = run_cli(capsys, "build", exported["multi_io"], out, "--backend", "onnxruntime",
                                   "--profile-strategy", "range", "--profile-data", data,
                                   "--timing-cache", tmp_path / "tc.bin")
    assert code == 0, stderr
    assert "profiles: range over 3 sample(s)" in stdout
    assert "profile 0: scale: 1x1 / 4x1 / 4x1; x: 1x6x8 / 4x6x8 / 4x6x8" in stdout
    assert "ignored by this backend: --profile-strategy, --timing-cache" in stdout
    assert not (tmp_path / "tc.bin").exists()  # onnxruntime has no timing cache: nothing written
    bad = tmp_path / "bad"
    bad.mkdir()
    np.savez(bad / "s.npz", x=np.zeros((1, 6, 9), np.float32), scale=np.ones((1, 1), np.float32))
    code, _, stderr = run_cli(capsys, "build", exported["multi_io"], out, "--backend", "onnxruntime",
                              "--profile-strategy", "optimal", "--profile-data", bad)
    assert code == 2 and "has shape [1, 6, 9]" in stderr
