"""The HTML report (--html): content from real compiles, self-contained, escaped, and rendered by headless Chromium."""
from __future__ import annotations

import contextlib
import html
import io
import json
import re
import subprocess

import numpy as np
import pytest

from compiler import html_report
from compiler.html_report import render_check, render_compile
from tests.conftest import FIXTURES, run_cli

pytestmark = pytest.mark.tf

STAGES = ("inspect", "export", "optimize", "precision", "build", "validate")


def _cli(*args) -> tuple[int, str, str]:
    """The CLI in-process, outside a test function (module fixtures cannot use capsys)."""
    from compiler.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict[str, tuple[int, str, str, dict, str]]:
    """cnn_nhwc compiled with --html three ways: fp32, fp16 (a precision graph), and failing validation."""
    tmp = tmp_path_factory.mktemp("html")
    runs = {"fp32": [], "fp16": ["--precision", "fp16"], "failed": ["--atol", "0", "--rtol", "0"]}
    results = {}
    for key, flags in runs.items():
        out, page = tmp / f"{key}.engine", tmp / f"{key}.html"
        code, stdout, stderr = _cli(FIXTURES / "cnn_nhwc", out, "--html", page, *flags)
        report = json.loads((tmp / f"{key}.engine.report.json").read_text())
        results[key] = (code, stdout, stderr, report, page)
    return results


def _external_refs(text: str) -> list[str]:
    """Every src/href/url() that is not an in-page anchor or inline data."""
    refs = re.findall(r"""(?:src|href)\s*=\s*["']?([^"'\s>]+)""", text, flags=re.I)
    refs += re.findall(r"url\(([^)]*)\)", text, flags=re.I)
    return [r for r in refs if not r.startswith(("#", "data:"))]


def _hist_count(text: str) -> int:
    return len(re.findall(r'<img class="hist" src="data:image/png;base64,', text))


def test_compile_html_content(compiled):
    code, stdout, _, report, page = compiled["fp32"]
    assert code == 0 and f"html: {page}" in stdout
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>") and text.isascii()
    assert _external_refs(text) == [] and "<script" not in text and "<link" not in text
    assert "http://" not in text and "https://" not in text
    # header: status, and loudly that this is not a TensorRT engine
    assert "Compile report" in text and "Compiled and validated." in text
    assert "NOT a TensorRT engine." in text and html.escape(report["backend_notice"]) in text
    # stages table: every stage with its status
    stage_table = text.split('id="stages"')[1].split("</table>")[0]
    for stage in STAGES:
        assert f"<td>{stage}</td>" in stage_table
    # passes table: every run of a pass, in order
    pass_table = text.split('id="passes"')[1].split("</table>")[0]
    names = re.findall(r"<tr[^>]*><td>([a-z0-9_]+)</td>", pass_table)
    assert names == [p["name"] for p in report["passes"]]
    # op histograms, exported vs optimized
    assert re.search(r"<th>exported</th><th>optimized</th>", text)
    # one error histogram per output per seam, plus the numbers in the tables
    seams = report["validation"]
    assert _hist_count(text) == sum(len(s["outputs"]) for s in seams) == 3
    for seam in seams:
        assert html.escape(seam["seam"]).encode("ascii", "xmlcharrefreplace").decode() in text
        for o in seam["outputs"].values():
            assert f"{o['max_abs']:.2e}" in text
    assert "top-1 agreement" in text and "100.0% of 1" in text
    for section in ("engine", "versions", "notices", "io"):
        assert f'id="{section}"' in text
    assert report["engine"]["format"] in text and report["versions"]["onnx"] in text
    assert len(text) < 300_000  # small plots: a report with dozens of outputs stays a few MB


def test_html_is_a_pure_function_of_the_saved_report(compiled):
    _, _, _, report, page = compiled["fp16"]
    assert render_compile(report).encode("ascii", "xmlcharrefreplace").decode() == page.read_text()


def test_fp16_html_shows_the_precision_graph(compiled):
    code, _, _, report, page = compiled["fp16"]
    assert code == 0 and "fp16" in report["graph"]
    text = page.read_text()
    assert re.search(r"<th>exported</th><th>optimized</th><th>fp16</th>", text)
    assert "Precision: fp16" in text and "Kept in float32" in text and "Softmax" in text
    assert "Precision passes" in text and "to_fp16" in text
    assert _hist_count(text) == sum(len(s["outputs"]) for s in report["validation"]) == 4


def test_failed_compile_still_writes_the_html(compiled):
    code, stdout, stderr, report, page = compiled["failed"]
    assert code == 7 and report["status"] == "failed"
    assert f"html: {page}" in stderr and "engine:" not in stdout
    text = page.read_text()
    assert "FAILED in stage validate (exit code 7)" in text
    assert html.escape(report["error"]["message"]).encode("ascii", "xmlcharrefreplace").decode() in text
    assert "(not written: the run failed)" in text
    assert '<span class="badge failed">FAIL</span>' in text


def test_html_path_checked_before_compiling(tmp_path, capsys):
    code, _, stderr = run_cli(capsys, FIXTURES / "cnn_nhwc", tmp_path / "m.engine", "--html",
                              tmp_path / "missing" / "r.html")
    assert code == 8 and "HTML report" in stderr and "does not exist" in stderr
    assert not (tmp_path / "m.engine.report.json").exists()  # nothing ran


