"""Run-level summary: metric means per system, probe set and type, forget vs keep scores,
retention relative to a baseline system, and the proxy's detection quality from its headers."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from statistics import mean
from typing import Any

from evals.metrics.registry import METRICS, Item, applicable_metrics, primary_metric


def _means(scored: Sequence[dict[str, float]]) -> dict[str, float]:
    values: dict[str, list[float]] = defaultdict(list)
    for scores in scored:
        for name, value in scores.items():
            values[name].append(value)
    return {name: mean(v) for name, v in values.items()}


def _primary(item: Item, scores: dict[str, float]) -> float | None:
    name = primary_metric(item["probe"]["format"])
    return scores.get(name) if name else None


def summarize_run(items: Sequence[Item], baseline: str | None = None) -> dict[str, Any]:
    """Everything the report shows; ``baseline`` names the system retention is relative to."""
    scored = [(item, applicable_metrics(item)) for item in items]
    systems = sorted({item["system"] for item in items})
    out: dict[str, Any] = {
        "metrics": {
            name: {"higher_is_better": m.higher_is_better, "description": m.description}
            for name, m in METRICS.items()
        },
        "baseline": baseline,
        "systems": {},
    }
    for system in systems:
        mine = [(i, s) for i, s in scored if i["system"] == system]
        out["systems"][system] = _system_summary(mine)
    if baseline in out["systems"]:
        base = out["systems"][baseline]["by_kind"]
        for summary in out["systems"].values():
            summary["retention_vs_baseline"] = {
                kind: _ratio(block.get("primary"), base.get(kind, {}).get("primary"))
                for kind, block in summary["by_kind"].items()
                if kind != "forget"
            }
    return out


def _system_summary(scored: Sequence[tuple[Item, dict[str, float]]]) -> dict[str, Any]:
    groups: dict[tuple[str, str], list[tuple[Item, dict[str, float]]]] = defaultdict(list)
    kinds: dict[str, list[tuple[Item, dict[str, float]]]] = defaultdict(list)
    for item, scores in scored:
        probe = item["probe"]
        groups[(probe["probe_set"], probe["type"] or "-")].append((item, scores))
        kinds[probe["kind"]].append((item, scores))
    forget = [p for i, s in kinds.get("forget", []) if (p := _primary(i, s)) is not None]
    keep = [
        p
        for kind, pairs in kinds.items()
        if kind != "forget"
        for i, s in pairs
        if (p := _primary(i, s)) is not None
    ]
    return {
        "n": len(scored),
        "errors": sum(1 for i, _ in scored if i.get("error") is not None),
        "forget_score": mean(forget) if forget else None,
        "keep_score": mean(keep) if keep else None,
        "by_kind": {kind: _block(pairs) for kind, pairs in sorted(kinds.items())},
        "by_set_type": [
            {"probe_set": s, "type": t, **_block(pairs)} for (s, t), pairs in sorted(groups.items())
        ],
        "detection": _detection(scored),
    }


def _block(pairs: Sequence[tuple[Item, dict[str, float]]]) -> dict[str, Any]:
    primaries = [p for i, s in pairs if (p := _primary(i, s)) is not None]
    return {
        "n": len(pairs),
        "primary": mean(primaries) if primaries else None,
        **_means([s for _, s in pairs]),
    }


def _detection(scored: Sequence[tuple[Item, dict[str, float]]]) -> dict[str, Any] | None:
    """Precision/recall/FPR of the guard, overall and per probe type, from decision headers."""
    flagged = [(i, s["flagged_rate"]) for i, s in scored if "flagged_rate" in s]
    if not flagged:
        return None
    by_type: dict[str, list[tuple[Item, float]]] = defaultdict(list)
    for item, value in flagged:
        probe = item["probe"]
        by_type[f"{probe['kind']}/{probe['type'] or '-'}"].append((item, value))
    return {"overall": _prf(flagged), "by_type": {k: _prf(v) for k, v in sorted(by_type.items())}}


def _prf(pairs: Sequence[tuple[Item, float]]) -> dict[str, Any]:
    positives = [v for i, v in pairs if i["probe"]["kind"] == "forget"]
    negatives = [v for i, v in pairs if i["probe"]["kind"] != "forget"]
    true_pos, false_pos = sum(positives), sum(negatives)
    return {
        "n_forget": len(positives),
        "n_other": len(negatives),
        "recall": true_pos / len(positives) if positives else None,
        "fpr": false_pos / len(negatives) if negatives else None,
        "precision": true_pos / (true_pos + false_pos) if true_pos + false_pos else None,
    }


def _ratio(value: float | None, base: float | None) -> float | None:
    if value is None or base is None or base == 0:
        return None
    return value / base
