#!/usr/bin/env python3
"""Build the tiny, seeded SavedModels under fixtures/ and their golden outputs.

    python scripts/make_fixtures.py [--out fixtures] [--only NAME,...]

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


# --- Fixtures that exercise the TensorRT rewrites: each hits one restriction of TensorRT's ONNX parser. ---


def _save(module: tf.Module, out: Path) -> None:
    tf.saved_model.save(module, str(out), signatures={"serving_default": module.serve})


class TopKLarge(tf.Module):
    """top_k with K = 4000, above TensorRT's TopK limit of 3840."""

    @tf.function(input_signature=[tf.TensorSpec([1, 5000], tf.float32, name="x")])
    def serve(self, x):
        values, indices = tf.math.top_k(x, k=4000)
        return {"values": values, "indices": indices}


def topk_large(out: Path):
    _save(TopKLarge(), out)
    # A permutation of distinct values: no ties, so the order of the indices is unambiguous.
    rng = np.random.default_rng(10)
    feed = {"x": (rng.permutation(5000).astype(np.float32) / 5000.0 - 0.5)[None, :]}
    return feed, "serving_default"


class Einsums(tf.Module):
    """Attention-style contractions that stay ONNX Einsum after tf2onnx.

    tf2onnx 1.17's einsum_optimizer decomposes every equation it can into
    Transpose/Reshape/MatMul, but it cannot parse '...'; on that error it rolls
    back its whole rewrite of the graph, so the ellipsis equation here keeps all
    four Einsum nodes (without it none survives). 'bhqk,kd->bhqd' with a constant
    is left out: tf2onnx's Einsum converter itself turns '...ik,kj->...ij' with a
    constant second operand into MatMul.
    """

    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(11)
        self.w = tf.Variable(rng.normal(0, 0.5, (3, 8)).astype(np.float32), name="w")

    @tf.function(input_signature=[tf.TensorSpec([2, 3, 4, 8], tf.float32, name="q"),
                                  tf.TensorSpec([2, 3, 6, 8], tf.float32, name="k")])
    def serve(self, q, k):
        scores = tf.einsum("bhqd,bhkd->bhqk", q, k)
        context = tf.einsum("...qk,...kd->...qd", tf.nn.softmax(scores), k)
        return {"scores": scores, "context": context,
                "head_proj": tf.einsum("bhqd,hd->bhq", q, self.w),  # one weight row per head
                "swapped": tf.einsum("abcd->acbd", q)}


def einsum(out: Path):
    _save(Einsums(), out)
    rng = np.random.default_rng(12)
    feed = {"q": rng.normal(0, 1, (2, 3, 4, 8)).astype(np.float32),
            "k": rng.normal(0, 1, (2, 3, 6, 8)).astype(np.float32)}
    return feed, "serving_default"


class Uint8Image(tf.Module):
    """uint8 data movement (channel reverse, crop) before the cast to float32, and a uint8 output."""

    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(13)
        self.kernel = tf.Variable(rng.normal(0, 0.3, (3, 3, 3, 8)).astype(np.float32), name="kernel")
        self.bias = tf.Variable(rng.normal(0, 0.1, (8,)).astype(np.float32), name="bias")

    @tf.function(input_signature=[tf.TensorSpec([None, 32, 32, 3], tf.uint8, name="image")])
    def serve(self, image):
        bgr = tf.reverse(image, axis=[-1])
        crop = bgr[:, 2:30, 2:30, :]
        x = tf.cast(crop, tf.float32) * (1.0 / 255.0)
        features = tf.nn.relu(tf.nn.conv2d(x, self.kernel, strides=1, padding="SAME") + self.bias)
        return {"features": features, "bgr": bgr}


def uint8_image(out: Path):
    _save(Uint8Image(), out)
    rng = np.random.default_rng(14)
    feed = {"image": rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)}
    return feed, "serving_default"