def _histogram(n_off: int = 0) -> dict:
    edges = [10.0 ** e for e in range(-12, 3)]
    counts = [0] * 14
    counts[5], counts[10] = 90, n_off
    return {"edges": edges, "counts": counts, "zero": 10, "over": 0}


def _check_result(n_outputs: int = 2) -> dict:
    outputs = [{"name": f"out<{i}>", "compare": "elementwise", "passed": i != 1, "max_abs": 0.5 if i == 1 else 1e-7,
                "mean_abs": 1e-3, "p99_abs": 1e-2, "max_rel": 0.2, "mean_rel": 1e-4, "p99_rel": 1e-3,
                "atol": 1e-4, "rtol": 1e-3, "shape": [1, 10], "histogram": _histogram(3 if i == 1 else 0),
                "detail": None} for i in range(n_outputs)]
    outputs.append({"name": "boxes", "compare": "boxes", "passed": True, "max_abs": None, "mean_abs": None,
                    "p99_abs": None, "max_rel": None, "mean_rel": None, "p99_rel": None, "atol": 0.5, "rtol": 0.0,
                    "shape": [1, 4, 4], "histogram": None, "detail": "IoU ≥ 0.9 for 4 of 4 boxes"})
    return {"status": "failed", "artifact": "model.engine", "format": "onnxruntime-ort", "golden": "golden/",
            "manifest": {"model_sha256": "ab12" * 16, "backend": "onnxruntime", "precision": "fp16", "seed": 0,
                         "created": "2025-01-01T00:00:00Z", "versions": {"onnxruntime": "1.23.2", "tensorrt": None}},
            "samples": 3, "outputs": outputs,
            "first_divergence": {"node": "conv<1>&", "op": "Conv", "created_by": "fuse_into_conv",
                                 "tensor": "conv_out", "max_abs": 0.5, "max_rel": 0.2, "atol": 1e-4, "rtol": 1e-3,
                                 "suspects": [{"node": "bn/mul", "op": "Mul", "created_by": None}]},
            "notes": ["golden made with <other> versions"]}


def test_render_check(tmp_path):
    text = render_check(_check_result())
    assert "Regression check" in text and '<span class="badge failed">failed</span>' in text
    assert "FAILED: 1 output(s) differ" in text and "out&lt;1&gt;" in text
    assert "First divergent node" in text and "conv&lt;1&gt;&amp;" in text and "fuse_into_conv" in text
    assert "Suspects" in text and "bn/mul" in text
    assert "ab12" * 16 in text and "Versions the golden outputs were made with" in text
    assert "golden made with &lt;other&gt; versions" in text and "<other>" not in text
    assert "IoU ≥ 0.9 for 4 of 4 boxes" in text
    assert "NOT a TensorRT engine" in text  # format onnxruntime-ort
    assert _hist_count(text) == 2 and _external_refs(text) == []
    html_report.write_html(tmp_path / "check.html", text)
    assert (tmp_path / "check.html").read_text().isascii()


def test_report_strings_are_escaped():
    evil = '<img src=x onerror="alert(1)">'
    report = {"status": "failed", "model": evil, "out": evil, "backend": None, "backend_notice": None,
              "error": {"stage": "inspect", "message": evil, "exit_code": 3},
              "stages": {s: {"status": "skipped", "seconds": 0.0, "note": evil} for s in STAGES},
              "passes": [{"name": evil, "iteration": 1, "changed": True, "seconds": 0.001, "nodes_before": 1,
                          "nodes_after": 2, "op_delta": {evil: 1}, "stats": {evil: evil}}],
              "graph": {"exported": {"nodes": 1, "ops": {evil: 1}}}, "validation": [], "notices": [evil],
              "localization": {"first_divergence": {"node": evil, "op": evil, "suspects": [{"node": evil}]}},
              "versions": {evil: evil}}
    text = render_compile(report)
    assert "<img src=x" not in text and "onerror=\"alert" not in text and "&lt;img src=x" in text
    assert "First divergent node" in text and "FAILED in stage inspect" in text


def test_plots_are_capped(monkeypatch):
    monkeypatch.setattr(html_report, "MAX_PLOTS", 3)
    text = render_check(_check_result(n_outputs=5))
    assert _hist_count(text) == 3 and "2 error-histogram plot(s) left out" in text


def _chromium(binary: str, *args, cwd) -> subprocess.CompletedProcess:
    """Headless Chromium with its own profile directory; stderr noise ignored, 60 s at most."""
    return subprocess.run([binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           f"--user-data-dir={cwd / 'profile'}", *args], capture_output=True, text=True,
                          timeout=60, cwd=cwd)


def test_chromium_renders_the_report(compiled, chromium, tmp_path):
    _, _, _, report, page = compiled["fp16"]
    dom = _chromium(chromium, "--dump-dom", page.as_uri(), cwd=tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count("<table") >= 8 and 'id="stages"' in dom.stdout and 'id="passes"' in dom.stdout
    assert _hist_count(dom.stdout) == 4 and "NOT a TensorRT engine." in dom.stdout

    shot = tmp_path / "report.png"
    done = _chromium(chromium, f"--screenshot={shot}", "--window-size=1200,2000", page.as_uri(), cwd=tmp_path)
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    from matplotlib.image import imread

    pixels = imread(shot)
    assert pixels.shape[:2] == (2000, 1200)
    colors = np.unique((pixels[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colors) > 50  # text, tables, badges, bars and plots, not a blank page
