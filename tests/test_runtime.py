from __future__ import annotations

import pytest

from compiler.errors import RunError
from compiler.runtime import ONNX_MODEL, ORT_FORMAT, TENSORRT_PLAN, detect_format, load
from tests.conftest import tensorrt_available


@pytest.fixture(scope="module")
def ort_artifact(tmp_path_factory, exported):
    from compiler.backends import onnxruntime as ort_backend

    out = tmp_path_factory.mktemp("rt") / "cnn.engine"
    ort_backend.build(exported["cnn_nhwc"], out)
    return out


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


def test_plan_without_tensorrt_says_what_to_install(tmp_path):
    ok, _ = tensorrt_available()
    if ok:
        pytest.skip("TensorRT is available here")
    plan = tmp_path / "x.engine"
    plan.write_bytes(b"ftrt" + bytes(64))
    with pytest.raises(RunError, match="TensorRT cannot run here.*--backend onnxruntime"):
        load(plan)