class DepthToSpace(tf.Module):
    """Conv → depth_to_space(2) → Conv → space_to_depth(2), NHWC."""

    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(15)
        self.k1 = tf.Variable(rng.normal(0, 0.3, (3, 3, 4, 16)).astype(np.float32), name="k1")
        self.k2 = tf.Variable(rng.normal(0, 0.3, (3, 3, 4, 4)).astype(np.float32), name="k2")

    @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 4], tf.float32, name="x")])
    def serve(self, x):
        h = tf.nn.conv2d(x, self.k1, strides=1, padding="SAME")     # [N, 8, 8, 16]
        h = tf.nn.depth_to_space(h, 2)                                # [N, 16, 16, 4]
        h = tf.nn.conv2d(h, self.k2, strides=1, padding="SAME")     # [N, 16, 16, 4]
        return {"y": tf.nn.space_to_depth(h, 2)}                      # [N, 8, 8, 16]


def depth_to_space(out: Path):
    _save(DepthToSpace(), out)
    rng = np.random.default_rng(16)
    return {"x": rng.normal(0, 1, (2, 8, 8, 4)).astype(np.float32)}, "serving_default"


def _boxes(rng, n: int) -> np.ndarray:
    """Valid [y1, x1, y2, x2] boxes inside the unit square, of varied sizes so that some overlap."""
    centre = rng.uniform(0.1, 0.9, (n, 2))
    size = rng.uniform(0.05, 0.4, (n, 2))
    return np.clip(np.concatenate([centre - size / 2, centre + size / 2], axis=-1), 0.0, 1.0).astype(np.float32)


class CombinedNMS(tf.Module):
    """tf.image.combined_non_max_suppression: per-class NMS then a global top-k, padded outputs."""

    @tf.function(input_signature=[tf.TensorSpec([1, 64, 1, 4], tf.float32, name="boxes"),
                                  tf.TensorSpec([1, 64, 3], tf.float32, name="scores")])
    def serve(self, boxes, scores):
        nmsed_boxes, nmsed_scores, nmsed_classes, valid = tf.image.combined_non_max_suppression(
            boxes, scores, max_output_size_per_class=8, max_total_size=16, iou_threshold=0.5, score_threshold=0.1)
        return {"nmsed_boxes": nmsed_boxes, "nmsed_scores": nmsed_scores, "nmsed_classes": nmsed_classes,
                "valid_detections": valid}


def combined_nms(out: Path):
    _save(CombinedNMS(), out)
    rng = np.random.default_rng(17)
    # Distinct scores (a shuffled grid) keep the selection order free of ties.
    scores = rng.permutation(64 * 3).astype(np.float32).reshape(1, 64, 3) / (64 * 3)
    return {"boxes": _boxes(rng, 64).reshape(1, 64, 1, 4), "scores": scores}, "serving_default"


class NMS(tf.Module):
    """tf.image.non_max_suppression (NonMaxSuppressionV3): selected indices, unpadded (data-dependent length)."""

    @tf.function(input_signature=[tf.TensorSpec([64, 4], tf.float32, name="boxes"),
                                  tf.TensorSpec([64], tf.float32, name="scores")])
    def serve(self, boxes, scores):
        return {"selected_indices": tf.image.non_max_suppression(boxes, scores, max_output_size=10,
                                                                 iou_threshold=0.5)}


def nms(out: Path):
    _save(NMS(), out)
    rng = np.random.default_rng(18)
    scores = rng.permutation(64).astype(np.float32) / 64
    return {"boxes": _boxes(rng, 64), "scores": scores}, "serving_default"


