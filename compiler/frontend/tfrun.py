"""A Polygraphy runner over a TF2 SavedModel signature: the reference for the first seam.

Polygraphy's own TensorFlow runner drives TF1 sessions over frozen graphs; a
SavedModel signature is a TF2 ConcreteFunction, so we wrap that instead and
let Polygraphy's Comparator treat it like any other runner.
"""
from __future__ import annotations

import gc
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
from polygraphy.backend.base import BaseRunner
from polygraphy.common import TensorMetadata

from ..artifacts import TensorSpec
from . import import_tensorflow, native_stderr_silenced


class TfSavedModelRunner(BaseRunner):
    def __init__(self, model_dir: Path, signature: str, tag: str, inputs: tuple[TensorSpec, ...],
                 name: str = "tensorflow"):
        super().__init__(name=name)
        self.model_dir, self.signature, self.tag, self.inputs = Path(model_dir), signature, tag, inputs
        self._fn = None
        self._loaded = None

    def activate_impl(self):
        tf = import_tensorflow()
        with native_stderr_silenced(), tf.device("/cpu:0"):
            self._loaded = tf.saved_model.load(str(self.model_dir), tags=[self.tag])
        self._fn = self._loaded.signatures[self.signature]

    def get_input_metadata_impl(self):
        meta = TensorMetadata()
        for t in self.inputs:
            meta.add(t.name, np.dtype(t.dtype), tuple(d if isinstance(d, int) else None for d in t.shape))
        return meta

    def infer_impl(self, feed_dict):
        tf = import_tensorflow()
        start = time.perf_counter()
        with tf.device("/cpu:0"):
            out = self._fn(**{k: tf.constant(v) for k, v in feed_dict.items()})
        result = OrderedDict((k, np.asarray(v.numpy())) for k, v in sorted(out.items()))
        self.inference_time = time.perf_counter() - start
        return result

    def deactivate_impl(self):
        self._fn = None
        self._loaded = None
        gc.collect()  # the loaded SavedModel is cyclic: release its weights now that its outputs are recorded
