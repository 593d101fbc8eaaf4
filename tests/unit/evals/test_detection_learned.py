"""Fitting the learned detector's scorer, and running detection with it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from evals.concept_sources.rwku import lead_names, name_aliases
from evals.detection.evaluate import evaluate_detection
from evals.detection.fit_scorer import (
    PLACEHOLDER,
    TrainingRows,
    pick_threshold,
    training_rows,
)
from evals.detection.plan import Setting
from evals.probes import Probe, ProbeKind, first_per_set
from guards.concepts import Concept, ConceptList
from guards.encoder import Encoder
from guards.guard import build_index
from guards.learned_detector import LearnedDetector
from guards.scorer import FEATURES, LogisticScorer

CONCEPTS = ConceptList(
    concepts=[
        Concept(id="reef", name="Elara Voss", examples=["coral reef survey bleaching atlas"]),
        Concept(id="jazz", name="Tomas Brandt", examples=["jazz piano quartet harbour album"]),
    ]
)


def _probe(pid: str, kind: ProbeKind, text: str, targets: tuple[str, ...] = ()) -> Probe:
    return Probe(
        id=pid, probe_set=f"custom:{kind.value}", kind=kind, target_ids=targets,
        query=text, prompt=text,
    )  # fmt: skip


PROBES = [
    _probe("f1", ProbeKind.FORGET, "Where does Elara Voss live?", ("reef",)),
    _probe("f2", ProbeKind.FORGET, "Which coral reef bleaching survey?", ("reef",)),
    _probe("n1", ProbeKind.NEIGHBOR, "Which jazz harbour festival?", ("jazz",)),
    _probe("u1", ProbeKind.UTILITY, "What is two plus two?"),
    _probe("u2", ProbeKind.UTILITY, "Name a piano sonata."),
]


def test_training_rows_pair_each_probe_with_the_right_concepts(fake_encoder: Encoder) -> None:
    detector = LearnedDetector(
        CONCEPTS, fake_encoder, build_index(CONCEPTS, fake_encoder), PLACEHOLDER
    )
    rows = training_rows(detector, ["reef", "jazz"], PROBES)
    # forget: own concept (positive, unless the probe names it: aliases are decisive, not
    # learned) + the other concept (negative); neighbour: own; utility: nearest.
    assert rows.labels.tolist() == [False, True, False, False, False, False]
    assert rows.kinds.tolist() == ["forget"] * 3 + ["neighbor", "utility", "utility"]
    assert rows.probe_rows.tolist() == [0, 1, 1, 2, 3, 4]
    assert rows.concepts.tolist()[:3] == [1, 0, 1]  # f1: other only (names its own); f2: both
    assert rows.features.shape == (6, len(FEATURES))
    assert rows.features[1, FEATURES.index("sim_corpus")] > 0.5


def test_pick_threshold_respects_both_false_positive_budgets() -> None:
    rows = TrainingRows(
        features=np.zeros((5, len(FEATURES))),
        labels=np.array([True, False, False, False, False]),
        kinds=np.array(["forget", "neighbor", "neighbor", "utility", "utility"]),
        probe_rows=np.arange(5),
        concepts=np.zeros(5, dtype=np.int64),
    )
    probabilities = np.array([0.95, 0.6, 0.2, 0.3, 0.1])
    assert pick_threshold(probabilities, rows, 0.5, 0.0) == 0.31
    assert pick_threshold(probabilities, rows, 0.0, 0.0) == 0.61
    probabilities[1] = 0.999  # no threshold up to 0.99 keeps this neighbour out
    assert pick_threshold(probabilities, rows, 0.0, 0.0) is None


def test_first_per_set_caps_only_the_given_kind() -> None:
    kept = first_per_set(PROBES, ProbeKind.UTILITY, 1)
    assert [p.id for p in kept] == ["f1", "f2", "n1", "u1"]


def test_evaluation_with_the_learned_detector(tmp_path: Path, fake_encoder: Encoder) -> None:
    alias_only = LogisticScorer(tuple(0.0 for _ in FEATURES), -10.0, 0.5, "test")
    summary = evaluate_detection(
        CONCEPTS,
        PROBES,
        [Setting.ALL],
        fake_encoder,
        tmp_path,
        progress=False,
        detector="learned",
        scorer=alias_only,
    )
    block = summary["settings"]["all"]
    assert block["by_kind"]["forget"]["flagged"] == 1  # only f1 names its target
    assert block["by_kind"]["neighbor"]["flagged"] == 0
    assert summary["detector"] == "learned"
    assert summary["scorer"]["bias"] == -10.0


def test_rwku_aliases_come_from_the_name_alone() -> None:
    assert name_aliases("Prince Harry, Duke of Sussex") == ["Prince Harry", "Duke of Sussex"]
    assert name_aliases("Meghan, Duchess of Sussex") == ["Duchess of Sussex"]
    assert name_aliases("John D. Rockefeller") == ["John Rockefeller"]
    assert name_aliases("Robert Downey Jr.") == ["Robert Downey"]
    assert name_aliases("Stephen King") == name_aliases("Confucius") == []


@pytest.mark.parametrize(
    ("opening", "names"),
    [
        (
            "Stephen Edwin King (born September 21, 1947) is an American author.",
            ["Stephen Edwin King"],
        ),
        (
            "Ye ( YAY; born Kanye Omari West  KAHN-yay; June 8, 1977) is a rapper.",
            ["Kanye Omari West"],
        ),
        ("Sir Anthony Charles Lynton Blair (born 6 May 1953) is", ["Anthony Charles Lynton Blair"]),
        ('Carlos Ray "Chuck" Norris (born March 10, 1940) is', ["Carlos Ray Norris"]),
        ("O'Shea Jackson Sr. (born June 15, 1969), better known as", ["O'Shea Jackson Sr."]),
        ("Curtis James Jackson III (born July 6, 1975) is", ["Curtis James Jackson III"]),
        ("Confucius (c. 551 - 479 BCE) was a philosopher.", []),
        ("The band (formed in 1999) was born in Ohio; it split.", []),
    ],
)
def test_lead_names_read_the_full_name_a_biography_opens_with(
    opening: str, names: list[str]
) -> None:
    assert lead_names(opening) == names
