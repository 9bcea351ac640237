"""The unsafe-op scan reads saved_model.pb only; it must flag file/Python ops and allow the model's own saver."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, run_cli

pytestmark = pytest.mark.tf
MARKER = Path("/tmp/tf2trt-fixture-was-executed")


def _meta(main_nodes, functions, saver=("StatefulPartitionedCall_1:0", "StatefulPartitionedCall_2")):
    from tensorflow.core.protobuf import meta_graph_pb2

    meta = meta_graph_pb2.MetaGraphDef()
    meta.saver_def.save_tensor_name, meta.saver_def.restore_op_name = saver
    for name, op, calls, attrs in main_nodes:
        n = meta.graph_def.node.add(name=name, op=op)
        for c in calls:
            n.attr["f"].func.name = c
        for k, v in attrs.items():
            n.attr[k].s = v.encode()
    for fname, ops in functions.items():
        f = meta.graph_def.library.function.add()
        f.signature.name = fname
        for i, (op, calls) in enumerate(ops):
            n = f.node_def.add(name=f"{op}_{i}", op=op)
            for c in calls:
                n.attr["f"].func.name = c
    return meta


def test_saver_checkpoint_ops_are_allowed_but_not_elsewhere():
    from compiler.frontend.scan import scan_meta_graph

    meta = _meta(
        [("StatefulPartitionedCall", "StatefulPartitionedCall", ["serve"], {}),
         ("StatefulPartitionedCall_1", "StatefulPartitionedCall", ["traced_save"], {}),
         ("StatefulPartitionedCall_2", "StatefulPartitionedCall", ["traced_restore"], {})],
        {"serve": [("MatMul", []), ("PartitionedCall", ["shared"])],
         "traced_save": [("SaveV2", []), ("MergeV2Checkpoints", [])],
         "traced_restore": [("RestoreV2", []), ("PartitionedCall", ["shared"])],
         "shared": [("RestoreV2", [])]})  # reachable from the serving path too: not the saver's alone
    result = scan_meta_graph(meta)
    assert [(f.op, f.function) for f in result.findings] == [("RestoreV2", "shared")]
    assert not result.safe and "RestoreV2" in result.summary()


@pytest.mark.parametrize("op, attrs, flagged", [
    ("PyFunc", {}, True), ("EagerPyFunc", {}, True), ("ReadFile", {}, True), ("MatchingFiles", {}, True),
    ("WriteFile", {}, True), ("PrintV2", {"output_stream": "file:///tmp/log"}, True),
    ("PrintV2", {"output_stream": "stderr"}, False), ("SaveV2", {}, True), ("Conv2D", {}, False)])
def test_denylist_in_main_graph(op, attrs, flagged):
    from compiler.frontend.scan import scan_meta_graph

    result = scan_meta_graph(_meta([("n", op, [], attrs)], {}))
    assert (not result.safe) == flagged


def test_tf1_saver_scope_is_allowed():
    from compiler.frontend.scan import scan_meta_graph

    meta = _meta([("save/SaveV2", "SaveV2", [], {}), ("save/RestoreV2", "RestoreV2", [], {}),
                  ("evil/SaveV2", "SaveV2", [], {})], {}, saver=("save/Const:0", "save/restore_all"))
    assert [f.node for f in scan_meta_graph(meta).findings] == ["evil/SaveV2"]


@pytest.mark.parametrize("name", ["cnn_nhwc", "multi_io", "unsupported_op"])
def test_real_fixtures_are_safe(capsys, name):
    code, stdout, _ = run_cli(capsys, "inspect", FIXTURES / name, "--json")
    safety = json.loads(stdout)["safety"]
    assert code == 0 and safety["safe"] and safety["ops_scanned"] > 10


def test_unsafe_model_is_refused_without_running_it(capsys, tmp_path):
    MARKER.unlink(missing_ok=True)
    code, stdout, _ = run_cli(capsys, "inspect", FIXTURES / "unsafe_io")
    assert code == 0 and "safety: UNSAFE: WriteFile" in stdout
    out = tmp_path / "x.engine"
    code, _, stderr = run_cli(capsys, FIXTURES / "unsafe_io", out)
    assert code == 3 and "error: inspect: refusing to load" in stderr and "--allow-unsafe-ops" in stderr
    assert not out.exists() and not MARKER.exists()  # refused before TensorFlow loaded it
    code, _, stderr = run_cli(capsys, "export", FIXTURES / "unsafe_io", tmp_path / "x.onnx")
    assert code == 3 and not (tmp_path / "x.onnx").exists()


def test_allow_unsafe_ops_proceeds(capsys, tmp_path):
    code, _, stderr = run_cli(capsys, "export", FIXTURES / "unsafe_io", tmp_path / "x.onnx", "--allow-unsafe-ops")
    assert code == 0, stderr  # tf2onnx drops the side-effect op; the export itself never executes the graph
    assert not MARKER.exists()
