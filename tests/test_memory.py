"""Per-stage peak resident memory (``stages.<name>.peak_rss_mb``): the sampler, and real compiles of a tiny and a
bigger model."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest

from compiler import compile_model
from compiler.common.memory import PeakSampler, high_water_bytes
from tests.conftest import FIXTURES

MIB = 1024 * 1024

needs_proc = pytest.mark.skipif(high_water_bytes() is None, reason="no /proc/self/status (not Linux)")


@needs_proc
def test_a_span_that_allocates_peaks_above_one_that_does_not():
    with PeakSampler(interval_s=0.001) as peaks:
        peaks.start()
        block = np.ones(300 * MIB, dtype=np.uint8)  # touched: resident
        del block
        allocating = peaks.stop()
        peaks.start()
        quiet = peaks.stop()
    # the first span saw the 300 MiB (exactly, by the high-water mark, or sampled); the second, only what remained
    assert allocating - quiet >= 290, (allocating, quiet)
    assert 0 < quiet < allocating


@needs_proc
def test_a_span_below_an_earlier_peak_is_sampled():
    """After a 400 MiB peak, a span holding 150 MiB is seen by the sampler thread, not by the high-water mark."""
    with PeakSampler(interval_s=0.001) as peaks:
        peaks.start()
        big = np.ones(400 * MIB, dtype=np.uint8)
        del big
        peaks.stop()
        peaks.start()
        base = peaks.stop()
        peaks.start()
        small = np.ones(150 * MIB, dtype=np.uint8)

        time.sleep(0.05)  # several sampling intervals
        del small
        sampled = peaks.stop()
    assert 140 <= sampled - base <= 200, (base, sampled)


def _wide_dense(path, width: int, layers: int):
    """A SavedModel of ``layers`` Dense layers ``width``×``width`` (float32, seeded weights)."""
    import tensorflow as tf

    rng = np.random.default_rng(0)

    class Wide(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = [tf.Variable((rng.standard_normal((width, width), dtype=np.float32) / np.float32(np.sqrt(width))))
                      for _ in range(layers)]

        @tf.function(input_signature=[tf.TensorSpec([1, width], tf.float32, name="x")])
        def __call__(self, x):
            for w in self.w:
                x = tf.nn.relu(tf.matmul(x, w))
            return {"y": x}

    module = Wide()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.__call__})
    return width * width * layers * 4


@pytest.mark.tf
def test_stage_peaks_grow_with_the_weights(tmp_path):
    """Every stage that ran has a plausible peak; a model with 128 MiB of weights peaks at least that much above a
    fixture with kilobytes of weights in the stages that hold them (export, optimize, validate)."""
    weights = _wide_dense(tmp_path / "wide", 4096, 2)
    peaks = {}
    for name, model in (("small", FIXTURES / "cnn_nhwc"), ("wide", tmp_path / "wide")):
        compile_model(model, tmp_path / f"{name}.engine")
        stages = json.loads((tmp_path / f"{name}.engine.report.json").read_text())["stages"]
        assert stages["precision"]["peak_rss_mb"] is None  # skipped: nothing ran
        ran = {k: v["peak_rss_mb"] for k, v in stages.items() if v["status"] == "ok"}
        assert all(100 < mb < 16384 for mb in ran.values()), ran
        peaks[name] = ran
    for stage in ("export", "optimize", "validate"):
        assert peaks["wide"][stage] - peaks["small"][stage] >= weights / MIB, (stage, peaks)