class ResizeModes(tf.Module):
    """One output per resize flavour TensorRT's Resize treats differently.

    Bicubic upsamples by exactly 2: TensorFlow's ResizeBicubic looks its Keys
    weights up in a 1024-entry table, which is exact only for dyadic sample
    offsets. At 16→24 the offsets are thirds and TensorFlow differs from ONNX's
    exact cubic (onnxruntime and the ONNX reference agree) by up to ~1e-3.
    tf.image.resize(..., antialias=True) is not here: it lowers to
    ScaleAndTranslate, which tf2onnx 1.17 cannot convert, so the export would fail.
    """

    @tf.function(input_signature=[tf.TensorSpec([1, 16, 16, 3], tf.float32, name="image")])
    def serve(self, image):
        return {
            "bicubic": tf.image.resize(image, [32, 32], method="bicubic"),
            "bilinear_align_corners": tf.compat.v1.image.resize_bilinear(image, [32, 32], align_corners=True),
            "crop_and_resize": tf.image.crop_and_resize(image, [[0.0, 0.0, 1.0, 1.0]], [0], [16, 16]),
        }


def resize_modes(out: Path):
    _save(ResizeModes(), out)
    rng = np.random.default_rng(19)
    return {"image": rng.uniform(0, 1, (1, 16, 16, 3)).astype(np.float32)}, "serving_default"


class ScatterND(tf.Module):
    """Scatter with reduction (add with a duplicate index, max), which TensorRT's ScatterND rejects."""

    @tf.function(input_signature=[tf.TensorSpec([8, 4], tf.float32, name="data"),
                                  tf.TensorSpec([3, 4], tf.float32, name="updates")])
    def serve(self, data, updates):
        add = tf.tensor_scatter_nd_add(data, tf.constant([[1], [5], [1]]), updates)
        mx = tf.tensor_scatter_nd_max(data, tf.constant([[0], [2], [7]]), updates)
        return {"scatter_add": add, "scatter_max": mx}


def scatter_nd(out: Path):
    _save(ScatterND(), out)
    rng = np.random.default_rng(20)
    return {"data": rng.normal(0, 1, (8, 4)).astype(np.float32),
            "updates": rng.normal(0, 1, (3, 4)).astype(np.float32)}, "serving_default"


class ControlFlow(tf.Module):
    """A tf.cond on the batch size and a tf.while_loop with a fixed trip count of 3."""

    @tf.function(input_signature=[tf.TensorSpec([2, 4], tf.float32, name="x")])
    def serve(self, x):
        branched = tf.cond(tf.shape(x)[0] > 1, lambda: x * 2.0, lambda: x - 1.0)
        _, looped = tf.while_loop(lambda i, v: i < 3, lambda i, v: (i + 1, v * 0.5 + 1.0), (tf.constant(0), x))
        return {"branched": branched, "looped": looped}


def control_flow(out: Path):
    _save(ControlFlow(), out)
    rng = np.random.default_rng(21)
    return {"x": rng.normal(0, 1, (2, 4)).astype(np.float32)}, "serving_default"


class Dtypes(tf.Module):
    """float64 math, an int64 cumsum and an int64-indexed gather: dtypes TensorRT lacks or restricts."""

    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(22)
        self.w = tf.Variable(rng.normal(0, 0.5, (4, 3)), dtype=tf.float64, name="w")
        self.table = tf.Variable(rng.normal(0, 1, (16, 5)).astype(np.float32), name="table")

    @tf.function(input_signature=[tf.TensorSpec([2, 4], tf.float64, name="x"),
                                  tf.TensorSpec([2, 6], tf.int64, name="ids")])
    def serve(self, x, ids):
        return {"y": tf.nn.tanh(tf.matmul(x, self.w)),
                "csum": tf.math.cumsum(ids, axis=1),
                "emb": tf.reduce_sum(tf.gather(self.table, ids), axis=1)}


def dtypes(out: Path):
    _save(Dtypes(), out)
    rng = np.random.default_rng(23)
    # ids within [0, 8], the range validation draws integers from.
    return {"x": rng.normal(0, 1, (2, 4)), "ids": rng.integers(0, 9, (2, 6), dtype=np.int64)}, "serving_default"


# --- Fixtures for real-model failure classes (issue 16): each is the smallest model that hit one. ---


