"""Triton model repository entries: config.pbtxt parsed back with Triton's model-config protobuf (tritonclient)."""
from __future__ import annotations

import pytest

from compiler.errors import OutputError
from compiler.triton import DEFAULT_MAX_BATCH, config_text, write_model
from tests.conftest import FIXTURES, run_cli

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
text_format = pytest.importorskip("google.protobuf.text_format")


def _parse(text: str):
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def _io(mode, name, dtype, shape, profiles=None):
    return {"mode": mode, "name": name, "dtype": dtype, "shape": shape, **({"profiles": profiles} if profiles else {})}


def test_tensorrt_plan_batches_up_to_what_every_profile_allows():
    engine = {"format": "tensorrt-plan", "io": [
        _io("input", "image", "float16", [-1, 3, 224, 224],
            [[[1, 3, 224, 224], [8, 3, 224, 224], [16, 3, 224, 224]], [[1, 3, 224, 224], [4, 3, 224, 224],
                                                                        [32, 3, 224, 224]]]),
        _io("input", "ids", "int32", [-1, 6], [[[1, 6], [8, 6], [16, 6]], [[1, 6], [2, 6], [24, 6]]]),
        _io("output", "scores", "float32", [-1, 1000]), _io("output", "label", "int64", [-1])]}
    cfg = _parse(config_text("resnet", engine))
    assert (cfg.name, cfg.platform, cfg.max_batch_size, cfg.default_model_filename) == \
        ("resnet", "tensorrt_plan", 24, "model.plan")
    assert [(t.name, t.data_type, list(t.dims)) for t in cfg.input] == [
        ("image", model_config_pb2.TYPE_FP16, [3, 224, 224]), ("ids", model_config_pb2.TYPE_INT32, [6])]
    assert [(t.name, t.data_type, list(t.dims)) for t in cfg.output] == [
        ("scores", model_config_pb2.TYPE_FP32, [1000]), ("label", model_config_pb2.TYPE_INT64, [])]
    assert cfg.HasField("dynamic_batching")


def test_static_or_data_dependent_shapes_have_no_batch_dimension():
    engine = {"format": "onnxruntime-ort", "io": [_io("input", "boxes", "float32", [64, 4]),
                                                   _io("output", "selected", "int32", [-1])]}
    cfg = _parse(config_text("nms", engine))
    assert cfg.max_batch_size == 0 and not cfg.HasField("dynamic_batching")
    assert [list(t.dims) for t in cfg.input] == [[64, 4]] and [list(t.dims) for t in cfg.output] == [[-1]]
    engine["io"][1]["shape"] = [-1, 3]  # outputs batched but the input is not: still no batch dimension
    assert _parse(config_text("nms", engine)).max_batch_size == 0


def test_unsupported_engines_and_types_are_one_line_errors(tmp_path):
    with pytest.raises(OutputError, match="no Triton platform for engine format 'onnx'"):
        config_text("m", {"format": "onnx", "io": [_io("input", "x", "float32", [1])]})
    with pytest.raises(OutputError, match="OpenVINO engine .*--backend onnxruntime"):
        config_text("m", {"format": "openvino-blob", "io": [_io("input", "x", "float32", [1])]})
    with pytest.raises(OutputError, match="dtype complex64"):
        config_text("m", {"format": "tensorrt-plan", "io": [_io("input", "x", "complex64", [1])]})
    assert not list(tmp_path.iterdir())


def test_compile_writes_a_repository_entry(tmp_path, capsys):
    out = tmp_path / "cnn_nhwc.engine"
    code, stdout, stderr = run_cli(capsys, FIXTURES / "cnn_nhwc", out, "--quiet", "--triton-repo", tmp_path / "repo",
                                   "--backend", "onnxruntime")
    assert code == 0, stderr
    entry = tmp_path / "repo" / "cnn_nhwc"
    assert f"triton: {entry}" in stdout
    cfg = _parse((entry / "config.pbtxt").read_text())
    assert (cfg.platform, cfg.max_batch_size) == ("onnxruntime_onnx", DEFAULT_MAX_BATCH)
    assert (entry / "1" / "model.onnx").read_bytes() == out.read_bytes()
    write_model(tmp_path / "repo", "cnn_nhwc", out, {"engine": {"format": "onnxruntime-ort",  # replaced whole
                                                                "io": [_io("input", "x", "float32", [2])]}})
    assert [t.name for t in _parse((entry / "config.pbtxt").read_text()).input] == ["x"]
    assert sorted(p.name for p in (tmp_path / "repo").iterdir()) == ["cnn_nhwc"]  # no temp or old directory


def test_compile_refuses_an_openvino_engine_for_triton_before_the_work(tmp_path, capsys):
    out = tmp_path / "cnn_nhwc.engine"
    code, _, stderr = run_cli(capsys, FIXTURES / "cnn_nhwc", out, "--triton-repo", tmp_path / "repo",
                              "--backend", "openvino")
    assert code == 2 and stderr.startswith("error: config: --triton-repo cannot take an OpenVINO engine")
    assert "--backend onnxruntime" in stderr and not out.exists() and not (tmp_path / "repo").exists()
