"""NCHW ConvNeXtTiny, a Swin-style stage and a ViT patch stem end with zero Transposes (issue 15).

Each model (tests/passes/keras_layout_models.py) is built from Keras layers, saved and exported with
the real tf2onnx; the default pipeline then runs with ``--inputs-as-nchw`` (``inputs_as_nchw``).
Checked: no Transpose is left, onnxruntime gives the exported NHWC graph's outputs on seeded
inputs (transposed for the NCHW graph) within 1e-5, ``onnx.checker`` full check passes, and a
second run of the pipeline (on the NCHW result, no settings) changes nothing (every pass's ``changed`` honest, same fingerprint).
"""
from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest

from passes import PassManager, default_pipeline, fingerprint
from tests.conftest import ort_run
from tests.passes.keras_layout_models import IMAGE, save

pytestmark = pytest.mark.tf
SHAPE = (1, IMAGE, IMAGE, 3)


class _Built(dict):
    """model name -> its exported ONNX, built on first use and kept for the module."""

    def __init__(self, directory):
        super().__init__()
        self.directory = directory

    def __missing__(self, name):
        from compiler.api import export_model

        save(name, self.directory / name)
        self[name] = onnx.load(str(export_model(self.directory / name, self.directory / f"{name}.onnx").path))
        return self[name]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return _Built(tmp_path_factory.mktemp("layout_models"))


@pytest.mark.parametrize("name", ["swin_block", "vit_stem",
                                  pytest.param("convnext_tiny", marks=pytest.mark.slow)])
def test_nchw_model_has_no_transposes_left(built, name):
    model = built[name]
    image = model.graph.input[0].name
    assert sum(n.op_type == "Transpose" for n in model.graph.node) >= 2  # tf2onnx's own, around the Convs

    out = PassManager(default_pipeline(input_shapes={image: SHAPE}, inputs_as_nchw=(image,))).run(model)
    ops = [n.op_type for n in out.graph.node]
    assert ops.count("Transpose") == 0, sorted(set(ops))
    onnx.checker.check_model(out, full_check=True)

    x = np.random.default_rng(0).uniform(0, 1, SHAPE).astype(np.float32)
    want = ort_run(model, {image: x})
    got = ort_run(out, {image: x.transpose(0, 3, 1, 2)})
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-5)

    again = PassManager(default_pipeline())  # the interface is NCHW already: nothing left to do
    second = again.run(out)
    assert not [r.name for r in again.records if r.changed]
    assert fingerprint(gs.import_onnx(second)) == fingerprint(gs.import_onnx(out))
