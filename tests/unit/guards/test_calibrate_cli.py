"""``nescio calibrate``: thresholds fitted on one split, measured on another, and no item ever
scored by a guard that indexes it."""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from guards import calibrate as calibration
from guards.calibrate import (
    CalibrationSettings,
    ConceptCalibrator,
    Item,
    LabelledText,
    calibrate,
    holdout_split,
    labelled_items,
    read_labelled,
    stratified_folds,
)
from guards.cli import register
from guards.concepts import ConceptList, load_concepts
from guards.decision import Decision
from guards.encoder import Encoder
from guards.errors import CalibrationError, ConceptFileError
from guards.guard import Guard
from guards.thresholds import choose_threshold

NO_ALIAS_EXAMPLE = "What spell disarms an opponent at the wizarding school?"


def run_cli(*argv: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="nescio")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["calibrate", *argv])
    out = io.StringIO()
    status: int = args.handler(args, out)
    return status, out.getvalue()


def items(n_pos: int, n_neg: int) -> list[Item]:
    return [Item(f"p{i}", True) for i in range(n_pos)] + [
        Item(f"n{i}", False) for i in range(n_neg)
    ]


def test_folds_are_seeded_stratified_disjoint_and_complete() -> None:
    population = items(7, 12)
    folds = stratified_folds(population, 3, seed=1)
    assert folds == stratified_folds(list(reversed(population)), 3, seed=1)
    assert folds != stratified_folds(population, 3, seed=2)
    flat = [i for fold in folds for i in fold]
    assert sorted(flat, key=lambda i: i.text) == sorted(population, key=lambda i: i.text)
    assert [sum(i.positive for i in f) for f in folds] in ([3, 2, 2], [2, 3, 2], [2, 2, 3])


def test_holdout_takes_the_fraction_of_each_class() -> None:
    held = holdout_split(items(10, 20), 0.3, seed=0)
    assert sum(i.positive for i in held) == 3
    assert sum(not i.positive for i in held) == 6
    assert held == holdout_split(items(10, 20), 0.3, seed=0)


def test_labelled_items_use_examples_negatives_and_other_concepts(concepts: ConceptList) -> None:
    concept = concepts.get("nerve-agents")
    extra_pos = [LabelledText("How is tabun made?", "nerve-agents"), LabelledText("x", "other")]
    extra_neg = [LabelledText("Who wrote Dune?", None), LabelledText("y", "harry-potter")]
    labelled = labelled_items(concepts, concept, extra_pos, extra_neg)
    positives = {i.text for i in labelled if i.positive}
    negatives = {i.text for i in labelled if not i.positive}
    assert positives == {*concept.examples, "How is tabun made?"}
    assert set(concept.negatives) | {"Who wrote Dune?"} <= negatives
    assert "Who killed Dumbledore?" in negatives
    assert "y" not in negatives and "x" not in positives


def test_held_out_example_does_not_match_itself(concepts: ConceptList, encoder: Encoder) -> None:
    concept = concepts.get("harry-potter")
    item = Item(NO_ALIAS_EXAMPLE, True)
    assert Guard.build(concepts, encoder=encoder).check([NO_ALIAS_EXAMPLE]).score > 0.999
    calibrator = ConceptCalibrator(concepts, concept, encoder, CalibrationSettings(), [item])
    (score,) = calibrator.score([item], ())
    assert score < 0.95


class SpyGuard:
    """Fails the test if a guard is asked about a text it indexes as an example or negative."""

    def __init__(self, guard: Guard, indexed: set[str], log: list[str]) -> None:
        self._guard = guard
        self._indexed = indexed
        self._log = log

    def check(self, turns: Sequence[str]) -> Decision:
        for turn in turns:
            assert turn not in self._indexed, f"scored by a guard that indexes it: {turn!r}"
            self._log.append(turn)
        return self._guard.check(turns)


