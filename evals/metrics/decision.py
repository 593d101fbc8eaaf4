"""Parsing the proxy's ``X-Nescio-Decision`` header (``allow`` or ``refuse; concept=id; ...``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class HeaderDecision:
    action: str
    concept_id: str | None = None
    score: float | None = None

    @property
    def flagged(self) -> bool:
        return self.action != "allow"


def parse_decision(header: str | None) -> HeaderDecision | None:
    """``None`` when there is no header (a system without a guard, or headers turned off)."""
    if header is None or not header.strip():
        return None
    action, *fields = [part.strip() for part in header.split(";")]
    values = dict(f.partition("=")[::2] for f in fields if "=" in f)
    try:
        score = float(values["score"]) if "score" in values else None
    except ValueError:
        score = None
    return HeaderDecision(action.lower(), values.get("concept") or None, score)