def keras_argmax(out: Path):
    """Keras 3 Dense → logits and ``keras.ops.argmax``: on floats it lowers through a sign-bit bitcast."""
    import keras

    keras.utils.set_random_seed(0)
    x = keras.Input((10,), name="x")
    logits = keras.layers.Dense(5, name="dense")(x)
    keras.Model(x, {"logits": logits, "label": keras.ops.argmax(logits, axis=-1)}).export(str(out), verbose=False)
    return {"x": np.random.default_rng(31).normal(0, 1, (3, 10)).astype(np.float32)}, "serving_default"


def small_table(out: Path):
    """BERT-like ids: ``segment_ids`` index a 2-row Embedding, ``token_ids`` a 16-row one (Keras 3 wraps
    negative ids with where(i < 0, i + n, i), which tf2onnx lowers to Add/Mul)."""
    import keras

    keras.utils.set_random_seed(0)
    seg = keras.Input((6,), dtype="int32", name="segment_ids")
    tok = keras.Input((6,), dtype="int32", name="token_ids")
    x = keras.layers.Embedding(2, 4, name="segment_embedding")(seg) + keras.layers.Embedding(16, 4)(tok)
    keras.Model([seg, tok], keras.layers.Dense(3, name="head")(x)).export(str(out), verbose=False)
    rng = np.random.default_rng(32)
    return {"segment_ids": rng.integers(0, 2, (2, 6), dtype=np.int32),
            "token_ids": rng.integers(0, 16, (2, 6), dtype=np.int32)}, "serving_default"


class DynamicReshape(tf.Module):
    """keras-hub MiT attention's shape pattern: a Tensordot (Reshape [-1, C], MatMul, Reshape back) and then a
    reshape to [batch, -1, heads, dim] with the batch read from tf.shape. tf2onnx 1.17 alone merges the two
    Reshapes into one whose 0 copies the wrong dimension (frontend/tf2onnx_fixes.py)."""

    def __init__(self):
        super().__init__()
        self.w = tf.Variable(np.random.default_rng(33).normal(0, 0.3, (8, 8)).astype(np.float32), name="w")

    @tf.function(input_signature=[tf.TensorSpec([None, 16, 8], tf.float32, name="x")])
    def serve(self, x):
        heads = tf.reshape(tf.tensordot(x, self.w, axes=[[2], [0]]), [tf.shape(x)[0], -1, 1, 8])
        return {"y": tf.transpose(heads, [0, 2, 1, 3])}


def dynamic_reshape(out: Path):
    _save(DynamicReshape(), out)
    return {"x": np.random.default_rng(34).normal(0, 1, (2, 16, 8)).astype(np.float32)}, "serving_default"


class SharedConstCast(tf.Module):
    """T5's relative-position pattern in small: int → float → × 0.5 → int, with the same 0.5 read by float math.
    onnx-graphsurgeon 0.6.1's shape-tensor cast elision turns the shared constant into int in place
    (passes/gs_cast_elision.py)."""

    @tf.function(input_signature=[tf.TensorSpec([None, 6], tf.int32, name="ids"),
                                  tf.TensorSpec([None, 6], tf.float32, name="x")])
    def serve(self, ids, x):
        return {"bucket": tf.cast(tf.cast(ids, tf.float32) * 0.5, tf.int32), "scaled": x * 0.5}


def shared_const_cast(out: Path):
    _save(SharedConstCast(), out)
    rng = np.random.default_rng(35)
    return {"ids": rng.integers(0, 9, (2, 6), dtype=np.int32),
            "x": rng.normal(0, 1, (2, 6)).astype(np.float32)}, "serving_default"


