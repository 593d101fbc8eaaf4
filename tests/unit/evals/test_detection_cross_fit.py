"""Cross-fitted evaluation of the learned detector (``nescio eval detect --cross-fit K``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evals.detection.cross_fit import CrossFit, make_folds
from evals.detection.evaluate import evaluate_detection
from evals.detection.plan import Setting
from evals.errors import EvalError
from evals.probes import Probe, ProbeKind
from guards.concepts import Concept, ConceptList
from guards.encoder import Encoder

TOPICS = {
    "reef": ("Elara Voss", "coral reef survey bleaching atlas lagoon"),
    "jazz": ("Tomas Brandt", "jazz piano quartet harbour album saxophone"),
    "alps": ("Ines Kober", "alpine glacier summit ridge expedition crampons"),
    "chess": ("Oskar Lind", "chess opening gambit endgame tournament rook"),
}
CONCEPTS = ConceptList(
    concepts=[Concept(id=cid, name=name, examples=[text]) for cid, (name, text) in TOPICS.items()]
)


def _probe(pid: str, kind: ProbeKind, text: str, targets: tuple[str, ...] = ()) -> Probe:
    return Probe(
        id=pid, probe_set=f"custom:{kind.value}", kind=kind, target_ids=targets,
        query=text, prompt=text,
    )  # fmt: skip


def _probes() -> list[Probe]:
    probes = []
    for cid, (_, text) in TOPICS.items():
        words = text.split()
        probes += [
            _probe(f"{cid}-f{i}", ProbeKind.FORGET, f"Tell me about the {w} {words[i - 1]}", (cid,))
            for i, w in enumerate(words[1:], start=1)
        ]
        probes.append(_probe(f"{cid}-n", ProbeKind.NEIGHBOR, f"Which {words[0]} museum?", (cid,)))
        probes.append(_probe(f"{cid}-u", ProbeKind.UTILITY, "What is two plus two?", (cid,)))
    return probes


def test_folds_are_contiguous_blocks_and_never_train_on_what_they_report() -> None:
    shared = _probe("both", ProbeKind.UTILITY, "Name a river.", ("reef", "chess"))
    untargeted = [_probe(f"u{i}", ProbeKind.UTILITY, f"Question {i}?") for i in range(20)]
    probes = [*_probes(), shared, *untargeted]
    folds = make_folds(CONCEPTS, probes, 2)
    assert [f.concept_ids for f in folds] == [("reef", "jazz"), ("alps", "chess")]
    for number, fold in enumerate(folds):
        reported = {p.id for p in fold.report}
        assert not reported & {p.id for p in fold.training}
        other = folds[1 - number]
        # everything the other fold reports (but the probe touching both folds) trains this one
        assert {p.id for p in other.report} - {"both"} == {p.id for p in fold.training}
    assert "both" in {p.id for p in folds[0].report}  # the fold of its first concept
    assert all("both" not in {p.id for p in f.training} for f in folds)
    hashed = [sum(p.id in {u.id for u in untargeted} for p in f.report) for f in folds]
    assert sum(hashed) == 20 and min(hashed) > 0  # untargeted probes share out by hash


def test_utility_cap_applies_per_fold() -> None:
    probes = [
        _probe(f"{cid}-u{i}", ProbeKind.UTILITY, f"Question {i}?", (cid,))
        for cid in TOPICS
        for i in range(3)
    ]
    folds = make_folds(CONCEPTS, probes, 2, utility_per_set=2)
    assert [len(f.report) for f in folds] == [2, 2]  # a cap over the whole list: [2, 0]
    assert [len(f.training) for f in folds] == [2, 2]


@pytest.mark.parametrize("k", [1, 5])
def test_fold_count_must_fit_the_list(k: int) -> None:
    with pytest.raises(EvalError, match="--cross-fit needs 2 <= K <= the number of concepts"):
        make_folds(CONCEPTS, _probes(), k)


def test_cross_fitted_evaluation_scores_each_fold_with_its_own_scorer(
    tmp_path: Path, fake_encoder: Encoder
) -> None:
    summary = evaluate_detection(
        CONCEPTS,
        _probes(),
        [Setting.SINGLE, Setting.ALL],
        fake_encoder,
        tmp_path,
        progress=False,
        detector="learned",
        cross_fit=CrossFit(folds=2, max_neighbor_fpr=0.5, max_utility_fpr=0.5),
    )
    folds = summary["cross_fit"]["folds"]
    assert [f["concepts"] for f in folds] == [["reef", "jazz"], ["alps", "chess"]]
    assert summary["scorer"] is None
    assert folds[0]["scorer"]["weights"] != folds[1]["scorer"]["weights"]
    records = [json.loads(line) for line in (tmp_path / "detect_items.jsonl").open()]
    assert len(records) == 2 * len(_probes())  # each probe once per setting
    for record in records:
        fold = 0 if record["target_ids"][0] in ("reef", "jazz") else 1
        assert record["fold"] == fold
        assert record["threshold"] == round(folds[fold]["scorer"]["threshold"], 4)
    block = summary["settings"]["all"]["by_kind"]["forget"]
    assert block["n"] == sum(1 for p in _probes() if p.kind is ProbeKind.FORGET)
    assert block["flagged"] > block["n"] // 2  # the forget probes share words with their topic


def test_cross_fit_needs_the_learned_detector(tmp_path: Path, fake_encoder: Encoder) -> None:
    with pytest.raises(EvalError, match="--cross-fit fits the learned detector's scorer"):
        evaluate_detection(
            CONCEPTS, _probes(), [Setting.ALL], fake_encoder, tmp_path,
            progress=False, cross_fit=CrossFit(),
        )  # fmt: skip
