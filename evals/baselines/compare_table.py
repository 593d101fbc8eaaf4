"""The comparison table: columns, which way each is better, the "best" pick, Markdown output."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

HIGHER_IS_BETTER = {
    "forget_rouge_l": False,
    "retain_rouge_l": True,
    "real_authors_acc": True,
    "world_facts_acc": True,
    "real_authors_rouge_l": True,
    "world_facts_rouge_l": True,
    "forget_truth_ratio": False,
    "forget_quality": True,
}
INFO_COLUMNS = ("logprob_coverage", "flagged_forget", "flagged_retain")
RETAIN_FLOOR = 0.9
"""A candidate for "best" must keep this share of the original model's retain ROUGE-L."""


def pick_best(rows: Sequence[dict[str, Any]], original_retain: float) -> str | None:
    """The row to call best: the lowest forget ROUGE-L among rows that keep at least
    `RETAIN_FLOOR` of the original model's retain ROUGE-L (forgetting that costs what the model
    must keep is not a result a platform engineer would ship); if none keeps it, the row with
    the highest retain ROUGE-L. None for no rows.

    One rule picks both the best weight-level baseline and the proxy policy put in front of it.
    """
    if not rows:
        return None
    kept = [r for r in rows if r["retain_rouge_l"] >= RETAIN_FLOOR * original_retain]
    if kept:
        return str(min(kept, key=lambda r: r["forget_rouge_l"])["model"])
    return str(max(rows, key=lambda r: r["retain_rouge_l"])["model"])


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """The results as a Markdown table (arrows say which direction is better)."""
    columns = ["model", "method", "train_wall_s", *HIGHER_IS_BETTER, *INFO_COLUMNS, "eval_wall_s"]
    arrows = {key: (" ↑" if up else " ↓") for key, up in HIGHER_IS_BETTER.items()}
    header = "| " + " | ".join(c + arrows.get(c, "") for c in columns) + " |"
    lines = [header, "|" + "---|" * len(columns)]
    for row in rows:
        cells = [_cell(row.get(c)) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e-2 and value != 0 else f"{value:.3f}"
    return "n/a" if value is None else str(value)


def write_plot(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """`path` (PNG): forget vs retain ROUGE-L per row (top-left is best: forgets, keeps
    answering) beside forget quality on a log scale (rows without one are left out)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    fig, (scatter, bars) = pyplot.subplots(1, 2, figsize=(12, 4.5))
    for row in rows:
        x, y = row["forget_rouge_l"], row["retain_rouge_l"]
        marker = "s" if row.get("policy") else "o"
        scatter.scatter([x], [y], s=50, marker=marker)
        scatter.annotate(row["model"], (x, y), textcoords="offset points", xytext=(4, 4),
                         fontsize=7)  # fmt: skip
    scatter.set_xlabel("forget ROUGE-L (lower is better)")
    scatter.set_ylabel("retain ROUGE-L (higher is better)")
    scatter.grid(alpha=0.3)
    quality = [(row["model"], row["forget_quality"]) for row in rows if row["forget_quality"]]
    bars.barh([name for name, _ in quality], [value for _, value in quality])
    bars.set_xscale("log")
    bars.set_xlabel("forget quality (KS p-value vs retain model, higher is better)")
    bars.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    pyplot.close(fig)
