"""compiler.limits: the time budget stops a running onnxruntime evaluation; the size caps and their arithmetic."""
from __future__ import annotations

import inspect
import math
import sys
import time
from pathlib import Path

import numpy as np
import onnx_graphsurgeon as gs
import pytest

from compiler import limits
from compiler.errors import ConfigError, ValidationError

sys.path.insert(0, str(Path(__file__).parent / "bad_inputs"))
import onnx_cases  # noqa: E402  (the corpus's model builders)


def _loop_session():
    import onnxruntime as ort

    return ort.InferenceSession(onnx_cases.endless_loop().SerializeToString(), providers=["CPUExecutionProvider"])


def test_budget_stops_a_running_loop():
    feed = {"x": np.zeros((1, 4), np.float32)}
    start = time.perf_counter()
    with limits.time_budget(0.3), pytest.raises(limits.EvaluationTimeout, match="longer than 0.3 s"):
        limits.run_bounded(_loop_session(), None, feed, "the loop")
    assert time.perf_counter() - start < 10


def test_bounded_session_raises_the_stage_error():
    session = limits.BoundedSession(_loop_session(), "'loop.onnx'", ValidationError)
    with limits.time_budget(0.3), pytest.raises(ValidationError, match="'loop.onnx' ran longer than"):
        session.run(None, {"x": np.zeros((1, 4), np.float32)})


def test_bounded_session_refuses_a_huge_tensor_before_running():
    model = onnx_cases.huge_expand()
    import onnxruntime as ort

    session = limits.BoundedSession(ort.InferenceSession(model.SerializeToString(),
                                                         providers=["CPUExecutionProvider"]),
                                    "'expand.onnx'", ValidationError, model)
    with pytest.raises(ValidationError, match="tensor 'wide'.*320.0 GB"):
        session.run(None, {"x": np.zeros((1, 4), np.float32)})


@pytest.mark.parametrize("value", [0, -1, math.nan, math.inf, "x", None])
def test_timeout_must_be_a_positive_finite_number(value):
    with pytest.raises(ConfigError, match="--validate-timeout"):
        limits.check_timeout(value)


def test_feed_cap():
    from compiler.artifacts import TensorSpec

    x = TensorSpec("x", "float32", (None, 8))
    limits.check_feed((x,), {"x": (1024, 8)})
    with pytest.raises(ConfigError, match="input 'x' is 100000000x8"):
        limits.check_feed((x,), {"x": (100_000_000, 8)})


def test_sizes_and_caps():
    assert limits.tensor_bytes((2, 3), 4) == 24 and limits.tensor_bytes((2, -1), 4) is None
    assert limits.human(6_400_000_000) == "6.4 GB"
    cap, why = limits.memory_cap(1 << 60)
    assert cap < 1 << 60 and why != "the cap"


def test_graphsurgeon_folding_still_takes_no_run_options():
    """bounded_sessions swaps onnxruntime.InferenceSession because graphsurgeon calls ``sess.run(names, {})``
    with no run options; when it accepts them (or a timeout), use that instead and drop the swap."""
    source = inspect.getsource(gs.Graph.fold_constants)
    assert "sess.run(names, {})" in source and "run_options" not in source


def test_bounded_sessions_record_a_timeout_and_restore_the_class():
    import onnxruntime as ort

    original = ort.InferenceSession
    with limits.time_budget(0.3), limits.bounded_sessions("folding") as stopped:
        session = ort.InferenceSession(onnx_cases.endless_loop().SerializeToString(),
                                       providers=["CPUExecutionProvider"])
        with pytest.raises(limits.EvaluationTimeout):
            session.run(None, {"x": np.zeros((1, 4), np.float32)})
    assert len(stopped) == 1 and ort.InferenceSession is original
