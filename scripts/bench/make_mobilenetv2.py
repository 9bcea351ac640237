#!/usr/bin/env python3
"""Export a seeded, randomly initialised Keras MobileNetV2 (or another keras.applications model) as a SavedModel.

    python scripts/bench/make_mobilenetv2.py OUT_DIR [--app ResNet50|VGG16|ConvNeXtTiny|...]

The model is ``keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3))``, or the ``--app``
constructor with the same arguments:
no pretrained weights (nothing is downloaded), with every initializer seeded by
``keras.utils.set_random_seed(0)`` so a rebuild gives the same weights. It is written with
``model.export(OUT_DIR)``, the same Keras 3 export path as ``fixtures/cnn_nhwc``. The
SavedModel files themselves still carry fresh object ids and fingerprints on each run.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# Set before TensorFlow is imported, or its C++ start-up logging is already on stderr.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", type=Path, help="SavedModel directory to write (must not exist yet)")
    ap.add_argument("--app", default="MobileNetV2", help="keras.applications constructor (default: MobileNetV2)")
    a = ap.parse_args(argv)
    if a.out_dir.exists():
        ap.error(f"{a.out_dir} already exists; remove it first")

    import keras  # heavy import: after argument parsing so --help stays fast
    import numpy as np

    keras.utils.set_random_seed(0)
    if not callable(getattr(keras.applications, a.app, None)):
        ap.error(f"keras.applications has no model {a.app!r}")
    model = getattr(keras.applications, a.app)(weights=None, input_shape=(224, 224, 3))
    # Fresh BatchNormalization layers (mean 0, variance 1, gamma 1, beta 0) with random
    # convolutions drive MobileNetV2 into a constant output (0.001 for every class, for
    # every input), and validation against a constant proves nothing. Seeded, plausible
    # statistics make the output depend on the input, as a trained model's does.
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.uniform(-0.2, 0.2, beta.shape),
                               rng.uniform(-0.1, 0.1, mean.shape), rng.uniform(0.5, 2.0, var.shape)])
    probe = model(rng.uniform(-1, 1, (2, 224, 224, 3)).astype("float32")).numpy()
    if np.ptp(probe) == 0:
        raise SystemExit(f"error: bench: {a.app} output is constant; fix: change the statistics' seed")
    model.export(str(a.out_dir), verbose=False)
    print(f"saved_model: {a.out_dir} ({model.count_params()} parameters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
