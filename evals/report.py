"""The run report: ``summary.json`` plus a self-contained ``report.html`` (PNG plots inlined).

Plots: forget score vs keep score per system (bottom-right is best: forgets, keeps answering),
the primary metric per probe set and type for each system, and a comparison table.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

from evals.errors import RunDirError
from evals.metrics.aggregate import summarize_run
from evals.runner.run import RUN_FILE, load_items

SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.html"


def write_report(run_dir: Path, baseline: str | None = None) -> dict[str, Any]:
    """Summarise a run folder and write its summary JSON and HTML report."""
    items = load_items(run_dir)
    if not items:
        raise RunDirError(f"{run_dir}: items.jsonl holds no results yet")
    run_file = run_dir / RUN_FILE
    run_info = json.loads(run_file.read_text()) if run_file.exists() else {}
    systems = sorted({item["system"] for item in items})
    if baseline is None:
        baseline = "raw" if "raw" in systems else systems[0]
    summary = summarize_run(items, baseline)
    summary["run"] = run_info
    (run_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    (run_dir / REPORT_FILE).write_text(render_html(summary), encoding="utf-8")
    return summary


def render_html(summary: dict[str, Any]) -> str:
    systems: dict[str, Any] = summary["systems"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Nescio evaluation</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
        "th:first-child,td:first-child{text-align:left}</style></head><body>",
        "<h1>Nescio evaluation report</h1>",
        f"<p>Baseline for retention: <b>{html.escape(str(summary.get('baseline')))}</b>. "
        "Forget score: mean answer metric on forget probes (lower is better). Keep score: mean "
        "on neighbour/retain/utility probes (higher is better).</p>",
        "<h2>Forget vs keep</h2>",
        _img(_scatter(systems)),
        "<h2>Per probe set and type</h2>",
        _img(_bars(systems)),
        "<h2>Comparison</h2>",
        _table(summary),
        "<h2>Metrics</h2><ul>",
        *(
            f"<li><b>{html.escape(name)}</b> ({'higher' if m['higher_is_better'] else 'lower'} "
            f"is better when kept): {html.escape(m['description'])}</li>"
            for name, m in summary["metrics"].items()
        ),
        "</ul></body></html>",
    ]
    return "\n".join(parts)


def _figure() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    return pyplot


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    _figure().close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def _img(data: str) -> str:
    return f"<img alt='plot' src='data:image/png;base64,{data}'>"


def _scatter(systems: dict[str, Any]) -> str:
    plt = _figure()
    fig, ax = plt.subplots(figsize=(5, 4))
    for name, summary in systems.items():
        x, y = summary.get("forget_score"), summary.get("keep_score")
        if x is not None and y is not None:
            ax.scatter([x], [y], s=60)
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, 5))
    ax.set_xlabel("forget score (lower is better)")
    ax.set_ylabel("keep score (higher is better)")
    ax.set_xlim(-0.05, 1.05)
    ax.set_ylim(-0.05, 1.05)
    ax.grid(alpha=0.3)
    return _png(fig)


def _bars(systems: dict[str, Any]) -> str:
    plt = _figure()
    labels = sorted(
        {f"{r['probe_set']} / {r['type']}" for s in systems.values() for r in s["by_set_type"]}
    )
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(labels) * max(1, len(systems))), 4))
    width = 0.8 / max(1, len(systems))
    for k, (name, summary) in enumerate(systems.items()):
        values = {f"{r['probe_set']} / {r['type']}": r["primary"] for r in summary["by_set_type"]}
        heights = [values.get(label) or 0.0 for label in labels]
        ax.bar([i + k * width for i in range(len(labels))], heights, width, label=name)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(labels))])
    ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("primary metric (ROUGE-L recall / MC accuracy)")
    ax.legend()
    return _png(fig)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return html.escape("-" if value is None else str(value))


def _table(summary: dict[str, Any]) -> str:
    systems = summary["systems"]
    rows = ["<table><tr><th>system</th><th>n</th><th>errors</th><th>forget score</th>"
            "<th>keep score</th><th>refusal (forget)</th><th>refusal (other)</th>"
            "<th>guard recall</th><th>guard FPR</th><th>guard precision</th>"
            "<th>retention vs baseline</th></tr>"]  # fmt: skip
    for name, s in systems.items():
        kinds = s["by_kind"]
        other_refusal = [b.get("refusal_rate") for k, b in kinds.items() if k != "forget"]
        other = [v for v in other_refusal if v is not None]
        detection = (s.get("detection") or {}).get("overall", {})
        retention = s.get("retention_vs_baseline") or {}
        cells = [
            name,
            s["n"],
            s["errors"],
            s["forget_score"],
            s["keep_score"],
            kinds.get("forget", {}).get("refusal_rate"),
            sum(other) / len(other) if other else None,
            detection.get("recall"),
            detection.get("fpr"),
            detection.get("precision"),
            ", ".join(f"{k}: {_cell(v)}" for k, v in retention.items()) or None,
        ]
        rows.append("<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in cells) + "</tr>")
    rows.append("</table>")
    return "\n".join(rows)
