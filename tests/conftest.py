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
    # Fixtures that each hit a restriction of TensorRT's ONNX parser (fixtures/README.md says which).
    "topk_large": [],
    "einsum": [],
    "uint8_image": [],
    "depth_to_space": [],
    "combined_nms": [],
    "nms": [],
    "resize_modes": [],
    "scatter_nd": [],
    "control_flow": [],
    "dtypes": [],
    # Fixtures for the failure classes real models hit (issue 16; fixtures/README.md says which).
    "keras_argmax": [],
    "small_table": [],
    "dynamic_reshape": [],
    "shared_const_cast": [],
    # A CNN trained on scikit-learn's digits, with held-out images and labels (fixtures/digits_data.npz).
    "digits": [],
}


def fixture_input_shapes(name: str) -> dict[str, tuple[int, ...]]:
    """The shapes a fixture runs with: its golden inputs' shapes, else its --input-shapes flag (or none)."""
    from compiler.config import parse_shapes

    path = GOLDEN / f"{name}.npz"
    if path.is_file():
        data = np.load(path)
        return {k[3:]: tuple(data[k].shape) for k in data.files if k.startswith("in:")}
    flags = COMPILABLE[name]
    return parse_shapes(flags[flags.index("--input-shapes") + 1]) if "--input-shapes" in flags else {}


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


class _Exported(dict):
    """fixture name -> its ONNX export, made on first use and kept for the session."""

    def __init__(self, directory: Path):
        super().__init__()
        self.directory = directory

    def __missing__(self, name: str) -> Path:
        from compiler.api import export_model

        self[name] = export_model(FIXTURES / name, self.directory / f"{name}.onnx").path
        return self[name]


@pytest.fixture(scope="session")
def exported(tmp_path_factory) -> dict[str, Path]:
    """Each compilable fixture exported to ONNX with the real tf2onnx, once, when a test first asks for it."""
    return _Exported(tmp_path_factory.mktemp("exported"))


def ort_run(model: onnx.ModelProto | Path, feed: dict) -> dict:
    import onnxruntime as ort

    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feed)))


def tensorrt_available() -> tuple[bool, str]:
    from compiler.backends.tensorrt import availability

    return availability()


def _find_chromium() -> str | None:
    import shutil

    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of a Chromium binary for headless rendering tests. Where none is installed, install Debian's
    `chromium` package when we can (root with apt-get; `apt-get update` only if the first install fails), so the
    README's test command works on a fresh CI machine; otherwise skip, saying exactly why."""
    import shutil
    import subprocess

    found = _find_chromium()
    if found:
        return found
    if not shutil.which("apt-get"):
        pytest.skip("chromium is not installed and there is no apt-get to install it (install Chromium by hand)")
    if os.geteuid() != 0:
        pytest.skip("chromium is not installed and installing it needs root: "
                    "sudo apt-get install -y --no-install-recommends chromium")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    log = []
    for step in ([install], [["apt-get", "update"], install]):
        for cmd in step:
            try:
                done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
            except subprocess.TimeoutExpired:
                log.append(f"`{' '.join(cmd)}` took more than 900 s")
                break
            log.append(f"`{' '.join(cmd)}` exited {done.returncode}: {(done.stderr or done.stdout).strip()[-300:]}")
            if done.returncode:
                break
        found = _find_chromium()
        if found:
            return found
    pytest.skip("chromium is not installed and apt-get could not install it: " + " | ".join(log))


def assert_outputs_match(got: dict, expected: dict, atol: float = 1e-4, rtol: float = 1e-3):
    """``got`` has exactly ``expected``'s outputs, with their shapes; integers and booleans equal, floats within
    ``atol``/``rtol`` (default: the tf→onnx seam's tolerance, for goldens recorded from TensorFlow)."""
    assert set(got) == set(expected)
    for name, want in expected.items():
        have = np.asarray(got[name])
        assert have.shape == want.shape, name
        if want.dtype.kind in "iub":
            np.testing.assert_array_equal(have, want, err_msg=name)
        else:
            np.testing.assert_allclose(have.astype(np.float64), want, atol=atol, rtol=rtol, err_msg=name)
