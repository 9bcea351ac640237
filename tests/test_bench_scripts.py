"""The benchmark and survey scripts are maintained tools: a small subset of each runs here, for real."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from compiler.backends import resolve_backend
from tests.conftest import ROOT

pytestmark = [pytest.mark.tf, pytest.mark.slow]


def test_keras_coverage_subset(tmp_path):
    """Exact GELU needs the Erfc converter; GRU exercises Loop bodies in the passes."""
    out = tmp_path / "cov.json"
    proc = subprocess.run([sys.executable, "scripts/bench/keras_coverage.py", "--only", "gelu_exact,GRU",
                           "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "2/2 compiled and validated" in proc.stdout
    data = json.loads(out.read_text())
    rows = data["results"] if isinstance(data, dict) else data
    assert {r["name"] if "name" in r else r["model"] for r in rows} == {"gelu_exact", "GRU"}


def test_keras_hub_coverage_subset(tmp_path):
    """BERT (segment ids index a 2-row table), SegFormer (tf2onnx's dynamic-batch Reshape) and a Keras argmax
    (the sign-bit lowering): the fast subset of scripts/bench/keras_hub_coverage.py, with its peer column."""
    import importlib.util

    if importlib.util.find_spec("keras_hub") is None:
        pytest.skip("keras-hub is not installed (the `coverage` extra: pip install -e .[coverage])")
    out = tmp_path / "hub.json"
    proc = subprocess.run([sys.executable, "scripts/bench/keras_hub_coverage.py",
                           "--only", "BERT,SegFormer,KerasArgmax", "--json", str(out), "--timeout", "900"], cwd=ROOT, capture_output=True, text=True,
                          timeout=2400)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "3/3 compiled and validated" in proc.stdout, proc.stdout[-3000:]
    rows = {r["name"]: r for r in json.loads(out.read_text())["results"]}
    assert set(rows) == {"BERT", "SegFormer", "KerasArgmax"}
    for r in rows.values():
        assert r["exit_code"] == 0 and r["check_trt"] == "supported" and r["failed_seams"] == [], r
        assert r["tf2onnx_exit"] is not None and r["tf2onnx_ort"] in ("yes", "no"), r


def test_passes_benchmark_on_one_fixture(tmp_path):
    """All three tools run, the ratios are printed, and each tool's output matches the unoptimized model."""
    out = tmp_path / "passes.json"
    proc = subprocess.run([sys.executable, "scripts/bench/passes.py", "--fixtures", "cnn_nhwc", "--runs", "1",
                           "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    table = proc.stdout[proc.stdout.index("\ncnn_nhwc  ("):]
    for tool in ("ours", "onnxslim", "polygraphy"):
        # tool, nodes, Transpose, median s, min s, max abs err, outputs
        row = re.search(rf"^{tool}\s+(\d+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+(\S+)\s+(\S+)$", table, re.M)
        assert row, f"no table row for {tool}:\n{table}"
        assert float(row[5]) < 1e-5 and row[6] == "ok", row[0]
    for peer in ("onnxslim", "polygraphy"):
        ratio = re.search(rf"^ours/{peer}\s+nodes\s+([\d.]+)x\s+time\s+([\d.]+)x$", table, re.M)
        assert ratio and float(ratio[1]) > 0 and float(ratio[2]) > 0, f"no ratios against {peer}:\n{table}"

    data = json.loads(out.read_text())
    (row,) = data["rows"]
    assert row["model"] == "cnn_nhwc" and row["input_shapes"] == {"image": [2, 32, 32, 3]}
    assert set(row["tools"]) == {"ours", "onnxslim", "polygraphy"}
    for tool, r in row["tools"].items():
        assert r["error"] is None and r["outputs_ok"] and len(r["seconds"]) == 1, (tool, r)
        assert r["max_abs_err"] < 1e-5 and r["nodes"] > 0, (tool, r)
    assert data["versions"]["onnxslim"] != "not installed" and data["versions"]["polygraphy"] != "not installed"


def test_precision_benchmark_on_one_fixture(tmp_path):
    """fp32, fp16, bf16 and int8 graphs are made, timed and compared; each stays within its documented tolerance."""
    out = tmp_path / "precision.json"
    proc = subprocess.run([sys.executable, "scripts/bench/precision.py", "--fixtures", "cnn_nhwc", "--no-mobilenet",
                           "--runs", "1", "--samples", "8", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    table = proc.stdout[proc.stdout.index("\ncnn_nhwc  ("):]
    num = r"([\d.]+(?:e[+-]\d+)?)"
    printed = {}
    for prec in ("fp32", "fp16", "bf16", "int8"):
        # precision, nodes, median ms, min ms, ratio, max abs, max rel, tol, top-1
        row = re.search(rf"^{prec}\s+(\d+)\s+{num}\s+{num}\s+{num}x\s+{num}\s+{num}\s+(\S+)\s+(\S+)$", table, re.M)
        assert row, f"no table row for {prec}:\n{table}"
        printed[prec] = row
        assert int(row[1]) > 0 and float(row[2]) > 0 and float(row[3]) > 0, row[0]
    fp32 = printed["fp32"]
    assert float(fp32[4]) == 1.0 and float(fp32[5]) == 0 and float(fp32[6]) == 0, fp32[0]
    for prec in ("fp16", "bf16", "int8"):
        row = printed[prec]
        assert row[7] == "ok", row[0]
        assert re.fullmatch(r"\d+\.\d%", row[8]) and float(row[8][:-1]) >= 50, row[0]
    assert int(printed["int8"][1]) > int(fp32[1]), "the int8 graph has no Q/DQ nodes"
    ratio = re.search(r"^fp16/fp32 latency ([\d.]+)x\s+bf16/fp32 latency ([\d.]+)x\s+int8/fp32 latency ([\d.]+)x$",
                      table, re.M)
    assert ratio and all(float(ratio[i]) > 0 for i in (1, 2, 3)), f"no ratio line:\n{table}"
    calib = re.search(r"^int8 calibration: minmax on .*RANDOM data.*: ([\d.]+) s$", table, re.M)
    assert calib, f"no calibration line:\n{table}"

    data = json.loads(out.read_text())
    rows = {r["precision"]: r for r in data["rows"]}
    assert set(rows) == {"fp32", "fp16", "bf16", "int8"} and {r["model"] for r in data["rows"]} == {"cnn_nhwc"}
    for prec, r in rows.items():
        row = printed[prec]
        assert r["error"] is None and r["note"] is None, r
        assert r["nodes"] == int(row[1]) and len(r["latency_runs_ms"]) == 1, r
        assert f"{r['median_ms']:.3f}" == row[2] and f"{r['min_ms']:.3f}" == row[3], r
        assert f"{r['ratio']:.2f}" == row[4] and f"{r['max_abs']:.2e}" == row[5] and f"{r['max_rel']:.2e}" == row[6]
    assert rows["fp32"]["max_abs"] == 0 and rows["fp32"]["ratio"] == 1.0
    assert rows["bf16"]["max_abs"] > rows["fp16"]["max_abs"]  # bfloat16's rounding, emulated, is really measured
    for prec in ("fp16", "bf16", "int8"):
        assert rows[prec]["within_tolerance"] is True and f"{rows[prec]['top1'] * 100:.1f}%" == printed[prec][8]
    assert rows["int8"]["calibration_s"] > 0 and rows["int8"]["calibration"]["random_data"] is True
    assert rows["int8"]["calibration"]["reused_cache"] is False


def test_runtime_benchmark_on_one_fixture(tmp_path):
    """Every column of the side-by-side table: our engine per available backend (onnxruntime native and
    portable) x precision, onnxruntime's default session and OpenVINO on the raw export, TensorFlow; p50/p90 at
    batch 1, throughput at batch 16, ratios against onnxruntime default, outputs checked against TensorFlow."""
    from compiler.config import PRECISIONS

    out = tmp_path / "runtime.json"
    proc = subprocess.run([sys.executable, "scripts/bench/runtime.py", "--models", "cnn_nhwc", "--runs", "2",
                           "--iterations", "3", "--warmup", "1", "--json", str(out), "--workdir", str(tmp_path / "w")],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    (model,) = json.loads(out.read_text())["models"]
    cols = {c["column"]: c for c in model["columns"]}
    ours = [f"ours onnxruntime {build} {p}" for build in ("native", "portable") for p in PRECISIONS]
    assert set(ours) <= set(cols)
    assert {"ort-default (raw)", "openvino f32 (raw)", "tensorflow"} <= set(cols)
    assert model["batches"] == [1, 16] and model["shapes"]["16"] == {"image": [16, 32, 32, 3]}
    assert cols["ort-default (raw)"]["b1"]["ratio"] == 1.0 and cols["ort-default (raw)"]["b16"]["ratio"] == 1.0
    for name in ours + ["ort-default (raw)", "tensorflow"]:
        c = cols[name]
        assert c["error"] is None and c["outputs_agree"] is True, c
        assert len(c["b1"]["runs_p50_ms"]) == 2 and c["b1"]["p90_ms"] >= c["b1"]["p50_ms"] > 0, c
        assert c["b16"]["samples_per_s"] > 0 and c["b1"]["ratio"] > 0, c
        # column, p50, p90, ratio, b16/s, b16 ratio, max err, outputs
        row = re.search(rf"^{re.escape(name)}\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)x\s+([\d.]+)\s+([\d.]+)x\s+(\S+)\s+ok$",
                        proc.stdout, re.M)
        assert row and float(row[3]) == round(c["b1"]["ratio"], 2), (name, proc.stdout[-3000:])
    assert cols["tensorflow"]["max_err_vs_tf"] == 0
    assert cols["ours onnxruntime native int8"]["max_err_vs_tf"] > 0  # int8 really ran quantized
    summary = proc.stdout[proc.stdout.index("summary: time / ort-default (raw) time"):]
    assert re.search(r"^\| cnn_nhwc \| 1\.00 \(1\.00\) \|", summary, re.M), summary


def test_batch_benchmark_on_one_fixture(tmp_path):
    """One model with --jobs 1, then the unchanged rerun: the table, the ratio line and the JSON."""
    out = tmp_path / "batch.json"
    proc = subprocess.run([sys.executable, "scripts/bench/batch.py", "--models", "1", "--configs", "jobs1",
                           "--rerun-limit", "1", "--json", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert re.search(r"^rerun with nothing changed: [\d.]+% of the first run \(ok", proc.stdout, re.M), proc.stdout
    data = json.loads(out.read_text())
    assert data["rows"]["jobs1"]["counts"] == {"passed": 1, "unchanged": 0, "failed": 0}
    assert data["rows"]["rerun"]["counts"] == {"passed": 0, "unchanged": 1, "failed": 0}
    assert data["rows"]["jobs1"]["peak_rss_mib"] > 50 and data["rerun_ratio"] < 1


def test_nchw_layout_bench_subset(tmp_path, exported):
    """The NCHW layout benchmark on the bundled CNN, against this checkout's own committed tree: both sides
    optimize, agree, and the table names their Transpose counts and the ratio."""
    proc = subprocess.run([sys.executable, "scripts/bench/nchw_layout.py", str(exported["cnn_nhwc"]),
                           "--input-shapes", "image:1x32x32x3", "--base", "HEAD", "--runs", "2", "--iterations", "3",
                           "--warmup", "1", "--workdir", str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines() if line.split()[:1] in (["before"], ["after"])}
    assert rows["before"][1] == rows["after"][1] == "0", proc.stdout  # the CNN has no Transpose left on either side
    assert re.search(r"ratio after/before p50: \d+\.\d+; outputs agree", proc.stdout), proc.stdout


def test_compile_vs_tf2onnx_prints_stage_peaks_and_ratios(tmp_path):
    """One alternating run on a fixture: both tools' numbers, the compile's per-stage peaks from its report, and,
    with two models, the table of ratios."""
    out = tmp_path / "bench.json"
    models = [str(ROOT / "fixtures" / name) for name in ("cnn_nhwc", "einsum")]
    proc = subprocess.run([sys.executable, "scripts/bench/compile_vs_tf2onnx.py", *models, "--runs", "1",
                           "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "compile by stage (medians):" in proc.stdout
    assert re.search(r"^export\s+[\d.]+\s+\d+$", proc.stdout, re.M), proc.stdout[-2000:]
    for name in ("cnn_nhwc", "einsum"):
        assert re.search(rf"^{name}\s+[\d.]+x\s+[\d.]+x$", proc.stdout, re.M), proc.stdout[-2000:]
    results = json.loads(out.read_text())["models"]
    assert len(results) == 2
    for result in results.values():
        stages = result["compile_stages"]
        assert {"inspect", "export", "optimize", "build", "validate"} <= set(stages)
        assert all(s["median_peak_rss_mb"] > 100 for s in stages.values())
        assert result["ratios_compile_over_tf2onnx"]["median_peak_rss_mib"] > 0


def test_accuracy_on_real_digits(tmp_path):
    """The digits CNN on its 360 committed held-out images: every engine's fp32 top-1 equals TensorFlow's, and
    int8 (calibrated on 64 real training images) is within 1 point of fp32 on every backend."""
    out = tmp_path / "accuracy.json"
    proc = subprocess.run([sys.executable, "scripts/bench/accuracy.py", "--json", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    data = json.loads(out.read_text())
    assert data["tensorflow_accuracy"] > 0.9  # a trained model, not a random one
    rows = {r["engine"]: r for r in data["rows"]}
    assert {"ours onnxruntime native int8", "ours onnxruntime portable fp32"} <= set(rows)
    for r in rows.values():
        assert r["error"] is None, r
        if r["precision"] == "fp32":
            assert r["accuracy"] == data["tensorflow_accuracy"] and r["agreement_with_fp32"] == 1.0, r
        else:
            assert r["points_vs_fp32"] >= -1.0 and r["agreement_with_fp32"] >= 0.97, r
        assert re.search(rf"^{re.escape(r['engine'])}\s+{r['accuracy'] * 100:.2f}%", proc.stdout, re.M), r
