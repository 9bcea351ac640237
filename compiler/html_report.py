"""The HTML report: the compile report (or a regression check's result) as one self-contained page.

Pure functions of the JSON, so a saved ``OUT.report.json`` renders the same page
later. Everything is inline: CSS in a ``<style>`` block, the error histograms as
base64 PNGs drawn with matplotlib's Agg canvas (imported only when a plot is
drawn), no JavaScript, no external URL. Every string from the report is escaped.
"""
from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path

from .artifacts import write_text_atomic

MAX_PLOTS = 48  # error-histogram plots per page; beyond this the tables still hold every number
PLOT_SIZE = (4.0, 2.2)  # inches
PLOT_DPI = 80

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d232b;background:#f6f7f9;margin:0}
main{max-width:1180px;margin:0 auto;padding:20px 28px 48px}
h1{font-size:22px;margin:4px 0 8px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #d5d9de;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px}
table{border-collapse:collapse;background:#fff;margin:6px 0 12px;font-size:13px}
th,td{border:1px solid #d5d9de;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#eef1f4;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px}
.badge{display:inline-block;padding:1px 8px;border-radius:9px;font-weight:600;font-size:12px}
.ok{background:#dcf3e1;color:#17602b}.failed{background:#fbe0e0;color:#9b1c1c}.skipped{background:#eceff3;color:#56606b}
.banner{padding:10px 14px;border-radius:6px;margin:10px 0;font-weight:600}
.banner.warn{background:#fff2cc;border:2px solid #e0a800;color:#6b4e00}
.banner.bad{background:#fbe0e0;border:2px solid #c53030;color:#7c1515}
.banner.good{background:#dcf3e1;border:1px solid #3f9d58;color:#17602b}
.muted{color:#5f6b77}.changed td{background:#f2f8ff}.failedrow td{background:#fff1f1}
.bar{display:inline-block;height:10px;background:#5b8def;vertical-align:middle;margin-right:6px}
.bar.b2{background:#f0a24b}.bar.b3{background:#9b6ddb}
.grid{display:flex;flex-wrap:wrap;gap:10px}
figure{margin:0;background:#fff;border:1px solid #d5d9de;padding:4px}
figcaption{font-size:12px;color:#444;max-width:320px;word-break:break-all}
.side{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}
nav a{margin-right:12px;color:#2456a6;text-decoration:none}
pre{background:#fff;border:1px solid #d5d9de;padding:8px;overflow:auto;font-size:12px;max-height:320px}
"""


class Markup(str):
    """Trusted HTML made by this module (never a string from the report)."""


def _e(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _cell(value) -> str:
    return value if isinstance(value, Markup) else _e(value)


def _num(value, spec: str = ".3g") -> str:
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return format(value, spec)


def _badge(status) -> Markup:
    text = {True: "ok", False: "FAIL"}.get(status, status) if isinstance(status, bool) else str(status)
    cls = {"ok": "ok", "passed": "ok", "failed": "failed", "fail": "failed", "skipped": "skipped"}.get(
        text.lower(), "skipped")
    return Markup(f'<span class="badge {cls}">{_e(text)}</span>')


def _table(headers: list[str], rows: list[list], numeric: set[int] = frozenset(), row_class=None,
           cls: str = "") -> str:
    """An HTML table; cells are escaped unless they are ``Markup``; ``numeric`` columns are right-aligned."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        rc = row_class(i) if row_class else ""
        cells = "".join(f'<td class="n">{_cell(c)}</td>' if j in numeric else f"<td>{_cell(c)}</td>"
                        for j, c in enumerate(row))
        body.append(f'<tr class="{rc}">{cells}</tr>' if rc else f"<tr>{cells}</tr>")
    attr = f' class="{cls}"' if cls else ""
    return f"<table{attr}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _kv(pairs: list[tuple[str, object]]) -> str:
    """A two-column key/value table; pairs whose value is None are left out."""
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_cell(v if isinstance(v, Markup) else _plain(v))}</td></tr>"
                   for k, v in pairs if v is not None)
    return f'<table class="kv"><tbody>{rows}</tbody></table>' if rows else ""


def _plain(value) -> str:
    """A short text for a free-form value (scalars as they are, containers as compact JSON)."""
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=str)
    if isinstance(value, float):
        return _num(value, ".4g")
    return str(value)


def _shape(shape) -> str:
    if shape is None:
        return "—"
    return "[" + ", ".join("?" if d is None or (isinstance(d, int) and d < 0) else str(d) for d in shape) + "]"


def _page(title: str, body: list[str]) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{_e(title)}</title><style>{_CSS}</style></head>\n<body><main>\n"
            + "\n".join(b for b in body if b) + "\n</main></body></html>\n")


def _nav(items: list[tuple[str, str]]) -> str:
    return "<nav>" + "".join(f'<a href="#{_e(anchor)}">{_e(text)}</a>' for anchor, text in items) + "</nav>"


# ---------------------------------------------------------------------------------------------------- plots


class _Plots:
    """Draws error histograms up to ``limit``; counts the ones left out."""

    def __init__(self, limit: int | None = None):
        self.limit, self.drawn, self.left_out = MAX_PLOTS if limit is None else limit, 0, 0

    def histogram(self, hist: dict | None, atol, title: str) -> str:
        if not hist or not hist.get("counts"):
            return f'<p class="muted">{_e(title)}: no error histogram recorded</p>'
        if self.drawn >= self.limit:
            self.left_out += 1
            return ""
        self.drawn += 1
        uri = histogram_png(hist, atol, title)
        total = sum(hist["counts"]) + hist.get("zero", 0) + hist.get("over", 0)
        caption = f"{title}: |a−b| of {total} element(s); {hist.get('zero', 0)} exact, {hist.get('over', 0)} over"
        return (f'<figure><img class="hist" src="{uri}" width="{int(PLOT_SIZE[0] * PLOT_DPI)}" '
                f'height="{int(PLOT_SIZE[1] * PLOT_DPI)}" alt="{_e("error histogram of " + title)}">'
                f"<figcaption>{_e(caption)}</figcaption></figure>")

    def footer(self) -> str:
        if not self.left_out:
            return ""
        return (f'<p class="banner warn">{self.left_out} error-histogram plot(s) left out (at most {self.limit} per '
                "report); the tables above hold every number.</p>")


def histogram_png(hist: dict, atol, title: str = "") -> str:
    """A ``data:image/png;base64,…`` bar chart of |a−b| counts per decade, exact matches and overflow at the
    ends, with a dashed line at ``atol``. Drawn on matplotlib's Agg canvas (no pyplot, no global backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    edges = [float(e) for e in hist["edges"]]
    counts = [int(c) for c in hist["counts"]]
    lo, hi = math.log10(edges[0]), math.log10(edges[-1])
    xs = [lo - 1.0] + [math.log10(e) + 0.5 for e in edges[:-1]] + [hi + 1.0]
    ys = [int(hist.get("zero", 0))] + counts + [int(hist.get("over", 0))]
    tol = float(atol) if atol is not None else None
    colors = []
    for i, x in enumerate(xs):
        if i == 0:
            colors.append("#3f9d58")
        elif i == len(xs) - 1:
            colors.append("#c53030")
        else:
            colors.append("#e0892b" if tol is not None and edges[i - 1] >= tol else "#5b8def")
    fig = Figure(figsize=PLOT_SIZE, dpi=PLOT_DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.bar(xs, ys, width=0.85, color=colors)
    if max(ys) > 0:
        ax.set_yscale("log")
        ax.set_ylim(0.7, max(ys) * 1.8)
    ticks = [lo - 1.0] + [e for e in range(int(lo), int(hi) + 1, 2)] + [hi + 1.0]
    labels = ["0"] + [f"1e{e}" for e in range(int(lo), int(hi) + 1, 2)] + ["over"]
    ax.set_xticks(ticks)
    ax.set_xticklabels(labels, fontsize=6)
    ax.tick_params(axis="y", labelsize=6)
    ax.set_xlim(lo - 1.7, hi + 1.7)
    if tol is not None:
        x_tol = lo - 0.5 if tol <= 0 else min(max(math.log10(tol), lo), hi)
        ax.axvline(x_tol, color="#c53030", linestyle="--", linewidth=1)
        ax.text(x_tol, 1.0, f" atol {tol:.2g}", transform=ax.get_xaxis_transform(), va="top", ha="left",
                fontsize=6, color="#c53030")
    ax.set_title(title, fontsize=7)
    ax.set_xlabel("|a − b|", fontsize=6, labelpad=1)
    fig.tight_layout(pad=0.3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=PLOT_DPI)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


# ---------------------------------------------------------------------------------------------------- sections


def _error_row(name, o: dict, extra_before: list = (), extra_after: list = ()) -> list:
    return [name, *extra_before, _shape(o.get("shape")),
            _num(o.get("max_abs"), ".2e"), _num(o.get("mean_abs"), ".2e"), _num(o.get("p99_abs"), ".2e"),
            _num(o.get("max_rel"), ".2e"), _num(o.get("mean_rel"), ".2e"), _num(o.get("p99_rel"), ".2e"),
            _num(o.get("atol"), ".3g"), _num(o.get("rtol"), ".3g"), *extra_after, _badge(bool(o.get("passed")))]


_ERROR_HEADERS = ["shape", "max abs", "mean abs", "p99 abs", "max rel", "mean rel", "p99 rel", "atol", "rtol"]


def _divergence(fd: dict | None) -> str:
    """The first node whose output leaves tolerance, and the suspects behind it."""
    if not fd:
        return ""
    parts = ['<h2 id="divergence">First divergent node</h2>',
             f'<p class="banner bad">{_e(fd.get("op"))} <code>{_e(fd.get("node"))}</code> is the first node whose '
             f"output <code>{_e(fd.get('tensor'))}</code> leaves tolerance"
             + (f" (made by pass <code>{_e(fd['created_by'])}</code>)" if fd.get("created_by") else "") + ".</p>",
             _kv([("node", fd.get("node")), ("op", fd.get("op")), ("created by", fd.get("created_by")),
                  ("tensor", fd.get("tensor")), ("max abs", _num(fd.get("max_abs"), ".3e")),
                  ("max rel", _num(fd.get("max_rel"), ".3e")), ("atol", _num(fd.get("atol"), ".3g")),
                  ("rtol", _num(fd.get("rtol"), ".3g"))])]
    suspects = fd.get("suspects") or []
    if suspects:
        parts.append("<h3>Suspects</h3>")
        parts.append(_table(["node", "op", "created by"],
                            [[s.get("node"), s.get("op"), s.get("created_by") or "—"] for s in suspects]))
    return "\n".join(parts)


def _op_delta(delta: dict | None) -> str:
    if not delta:
        return ""
    return ", ".join(f"{op} {'+' if n > 0 else '−'}{abs(n)}" for op, n in sorted(delta.items(), key=lambda kv: kv[0]))


def _stats_text(stats: dict | None, limit: int = 140) -> str:
    if not stats:
        return ""
    parts = []
    for k, v in stats.items():
        if isinstance(v, (list, tuple, dict)):
            parts.append(f"{k}: {len(v)}" if v else f"{k}: none")
        else:
            parts.append(f"{k}={_plain(v)}")
    text = "; ".join(parts)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _passes_table(passes: list[dict]) -> str:
    if not passes:
        return '<p class="muted">No pass ran.</p>'
    rows = [[p.get("name"), p.get("iteration"), "changed" if p.get("changed") else "unchanged",
             f"{p.get('nodes_before')} → {p.get('nodes_after')}", _num((p.get("seconds") or 0.0) * 1000, ".2f"),
             _op_delta(p.get("op_delta")), _stats_text(p.get("stats"))] for p in passes]
    total = sum(p.get("seconds") or 0.0 for p in passes) * 1000
    changed = sum(1 for p in passes if p.get("changed"))
    return (_table(["pass", "round", "changed", "nodes", "ms", "op delta", "stats"], rows, numeric={1, 3, 4},
                   row_class=lambda i: "changed" if passes[i].get("changed") else "")
            + f'<p class="muted">{len(passes)} run(s), {changed} changed the graph, {total:.1f} ms in all.</p>')


def _op_histograms(graph: dict) -> str:
    """Op counts of every graph the report has (exported, cut, optimized, precision) side by side, with bars."""
    order = [k for k in ("exported", "cut", "optimized") if k in graph] + \
        [k for k in graph if k not in ("exported", "cut", "optimized")]
    if not order:
        return ""
    ops: dict[str, int] = {}
    for key in order:
        for op, n in (graph[key].get("ops") or {}).items():
            ops[op] = max(ops.get(op, 0), n)
    peak = max(ops.values(), default=1) or 1
    rows = []
    for op in sorted(ops, key=lambda o: (-ops[o], o)):
        counts = [(graph[k].get("ops") or {}).get(op, 0) for k in order]
        bars = "".join(f'<span class="bar{"" if i == 0 else f" b{min(i + 1, 3)}"}" '
                       f'style="width:{max(1, round(90 * c / peak)) if c else 0}px" title="{_e(order[i])}"></span>'
                       for i, c in enumerate(counts))
        delta = counts[-1] - counts[0]
        rows.append([op, *counts, f"{delta:+d}" if delta else "", Markup(bars)])
    totals = ["nodes", *[graph[k].get("nodes", sum((graph[k].get("ops") or {}).values())) for k in order], "", ""]
    legend = " ".join(f'<span class="bar{"" if i == 0 else f" b{min(i + 1, 3)}"}" style="width:14px"></span>'
                      f"{_e(k)}" for i, k in enumerate(order))
    table = _table(["op", *order, f"{order[-1]} − {order[0]}", "counts"], rows + [totals],
                   numeric=set(range(1, len(order) + 2)))
    return f'<h2 id="ops">Op histograms</h2><p class="muted">{legend}</p>{table}'


def _validation(seams: list[dict], plots: _Plots) -> str:
    if not seams:
        return '<h2 id="validation">Validation</h2><p class="muted">No seam was validated.</p>'
    parts = ['<h2 id="validation">Validation</h2>']
    for seam in seams:
        outs = seam.get("outputs") or {}
        parts.append(f"<h3>{_e(seam.get('seam'))}: {_e(seam.get('reference'))} → {_e(seam.get('candidate'))} "
                     f"{_badge(bool(seam.get('passed')))}</h3>")
        shapes = ", ".join(f"{k} {_shape(v)}" for k, v in (seam.get("shapes") or {}).items())
        parts.append(f'<p class="muted">data: {_e(seam.get("data"))}; iterations {_e(seam.get("iterations"))}'
                     + (f"; shapes: {_e(shapes)}" if shapes else "")
                     + ("; atol scaled by each output's peak magnitude" if seam.get("atol_scaled_by_peak") else "")
                     + "</p>")
        if seam.get("note"):
            parts.append(f'<p class="banner bad">{_e(seam["note"])}</p>')
        for w in seam.get("warnings") or []:
            parts.append(f'<p class="banner warn">{_e(w)}</p>')
        rows = []
        for name, o in outs.items():
            top1 = (f"{o['top1_agreement']:.1%} of {o.get('top1_rows')}" if o.get("top1_agreement") is not None
                    else "—")
            agree = f"{o['agreement']:.2%}" if o.get("agreement") is not None else "—"
            rows.append(_error_row(name, o, extra_after=[top1, agree]))
        parts.append(_table(["output", *_ERROR_HEADERS, "top-1 agreement", "agreement", "result"], rows,
                            numeric=set(range(2, 13)),
                            row_class=lambda i, o=list(outs.values()): "" if o[i].get("passed") else "failedrow"))
        figures = [plots.histogram(o.get("histogram"), o.get("atol"), f"{seam.get('seam')} · {name}")
                   for name, o in outs.items()]
        parts.append('<div class="grid">' + "".join(figures) + "</div>")
    return "\n".join(parts)


def _precision(prec: dict) -> str:
    mode = prec.get("mode", "fp32")
    if mode == "fp32" and len(prec) <= 1:
        return ""
    parts = [f'<h2 id="precision">Precision: {_e(mode)}</h2>']
    tol = prec.get("tolerances") or {}
    parts.append(_kv([("mode", mode),
                      ("tolerances", f"atol {tol.get('atol')}, rtol {tol.get('rtol')}" if tol else None),
                      ("atol scaled by peak", prec.get("atol_scaled_by_peak")),
                      ("calibration", prec.get("calibration")),
                      ("auto-mixed", {k: v for k, v in prec["auto_mixed"].items() if k != "kept_fp32"}
                       if isinstance(prec.get("auto_mixed"), dict) else prec.get("auto_mixed"))]))
    if prec.get("ops"):
        kinds = list(prec["ops"])
        names = sorted({op for counts in prec["ops"].values() for op in counts})
        parts.append("<h3>Nodes per precision</h3>" + _table(
            ["op", *kinds], [[op, *[prec["ops"][k].get(op, 0) for k in kinds]] for op in names],
            numeric=set(range(1, len(kinds) + 1))))
    if prec.get("kept_fp32"):
        parts.append("<h3>Kept in float32</h3>" + _table(
            ["node", "op", "reason"], [[k.get("node"), k.get("op"), k.get("reason")] for k in prec["kept_fp32"]]))
    if prec.get("passes"):
        parts.append("<h3>Precision passes</h3>" + _passes_table(prec["passes"]))
    return "\n".join(parts)


def _engine(engine: dict | None) -> str:
    if not engine:
        return ""
    parts = ['<h2 id="engine">Engine</h2>']
    structured = {"io", "profiles", "layer_types", "layer_precisions", "options", "ignored_options"}
    pairs = [(k, v) for k, v in engine.items() if k not in structured]
    if engine.get("ignored_options"):
        pairs.append(("ignored TensorRT-only options", ", ".join(map(str, engine["ignored_options"]))))
    if engine.get("options"):
        pairs.append(("builder options", engine["options"]))
    parts.append(_kv(pairs))
    if engine.get("io"):
        parts.append("<h3>IO tensors</h3>" + _table(
            ["mode", "name", "dtype", "shape", "profile shapes (min / opt / max)"],
            [[t.get("mode"), t.get("name"), t.get("dtype"), _shape(t.get("shape")),
              "; ".join(" / ".join(_shape(s) for s in prof) for prof in t.get("profiles") or []) or "—"]
             for t in engine["io"]]))
    if engine.get("profiles"):
        rows = [[i, name, _shape(s.get("min")), _shape(s.get("opt")), _shape(s.get("max"))]
                for i, prof in enumerate(engine["profiles"]) for name, s in prof.items()]
        parts.append("<h3>Optimization profiles</h3>" + _table(["profile", "input", "min", "opt", "max"], rows))
    for key, title in (("layer_types", "Layer types"), ("layer_precisions", "Layer precisions")):
        if engine.get(key):
            parts.append(f"<h3>{title}</h3>" + _table(["kind", "layers"], [[k, v] for k, v in engine[key].items()],
                                                      numeric={1}))
    return "\n".join(parts)


def _versions(versions: dict | None) -> str:
    if not versions:
        return ""
    return '<h2 id="versions">Versions</h2>' + _table(
        ["package", "version"], [[k, v if v is not None else "not installed"] for k, v in versions.items()])


def _notices(notices: list[str], title: str = "Notices") -> str:
    if not notices:
        return ""
    return (f'<h2 id="notices">{_e(title)}</h2><ul>'
            + "".join(f"<li>{_e(n)}</li>" for n in notices) + "</ul>")


# ---------------------------------------------------------------------------------------------------- pages


def render_compile(report: dict) -> str:
    """The compile report JSON (``Report.to_json()``, as written to OUT.report.json) as an HTML page."""
    status = report.get("status", "failed")
    backend = report.get("backend")
    engine = report.get("engine") or {}
    prec = report.get("precision") or {}
    plots = _Plots()
    loc = report.get("localization")
    fd = loc.get("first_divergence") if isinstance(loc, dict) else None

    body = [f"<h1>Compile report: {_e(report.get('model'))} {_badge(status)}</h1>"]
    out = report.get("out")
    body.append(_kv([("model", report.get("model")),
                     ("engine", out if status == "ok" or out is None else f"{out} (not written: the run failed)"),
                     ("backend", backend or "not chosen (the run stopped before)"),
                     ("engine format", engine.get("format")), ("precision", prec.get("mode", "fp32")),
                     ("status", _badge(status))]))
    err = report.get("error")
    if err:
        body.append(f'<p class="banner bad">FAILED in stage {_e(err.get("stage"))} (exit code '
                    f'{_e(err.get("exit_code"))}): {_e(err.get("message"))}</p>')
        if err.get("details") is not None:
            body.append("<pre>" + _e(json.dumps(err["details"], indent=2, default=str)) + "</pre>")
    elif status != "ok":
        failed = [s.get("seam") for s in report.get("validation") or [] if not s.get("passed")]
        body.append(f'<p class="banner bad">FAILED: validation of {_e(", ".join(map(str, failed)) or "a seam")}'
                    "</p>")
    else:
        validated = (report.get("stages") or {}).get("validate", {}).get("status") == "ok"
        body.append('<p class="banner good">Compiled and validated.</p>' if validated else
                    '<p class="banner warn">Compiled, NOT validated (validation skipped).</p>')
    if report.get("backend_notice") or (engine.get("format") and engine.get("format") != "tensorrt-plan"):
        text = report.get("backend_notice") or f"This artifact is {engine.get('format')}."
        body.append(f'<p class="banner warn">NOT a TensorRT engine. {_e(text)}</p>')
    sections = [("stages", "Stages"), ("passes", "Passes"), ("ops", "Ops"), ("validation", "Validation")]
    if fd:
        sections.append(("divergence", "First divergence"))
    if prec.get("mode", "fp32") != "fp32":
        sections.append(("precision", "Precision"))
    sections += [("notices", "Notices"), ("engine", "Engine"), ("io", "Inputs/outputs"), ("versions", "Versions")]
    body.append(_nav(sections))
    body.append(_divergence(fd))

    stages = report.get("stages") or {}
    graph = report.get("graph") or {}
    nodes = {"export": graph.get("exported", {}).get("nodes"), "optimize": graph.get("optimized", {}).get("nodes"),
             "precision": graph.get(prec.get("mode", "fp32"), {}).get("nodes")}
    rows = [[name, _badge(rec.get("status", "skipped")), _num(rec.get("seconds"), ".2f"),
             "" if nodes.get(name) is None else nodes[name], rec.get("note") or ""] for name, rec in stages.items()]
    total = sum(rec.get("seconds") or 0.0 for rec in stages.values())
    body.append('<h2 id="stages">Stages</h2>' + _table(["stage", "status", "seconds", "nodes after", "note"], rows,
                                                        numeric={2, 3})
                + f'<p class="muted">{total:.2f} s in all.</p>')
    body.append('<h2 id="passes">Passes</h2>' + _passes_table(report.get("passes") or []))
    body.append(_op_histograms(graph))
    body.append(_validation(report.get("validation") or [], plots))
    body.append(plots.footer())
    if isinstance(loc, dict):
        rest = [(k, v) for k, v in loc.items() if k != "first_divergence"]
        if rest:
            body.append("<h3>Localization</h3>" + _kv(rest))
    body.append(_precision(prec))
    body.append(_notices(report.get("notices") or []))
    trt = report.get("trt_check") or {}
    if trt.get("findings"):
        body.append(f"<h3>TensorRT parser check ({_e(trt.get('table'))})</h3>" + _table(
            ["op", "node", "where", "reason", "fix"],
            [[f.get("op"), f.get("node"), f.get("where"), f.get("reason"), f.get("fix")] for f in trt["findings"]]))
    safety = report.get("safety") or {}
    if safety.get("findings"):
        body.append("<h3>Unsafe ops found in the SavedModel</h3>" + _table(
            sorted({k for f in safety["findings"] for k in f}),
            [[f.get(k) for k in sorted({k for f in safety["findings"] for k in f})] for f in safety["findings"]]))
    body.append(_engine(engine))
    io_rows = [["input", t.get("name"), t.get("dtype"), _shape(t.get("shape")), _shape(t.get("validation_shape"))]
               for t in report.get("inputs") or []]
    io_rows += [["output", t.get("name"), t.get("dtype"), _shape(t.get("shape")), ""]
                for t in report.get("outputs") or []]
    if io_rows:
        body.append('<h2 id="io">Inputs and outputs</h2>'
                    + _table(["kind", "name", "dtype", "shape", "validated with"], io_rows))
    if report.get("interface"):
        body.append("<h3>Engine interface changes</h3><pre>" + _e(json.dumps(report["interface"], indent=2)) + "</pre>")
    if report.get("intermediates"):
        body.append("<h3>Intermediate files</h3>" + _table(["what", "path"],
                                                           [[k, v] for k, v in report["intermediates"].items()]))
    body.append(_versions(report.get("versions")))
    return _page(f"compile report: {report.get('model')} ({status})", body)


def render_check(result: dict) -> str:
    """A regression check's result (artifact vs its golden outputs) as an HTML page."""
    status = result.get("status", "failed")
    manifest = result.get("manifest") or {}
    plots = _Plots()
    body = [f"<h1>Regression check: {_e(result.get('artifact'))} {_badge(status)}</h1>",
            _kv([("artifact", result.get("artifact")), ("format", result.get("format")),
                 ("golden", result.get("golden")), ("samples", result.get("samples")), ("status", _badge(status))])]
    if result.get("format") and result.get("format") != "tensorrt-plan":
        body.append(f'<p class="banner warn">NOT a TensorRT engine: the artifact is {_e(result.get("format"))}.</p>')
    outputs = result.get("outputs") or []
    bad = [o.get("name") for o in outputs if not o.get("passed")]
    if status != "passed":
        body.append('<p class="banner bad">FAILED: ' + (f"{len(bad)} output(s) differ from the golden outputs: "
                                                       + ", ".join(_e(b) for b in bad) if bad
                                                       else "see the notes") + "</p>")
    else:
        body.append(f'<p class="banner good">All {len(outputs)} output(s) match the golden outputs.</p>')
    rows = [_error_row(o.get("name"), o, extra_before=[o.get("compare")], extra_after=[o.get("detail") or ""])
            for o in outputs]
    body.append('<h2 id="outputs">Outputs</h2>' + _table(
        ["output", "compare", *_ERROR_HEADERS, "detail", "result"], rows, numeric=set(range(3, 12)),
        row_class=lambda i: "" if outputs[i].get("passed") else "failedrow"))
    figures = [plots.histogram(o.get("histogram"), o.get("atol"), str(o.get("name"))) for o in outputs
               if o.get("histogram") or o.get("compare", "elementwise") == "elementwise"]
    body.append('<div class="grid">' + "".join(figures) + "</div>")
    body.append(plots.footer())
    body.append(_divergence(result.get("first_divergence")))
    body.append(_notices(result.get("notes") or [], "Notes"))
    if manifest:
        versions = manifest.get("versions") if isinstance(manifest.get("versions"), dict) else None
        body.append('<h2 id="manifest">Golden manifest</h2>'
                    + _kv([(k, v) for k, v in manifest.items() if not (k == "versions" and versions)]))
        if versions:
            body.append("<h3>Versions the golden outputs were made with</h3>" + _table(
                ["package", "version"], [[k, v if v is not None else "not installed"] for k, v in versions.items()]))
    return _page(f"regression check: {result.get('artifact')} ({status})", body)


def _seams_cell(seams: list[dict]) -> Markup:
    """Each seam's worst max abs error over its outputs, failed seams marked."""
    parts = [f"{_e(s.get('seam'))} {_num(s.get('max_abs'), '.1e')}" + ("" if s.get("passed") else " FAIL")
             for s in seams or []]
    return Markup("<br>".join(parts) if parts else "—")


def render_batch(index: dict) -> str:
    """A batch run's index (build/index.json): one row per model, linking each model's own report page."""
    models = index.get("models") or []
    counts = index.get("counts") or {}
    rows = []
    for r in models:
        link = (Markup(f'<a href="{_e(r["name"])}/{_e(r["report"])}">report</a>') if r.get("report") else "—")
        check = r.get("check")
        rows.append([r.get("name"), _badge("ok" if r.get("status") == "passed" else r.get("status")),
                     r.get("stage") or "", r.get("error") or "", _seams_cell(r.get("seams")),
                     "—" if check is None else ("ok" if check.get("passed") else "REGRESSION"),
                     _num(r.get("latency_ms"), ".3f"), _num(r.get("size_bytes"), "d"), r.get("precision") or "—",
                     r.get("backend") or "—", _num(r.get("seconds"), ".1f"), link])
    passed = index.get("passed")
    body = [f"<h1>Batch: {_e(index.get('project'))} {_badge('ok' if passed else 'failed')}</h1>",
            f'<p class="banner {"good" if passed else "bad"}">{counts.get("passed", 0)} passed, '
            f'{counts.get("unchanged", 0)} unchanged, {counts.get("failed", 0)} failed '
            f'in {_num(index.get("seconds"), ".1f")} s</p>',
            '<h2 id="models">Models</h2>' + _table(
                ["model", "status", "failed stage", "why", "seams (max abs)", "golden", "p50 ms", "bytes",
                 "precision", "backend", "seconds", "report"], rows, numeric={6, 7, 10},
                row_class=lambda i: "failedrow" if models[i].get("status") == "failed" else "")]
    return _page(f"batch: {index.get('project')}", body)


def write_html(path: Path, text: str) -> None:
    """Write the page atomically (a failed write leaves no half file), as ASCII with character references so
    it reads the same whatever the locale's encoding."""
    write_text_atomic(Path(path), text.encode("ascii", "xmlcharrefreplace").decode("ascii"), "HTML report")
