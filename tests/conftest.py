from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
GOLDEN = FIXTURES / "golden"

# fixture name -> extra compile flags it needs
COMPILABLE = {
    "cnn_nhwc": [],
    "multi_io": ["--input-shapes", "x:2x5x8,scale:2x1"],
}


def golden(name: str) -> tuple[dict, dict]:
    data = np.load(GOLDEN / f"{name}.npz")
    ins = {k[3:]: data[k] for k in data.files if k.startswith("in:")}
    outs = {k[4:]: data[k] for k in data.files if k.startswith("out:")}
    return ins, outs


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """Run the CLI in-process (TensorFlow is imported once per test session)."""
    from compiler.cli import main

    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="session")
def exported(tmp_path_factory) -> dict[str, Path]:
    """Each compilable fixture exported once to ONNX with the real tf2onnx."""
    from compiler.api import export_model

    d = tmp_path_factory.mktemp("exported")
    return {name: export_model(FIXTURES / name, d / f"{name}.onnx").path for name in COMPILABLE}


def ort_run(model: onnx.ModelProto | Path, feed: dict) -> dict:
    import onnxruntime as ort

    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feed)))


def tensorrt_available() -> tuple[bool, str]:
    from compiler.backends.tensorrt import availability

    return availability()
