"""Small Keras models whose NHWC layout meets channels-last LayerNorm and Dense: ConvNeXtTiny
(keras.applications), a Swin-style stage and a ViT patch stem. Built here, from Keras layers,
with every bias, LayerNorm scale/offset and layer scale drawn at random (seeded), so the parts a
layout rewrite touches all carry numbers; Keras' zero biases and 1e-6 layer scales would hide
a wrong rewrite of them."""
from __future__ import annotations

import numpy as np

IMAGE = 32  # the smallest input ConvNeXt takes: its four stages divide by 32


def _randomise_vectors(model, seed: int = 0) -> None:
    """Every rank-1 weight (biases, LayerNorm gamma/beta, layer scales) ~ N(±1 or 0, 0.2), seeded."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        if len(w.shape) == 1:
            centre = 1.0 if any(k in w.path for k in ("gamma", "scale")) else 0.0
            w.assign(rng.normal(centre, 0.2, w.shape).astype(np.float32))


def convnext(keras):
    return keras.applications.ConvNeXtTiny(weights=None, input_shape=(IMAGE, IMAGE, 3), classifier_activation=None)


def _mlp(keras, x, width: int):
    """Pre-norm MLP with a residual, on channels-last tokens or maps (Swin, ViT)."""
    h = keras.layers.LayerNormalization(epsilon=1e-5)(x)
    h = keras.layers.Dense(width * 2, activation="gelu")(h)
    return keras.layers.Add()([x, keras.layers.Dense(width)(h)])


def swin(keras):
    """Patch embedding, LayerNorm, a pre-norm MLP block and Swin's patch merging (the four 2×2
    neighbours by strided slicing, concatenated on channels, LayerNorm, Dense 4C → 2C), pooled."""
    inp = keras.Input((IMAGE, IMAGE, 3), name="image")
    x = keras.layers.Conv2D(16, 4, strides=4)(inp)
    x = keras.layers.LayerNormalization(epsilon=1e-5)(x)
    x = _mlp(keras, x, 16)
    parts = [x[:, i::2, j::2, :] for i in (0, 1) for j in (0, 1)]
    x = keras.layers.Concatenate(axis=-1)(parts)
    x = keras.layers.LayerNormalization(epsilon=1e-5)(x)
    x = keras.layers.Dense(32, use_bias=False)(x)
    x = _mlp(keras, x, 32)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(10)(x))


def vit_stem(keras):
    """ViT's patch stem: 8×8 patches by a strided Conv, flattened to tokens, a learned position
    embedding, LayerNorm and a pre-norm MLP block, then mean-pooled to a head."""

    class PositionEmbedding(keras.layers.Layer):
        def build(self, shape):
            self.table = self.add_weight(shape=(1, *shape[1:]), initializer="random_normal", name="table")

        def call(self, x):
            return x + self.table

    inp = keras.Input((IMAGE, IMAGE, 3), name="image")
    x = keras.layers.Conv2D(24, 8, strides=8)(inp)
    x = keras.layers.Reshape(((IMAGE // 8) ** 2, 24))(x)
    x = PositionEmbedding()(x)
    x = keras.layers.LayerNormalization(epsilon=1e-6)(x)
    x = _mlp(keras, x, 24)
    x = keras.layers.LayerNormalization(epsilon=1e-6)(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(inp, keras.layers.Dense(10)(x))


BUILDERS = {"convnext_tiny": convnext, "swin_block": swin, "vit_stem": vit_stem}


def save(name: str, directory) -> None:
    """Build model ``name`` (seeded) and save it as a SavedModel in ``directory``."""
    import keras

    keras.utils.set_random_seed(0)
    model = BUILDERS[name](keras)
    _randomise_vectors(model)
    model.export(str(directory), format="tf_saved_model", verbose=False)
