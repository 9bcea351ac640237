#!/usr/bin/env python3
"""Build the tiny, seeded SavedModels under fixtures/ and their golden outputs.

    python scripts/make_fixtures.py [--out fixtures]

Weights come from fixed seeds, so a rebuild gives the same numbers; the
SavedModel files themselves carry fresh object ids and fingerprints. Each
model's golden inputs/outputs (computed by TensorFlow) are written to
fixtures/golden/<name>.npz with keys ``in:<name>`` and ``out:<name>``.
"""
from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def cnn_nhwc(out: Path):
    """Keras 3 CNN, NHWC image input with a dynamic batch, exported with model.export()."""
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    probs = keras.layers.Dense(10, activation="softmax", name="probs")(x)
    model = keras.Model(inp, probs)
    # Give BatchNormalization non-trivial statistics so folding it is really exercised.
    bn = model.layers[2]
    rng = np.random.default_rng(0)
    gamma, beta, mean, var = bn.get_weights()
    bn.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.uniform(-0.2, 0.2, beta.shape),
                    rng.uniform(-0.1, 0.1, mean.shape), rng.uniform(0.5, 2.0, var.shape)])
    model.export(str(out), verbose=False)
    feed = {"image": rng.uniform(0, 1, (2, 32, 32, 3)).astype(np.float32)}
    return feed, "serving_default"


class MultiIO(tf.Module):
    """Two inputs (one with a dynamic sequence axis) → dict of float32 logits and an int64 argmax."""

    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(1)
        self.w = tf.Variable(rng.normal(0, 0.5, (8, 4)).astype(np.float32), name="w")
        self.b = tf.Variable(rng.normal(0, 0.1, (4,)).astype(np.float32), name="b")

    @tf.function(input_signature=[tf.TensorSpec([None, None, 8], tf.float32, name="x"),
                                  tf.TensorSpec([None, 1], tf.float32, name="scale")])
    def serve(self, x, scale):
        h = tf.nn.tanh(tf.einsum("bsf,fk->bsk", x, self.w) + self.b)
        logits = tf.reduce_mean(h, axis=1) * scale
        return {"logits": logits, "label": tf.argmax(logits, axis=-1, output_type=tf.int64)}


def multi_io(out: Path):
    m = MultiIO()
    tf.saved_model.save(m, str(out), signatures={"serving_default": m.serve})
    rng = np.random.default_rng(2)
    feed = {"x": rng.normal(0, 1, (2, 5, 8)).astype(np.float32), "scale": rng.uniform(0.5, 2, (2, 1)).astype(np.float32)}
    return feed, "serving_default"


class Unsupported(tf.Module):
    """Uses tf.math.lgamma, which tf2onnx 1.17 has no ONNX conversion for."""

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
    def serve(self, x):
        return {"y": tf.math.lgamma(tf.abs(x) + 1.0)}


def unsupported_op(out: Path):
    m = Unsupported()
    tf.saved_model.save(m, str(out), signatures={"serving_default": m.serve})
    return None, None


class WritesFile(tf.Module):
    """Its serving function writes a file (tf.io.write_file): the unsafe-op scan must refuse it."""

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
    def serve(self, x):
        tf.io.write_file("/tmp/tf2trt-fixture-was-executed", tf.strings.as_string(tf.reduce_sum(x)))
        return {"y": x * 2.0}


def unsafe_io(out: Path):
    m = WritesFile()
    tf.saved_model.save(m, str(out), signatures={"serving_default": m.serve})
    return None, None


FIXTURES = {"cnn_nhwc": cnn_nhwc, "multi_io": multi_io, "unsupported_op": unsupported_op, "unsafe_io": unsafe_io}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "fixtures")
    args = ap.parse_args()
    golden = args.out / "golden"
    golden.mkdir(parents=True, exist_ok=True)
    for name, make in FIXTURES.items():
        target = args.out / name
        shutil.rmtree(target, ignore_errors=True)
        feed, signature = make(target)
        if feed is not None:
            fn = tf.saved_model.load(str(target)).signatures[signature]
            outputs = {k: v.numpy() for k, v in fn(**{k: tf.constant(v) for k, v in feed.items()}).items()}
            np.savez(golden / f"{name}.npz", **{f"in:{k}": v for k, v in feed.items()},
                     **{f"out:{k}": v for k, v in outputs.items()})
        size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
        print(f"{name}: {target} ({size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