def digits(out: Path):
    """A small CNN trained here on scikit-learn's bundled 8x8 digits (no download), for accuracy on real data.

    The 1797 images are split with a fixed seed into 1437 for training and 360 held out; the held-out images
    and labels (and 64 training images for INT8 calibration) go to fixtures/digits_data.npz."""
    import keras
    from sklearn.datasets import load_digits

    keras.utils.set_random_seed(0)
    tf.config.experimental.enable_op_determinism()
    data = load_digits()
    images = (data.images / 16.0).astype(np.float32)[..., None]  # [1797, 8, 8, 1] in [0, 1]
    order = np.random.default_rng(0).permutation(len(images))
    test, train = order[:360], order[360:]
    inp = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inp)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(64, activation="relu")(x)
    model = keras.Model(inp, keras.layers.Dense(10, name="logits")(x))
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(images[train], data.target[train], epochs=20, batch_size=32, verbose=0, shuffle=True)
    _, accuracy = model.evaluate(images[test], data.target[test], verbose=0)
    print(f"digits: held-out top-1 accuracy {accuracy:.4f}")
    model.export(str(out), verbose=False)
    np.savez_compressed(out.parent / "digits_data.npz", test_images=images[test],
                        test_labels=data.target[test].astype(np.int64), calib_images=images[train[:64]])
    return {"image": images[test[:2]]}, "serving_default"


FIXTURES = {"cnn_nhwc": cnn_nhwc, "multi_io": multi_io, "unsupported_op": unsupported_op, "unsafe_io": unsafe_io,
            "topk_large": topk_large, "einsum": einsum, "uint8_image": uint8_image, "depth_to_space": depth_to_space,
            "combined_nms": combined_nms, "nms": nms, "resize_modes": resize_modes, "scatter_nd": scatter_nd,
            "control_flow": control_flow, "dtypes": dtypes, "keras_argmax": keras_argmax, "small_table": small_table,
            "dynamic_reshape": dynamic_reshape, "shared_const_cast": shared_const_cast, "digits": digits}


class BigDense(tf.Module):
    """``layers`` square float32 Dense layers (ReLU between), seeded: a model whose weights exceed 2 GB when
    ``width`` is large (``big_dense``), for the external-data path. Built on demand, never committed."""

    def __init__(self, width: int, layers: int, seed: int = 0):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.weights = []
        for i in range(layers):  # one layer's numpy copy at a time: building peaks near the weights' size
            w = rng.standard_normal((width, width), dtype=np.float32)
            w *= np.float32(1.0 / np.sqrt(width))  # unit-variance activations through every layer
            self.weights.append(tf.Variable(w, name=f"w{i}"))
            del w
        self.serve = tf.function(self._serve, input_signature=[tf.TensorSpec([None, width], tf.float32, name="x")])

    def _serve(self, x):
        for i, w in enumerate(self.weights):
            x = tf.matmul(x, w)
            if i + 1 < len(self.weights):
                x = tf.nn.relu(x)
        return {"y": x}


def big_dense(out: Path, weight_bytes: float = 2.2e9, layers: int = 4, seed: int = 0):
    """A SavedModel of ``layers`` square Dense layers holding about ``weight_bytes`` of float32 weights (width a
    multiple of 128); returns (feed, signature) like the other builders. Not in ``FIXTURES``: tests build it into
    a temporary directory (``--only big_dense`` builds it here on request)."""
    width = max(128, int(np.sqrt(weight_bytes / 4 / layers)) // 128 * 128)
    module = BigDense(width, layers, seed)
    _save(module, out)
    feed = {"x": np.random.default_rng(seed + 1).uniform(-1, 1, (2, width)).astype(np.float32)}
    return feed, "serving_default"


ON_DEMAND = {"big_dense": big_dense}  # too big to commit: built only when named


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "fixtures")
    ap.add_argument("--only", metavar="NAME,...", help="build only these fixtures (default: all); "
                    f"one of: {', '.join(FIXTURES)}; on request only: {', '.join(ON_DEMAND)}")
    args = ap.parse_args()
    names = list(FIXTURES) if args.only is None else [n.strip() for n in args.only.split(",") if n.strip()]
    known = {**FIXTURES, **ON_DEMAND}
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        ap.error(f"--only: unknown fixture(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(known)}")
    golden = args.out / "golden"
    golden.mkdir(parents=True, exist_ok=True)
    for name in names:
        make = known[name]
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
