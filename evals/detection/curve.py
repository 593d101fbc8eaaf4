"""The operating curve: what every other threshold would have given, from one run's records.

In the ``single`` setting each guard holds one concept, so a probe is flagged exactly when its
score reaches the threshold (aliases and full names score 1.0 and stay flagged). Moving the
threshold therefore needs no re-run: :func:`operating_curve` replays the recorded scores at
each candidate (a cosine similarity for the embedding detector, a probability for the learned
one) and reports forget recall per level against the neighbour and utility false-positive
rates. ``detect_curve.png`` plots it, with the threshold the run used marked, so a user can
pick the trade-off that suits their list.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

Record = dict[str, Any]
CURVE_FILE = "detect_curve.png"
POINTS = 41


def _groups(records: Sequence[Record]) -> dict[str, list[Record]]:
    groups: dict[str, list[Record]] = {}
    for record in records:
        if record["kind"] == "forget":
            name = f"forget L{record['level']}" if record["level"] else "forget"
        elif record["kind"] in {"neighbor", "utility"}:
            name = record["kind"]
        else:
            continue
        groups.setdefault(name, []).append(record)
    return dict(sorted(groups.items()))


def operating_curve(records: Sequence[Record]) -> dict[str, Any] | None:
    """Flagged share per group at each threshold, single-setting records only."""
    single = [r for r in records if r["setting"] == "single"]
    if not single:
        return None
    scores = np.array([r["score"] for r in single])
    low, high = float(np.quantile(scores, 0.05)), float(min(1.0, scores.max()))
    thresholds = np.linspace(low, high, POINTS)
    rates: dict[str, list[float]] = {}
    for name, group in _groups(single).items():
        values = np.array([r["score"] for r in group])
        rates[name] = [float((values >= t).mean()) for t in thresholds]
    used = sorted({r["threshold"] for r in single})
    return {"thresholds": [float(t) for t in thresholds], "rates": rates, "used": used}


def plot_curve(curve: dict[str, Any], path: Path, title: str) -> None:
    """Forget recall per level (y) against the neighbour false-positive rate (x)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    rates = curve["rates"]
    fig, (left, right) = pyplot.subplots(1, 2, figsize=(11, 4.2))
    thresholds = curve["thresholds"]
    for name, values in rates.items():
        right.plot(thresholds, values, label=name)
        if name.startswith("forget") and "neighbor" in rates:
            left.plot(rates["neighbor"], values, marker=".", label=name)
    for value in curve["used"]:
        right.axvline(value, color="grey", linestyle="--", linewidth=1)
    left.set(xlabel="neighbour false-positive rate", ylabel="forget recall", title=title)
    right.set(xlabel="threshold", ylabel="flagged share", title="flagged share by threshold")
    for axis in (left, right):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    pyplot.close(fig)