def test_no_item_is_scored_by_a_guard_that_indexes_it(
    concepts: ConceptList, encoder: Encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked: list[str] = []
    real_build = Guard.build

    def spy_build(concept_list: ConceptList, **kwargs: Any) -> SpyGuard:
        indexed = {t for c in concept_list.concepts for t in (*c.examples, *c.negatives)}
        return SpyGuard(real_build(concept_list, **kwargs), indexed, checked)

    monkeypatch.setattr(calibration.Guard, "build", spy_build)
    settings = CalibrationSettings(folds=3)
    results = calibrate(concepts, encoder, settings=settings, only=["harry-potter"])
    assert results[0].calibration is not None
    assert NO_ALIAS_EXAMPLE in checked
    assert len(checked) > len(labelled_items(concepts, concepts.get("harry-potter")))


@pytest.mark.parametrize("n_extra", [0, 12], ids=["cross-validation", "holdout"])
def test_threshold_is_never_fitted_on_reported_items(
    concepts: ConceptList, encoder: Encoder, monkeypatch: pytest.MonkeyPatch, n_extra: int
) -> None:
    rounds: list[tuple[set[str], set[str]]] = []
    real_fit, real_predict = ConceptCalibrator.fit, ConceptCalibrator._predict

    def spy_fit(self: ConceptCalibrator, fit: Sequence[Item], held: Sequence[Item]) -> float:
        rounds.append(({i.text for i in fit}, {i.text for i in held}))
        return real_fit(self, fit, held)

    def spy_predict(self: ConceptCalibrator, held: Sequence[Item], t: float) -> Any:
        fitted_on, held_then = rounds[-1]
        assert {i.text for i in held} == held_then
        assert not fitted_on & held_then
        return real_predict(self, held, t)

    monkeypatch.setattr(ConceptCalibrator, "fit", spy_fit)
    monkeypatch.setattr(ConceptCalibrator, "_predict", spy_predict)
    extra = [
        LabelledText(f"Which spell does wizard number {i} learn?", "harry-potter")
        for i in range(n_extra)
    ]
    extra_neg = [
        LabelledText(f"What is the square root of {i * 7 + 2}?", None) for i in range(n_extra)
    ]
    settings = CalibrationSettings(folds=3)
    (result,) = calibrate(
        concepts,
        encoder,
        settings=settings,
        positives=extra,
        negatives=extra_neg,
        only=["harry-potter"],
    )
    assert result.calibration is not None
    expected = "holdout" if n_extra else "cross-validation"
    assert expected in result.calibration.split
    assert result.calibration.n_positive == 5 + n_extra
    assert rounds


def test_too_few_items_is_skipped_not_faked(encoder: Encoder) -> None:
    concepts = ConceptList.model_validate(
        {"concepts": [{"id": "a", "name": "Alpha", "examples": ["What is alpha?"]}]}
    )
    (result,) = calibrate(concepts, encoder)
    assert result.calibration is None
    assert result.skipped is not None and "at least 2" in result.skipped


def test_unknown_concept_is_an_error(concepts: ConceptList, encoder: Encoder) -> None:
    with pytest.raises(CalibrationError, match="nope"):
        calibrate(concepts, encoder, only=["nope"])


def test_read_labelled_errors_name_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "pos.jsonl"
    path.write_text(json.dumps({"concept_id": "a", "text": "ok"}) + "\n\n" + "{bad\n")
    with pytest.raises(ConceptFileError) as caught:
        read_labelled(path, known={"a"}, require_concept=True)
    assert (caught.value.source, caught.value.line) == (str(path), 3)
    path.write_text(json.dumps({"concept_id": "zzz", "text": "ok"}) + "\n")
    with pytest.raises(ConceptFileError) as caught:
        read_labelled(path, known={"a"}, require_concept=True)
    assert (caught.value.line, caught.value.field) == (1, "concept_id")
    path.write_text(json.dumps({"text": ""}) + "\n")
    with pytest.raises(ConceptFileError) as caught:
        read_labelled(path, known={"a"}, require_concept=False)
    assert caught.value.field == "text"
    path.write_text(json.dumps({"text": "Who wrote Dune?"}) + "\n")
    assert read_labelled(path, known={"a"}, require_concept=False) == [
        LabelledText("Who wrote Dune?", None)
    ]


def test_dry_run_prints_and_writes_nothing(fixture_copy: Path) -> None:
    before = fixture_copy.read_text()
    status, out = run_cli(
        str(fixture_copy), "--dry-run", "--concept", "nerve-agents", "--folds", "3"
    )
    assert status == 0
    assert fixture_copy.read_text() == before
    assert "nerve-agents" in out and "held-out" in out and "nothing written" in out


def test_calibrate_writes_the_calibration_block(fixture_copy: Path) -> None:
    status, out = run_cli(str(fixture_copy), "--concept", "nerve-agents", "--folds", "3")
    assert status == 0 and f"wrote {fixture_copy}" in out
    concepts = load_concepts(fixture_copy)
    concept = concepts.get("nerve-agents")
    assert concept.threshold == "calibrated"
    fitted = concept.calibration
    assert fitted is not None
    assert concepts.threshold_of(concept) == fitted.threshold
    assert (fitted.encoder, fitted.n_positive, fitted.n_negative) == ("minilm", 4, 12)
    assert fitted.fitted_at is not None
    assert 0.0 <= fitted.precision <= 1.0 and 0.0 <= fitted.recall <= 1.0
    assert concepts.get("harry-potter").calibration is None
    assert "calibration:" in fixture_copy.read_text()


def test_output_elsewhere_keeps_corpus_paths_valid(fixture_copy: Path, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere" / "calibrated.yaml"
    target.parent.mkdir()
    status, _ = run_cli(
        str(fixture_copy), "--concept", "nerve-agents", "--folds", "3", "--output", str(target)
    )
    assert status == 0
    moved = load_concepts(target)
    hale = moved.get("corwin-hale")
    assert moved.corpus_path(hale.forget_corpus[0]).is_file()


def test_cli_rejects_bad_positives_file(fixture_copy: Path, tmp_path: Path) -> None:
    bad = tmp_path / "pos.jsonl"
    bad.write_text(json.dumps({"text": "How is tabun made?"}) + "\n")
    with pytest.raises(ConceptFileError) as caught:
        run_cli(str(fixture_copy), "--positives", str(bad), "--dry-run")
    assert (caught.value.line, caught.value.field) == (1, "concept_id")


def test_cli_rejects_bad_options(fixture_copy: Path) -> None:
    with pytest.raises(CalibrationError, match="target_fpr"):
        run_cli(str(fixture_copy), "--target-fpr", "2", "--dry-run")


def test_cache_dir_keeps_encoded_texts_for_the_next_run(
    concepts: ConceptList, encoder: Encoder, tmp_path: Path
) -> None:
    class Counting:
        name, dim = encoder.name, encoder.dim
        texts = 0

        def encode(self, texts: Sequence[str]) -> Any:
            Counting.texts += len(texts)
            return encoder.encode(texts)

    settings = CalibrationSettings(folds=3)
    first = calibrate(
        concepts, Counting(), settings=settings, only=["nerve-agents"], cache_dir=tmp_path
    )
    encoded_first, Counting.texts = Counting.texts, 0
    again = calibrate(
        concepts, Counting(), settings=settings, only=["nerve-agents"], cache_dir=tmp_path
    )
    assert encoded_first > 0 and Counting.texts == 0
    assert again[0].calibration is not None and first[0].calibration is not None
    assert again[0].calibration.threshold == first[0].calibration.threshold
    assert list(tmp_path.glob("vectors-*.npz"))


TRAFFIC = [
    "What is the boiling point of water at sea level?",
    "How do I sort a list in Python?",
    "Who painted the Mona Lisa?",
    "What is the capital of Australia?",
    "How many legs does a spider have?",
    "Recommend a good fantasy novel for a teenager.",
    "What causes the seasons on Earth?",
    "How do vaccines train the immune system?",
    "Which chemical element has the symbol Fe?",
    "What is a good name for a wizard character in my story?",
    "How do I bake sourdough bread?",
    "Explain how a bill becomes law.",
]


def test_a_list_budget_fits_every_concept_at_one_shared_rate(
    concepts: ConceptList, encoder: Encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    rates: list[float] = []
    real_rate = calibration.list_rate

    def spy_rate(*args: Any, **kwargs: Any) -> float:
        rates.append(real_rate(*args, **kwargs))
        return rates[-1]

    monkeypatch.setattr(calibration, "list_rate", spy_rate)
    traffic = [LabelledText(t, None) for t in TRAFFIC]
    only = ["harry-potter", "nerve-agents"]
    alone = calibrate(
        concepts, encoder, settings=CalibrationSettings(target_fpr=0.2, folds=3),
        negatives=traffic, only=only,
    )  # fmt: skip
    joint = calibrate(
        concepts, encoder, settings=CalibrationSettings(target_fpr=0.2, folds=3, budget="list"),
        negatives=traffic, only=only,
    )  # fmt: skip
    assert [r.target_fpr for r in alone] == [0.2, 0.2]
    (rate,) = rates
    assert [r.target_fpr for r in joint] == [rate, rate] and rate <= 0.2
    assert all(r.calibration is not None for r in joint)


def test_a_list_budget_counts_each_traffic_text_once_and_nothing_else(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from guards.calibrate import Scores, list_rate, not_counted

    settings = CalibrationSettings(target_fpr=0.2)
    traffic = {f"t{i}" for i in range(10)}
    # in scope of "a": never counted; "b"'s hand negatives: counted only without traffic
    assert not_counted([items(2, 0), items(0, 2)], set()) == {"p0", "p1"}
    uncounted = not_counted([items(2, 0), items(0, 2)], traffic)
    assert uncounted == {"p0", "p1", "n0", "n1"}
    empty = ConceptList(concepts=[])
    a = ConceptCalibrator(empty, None, None, settings, items(2, 0), not_negative=uncounted)  # type: ignore[arg-type]
    b = ConceptCalibrator(empty, None, None, settings, items(0, 2), not_negative=uncounted)  # type: ignore[arg-type]
    ordinary = {f"t{i}": 0.9 - i / 100 for i in range(10)}
    scores = {
        id(a): Scores([0.95, 0.9], {**ordinary, "p0": 0.99}),
        id(b): Scores([0.95], {**ordinary, "n0": 0.99}),
    }
    monkeypatch.setattr(ConceptCalibrator, "threshold_scores", lambda self: scores[id(self)])
    monkeypatch.setattr(ConceptCalibrator, "skipped", lambda self: None)
    # 20% of the ten traffic texts: both concepts flag the same two
    assert list_rate([a, b], settings) == pytest.approx(2 / 10)


def test_cli_list_budget_says_the_rate_each_concept_got(fixture_copy: Path) -> None:
    status, out = run_cli(
        str(fixture_copy), "--dry-run", "--fpr-budget", "list", "--target-fpr", "0.2",
        "--concept", "harry-potter", "--concept", "nerve-agents", "--folds", "3",
    )  # fmt: skip
    assert status == 0
    assert "target FPR 0.2 for the list: each concept at" in out


def test_cli_fpr_confidence_is_said_and_checked(fixture_copy: Path) -> None:
    status, out = run_cli(
        str(fixture_copy), "--dry-run", "--target-fpr", "0.2", "--fpr-confidence", "0.9",
        "--concept", "harry-potter", "--folds", "3",
    )  # fmt: skip
    assert status == 0
    assert "target FPR 0.2 at confidence 0.9" in out
    with pytest.raises(CalibrationError, match="invalid option"):
        run_cli(str(fixture_copy), "--dry-run", "--fpr-confidence", "0.3")


def test_a_list_budget_reads_thresholds_off_the_traffic_only(
    concepts: ConceptList, encoder: Encoder
) -> None:
    # harry-potter's out-of-scope items include nerve-agents' examples (two read like wizarding
    # questions: the list refuses them anyway) and its own hand-written near misses; with a
    # traffic sample given, the list's budget is the share of that traffic refused.
    wizardly = ["Which Hogwarts potion works like a nerve agent?", "Did Snape brew sarin?"]
    agents = concepts.get("nerve-agents")
    agents = agents.model_copy(update={"examples": [*agents.examples, *wizardly]})
    listed = concepts.model_copy(
        update={"concepts": [agents if c.id == agents.id else c for c in concepts.concepts]}
    )
    traffic = [LabelledText(t, None) for t in TRAFFIC]
    settings = CalibrationSettings(target_fpr=0.1, folds=3, budget="list")
    only = ["harry-potter", "nerve-agents"]
    (potter, _) = calibrate(listed, encoder, settings=settings, negatives=traffic, only=only)
    concept = listed.get("harry-potter")
    items = labelled_items(listed, concept, (), traffic)
    scores = ConceptCalibrator(listed, concept, encoder, settings, items).threshold_scores()
    kept = [v for t, v in scores.negative.items() if t in set(TRAFFIC)]
    assert len(kept) < len(scores.negative)
    expected = choose_threshold(scores.positive, kept, potter.target_fpr)
    counted = choose_threshold(scores.positive, list(scores.negative.values()), potter.target_fpr)
    assert potter.calibration is not None and expected < counted
    assert potter.calibration.threshold == round(expected, 4)


def test_the_stored_threshold_is_refitted_on_all_items_after_measuring(
    concepts: ConceptList, encoder: Encoder
) -> None:
    extra = [LabelledText(f"Which spell does wizard number {i} learn?", "harry-potter") for i in range(12)]  # fmt: skip
    traffic = [LabelledText(t, None) for t in TRAFFIC]
    settings = CalibrationSettings(target_fpr=0.1, folds=3)
    (result,) = calibrate(
        concepts, encoder, settings=settings, positives=extra, negatives=traffic,
        only=["harry-potter"],
    )  # fmt: skip
    assert result.calibration is not None and "holdout" in result.calibration.split
    concept = concepts.get("harry-potter")
    items = labelled_items(concepts, concept, extra, traffic)
    everything = ConceptCalibrator(concepts, concept, encoder, settings, items).out_of_fold(
        items, ()
    )
    refitted = choose_threshold(everything.positive, list(everything.negative.values()), 0.1)
    assert result.calibration.threshold == round(refitted, 4)
