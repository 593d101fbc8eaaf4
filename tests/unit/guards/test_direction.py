"""Fitted directions of centroid concepts: whitening against a background, their schema, their
use by the detector, and ``nescio calibrate`` fitting them without scoring what they saw."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from guards.calibrate import CalibrationSettings, LabelledText, apply_results, calibrate
from guards.concepts import Concept, ConceptList, Direction, load_concepts
from guards.direction import (
    MIN_BACKGROUND,
    SHRINKAGE,
    SHRINKAGES,
    centroid_texts,
    fit_direction,
    pick_shrinkage,
)
from guards.encoder import Encoder
from guards.errors import CalibrationError, ConceptFileError
from guards.guard import Guard

DIM = 6


class TableEncoder:
    """Each text maps to the vector registered for it (unit-normalised), so geometry is exact."""

    name = "table-test"
    dim = DIM

    def __init__(self, table: dict[str, np.ndarray]) -> None:
        self.table = table

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        rows = [self.table[t] / np.linalg.norm(self.table[t]) for t in texts]
        return np.array(rows, dtype=np.float32).reshape(len(texts), DIM)


def _topic_and_background() -> tuple[Concept, TableEncoder, list[str], list[str]]:
    """The concept's texts share a strong generic axis (0) with ordinary traffic, which also
    varies a lot along it; only axis 1 is specific to the topic."""
    rng = np.random.default_rng(0)
    concept = Concept(id="topic", name="the topic", match="centroid", examples=["e1", "e2", "e3"])
    table = {t: np.array([3.0, 1.0, 0, 0, 0, 0]) + rng.normal(0, 0.1, DIM)
             for t in centroid_texts(concept)}  # fmt: skip
    background = [f"b{i}" for i in range(80)]
    for text in background:
        table[text] = np.array([rng.uniform(0.5, 6.0), 0, *rng.normal(0, 0.3, DIM - 2)])
    fresh_in = [f"in{i}" for i in range(10)]  # in scope, never seen: weaker on the generic axis
    for text in fresh_in:
        table[text] = np.array([1.0, 1.0, *rng.normal(0, 0.3, DIM - 2)])
    fresh_out = [f"out{i}" for i in range(40)]
    for text in fresh_out:
        table[text] = np.array([rng.uniform(0.5, 6.0), 0, *rng.normal(0, 0.3, DIM - 2)])
    return concept, TableEncoder(table), background, fresh_in + fresh_out


def test_whitening_separates_what_the_plain_centroid_confuses() -> None:
    concept, encoder, background, fresh = _topic_and_background()
    direction = fit_direction(encoder, concept, background)
    vectors = encoder.encode(fresh)
    centroid = encoder.encode(centroid_texts(concept)).mean(axis=0)
    plain = vectors @ (centroid / np.linalg.norm(centroid))
    whitened = vectors @ np.array(direction.vector)
    inside, outside = slice(0, 10), slice(10, None)
    assert plain[inside].min() < plain[outside].max()  # generic axis: centroid mixes them up
    assert whitened[inside].min() > whitened[outside].max()
    assert direction.encoder == "table-test" and direction.n_background == len(background)
    assert np.linalg.norm(direction.vector) == pytest.approx(1.0, abs=1e-4)


def test_too_small_a_background_is_refused() -> None:
    concept, encoder, background, _ = _topic_and_background()
    with pytest.raises(CalibrationError, match=f"at least {MIN_BACKGROUND}"):
        fit_direction(encoder, concept, background[: MIN_BACKGROUND - 1] * 3)  # duplicates


def _concept_file(tmp_path: Path, direction: str, match: str = "centroid") -> Path:
    path = tmp_path / "concepts.yaml"
    path.write_text(
        "version: 1\nconcepts:\n  - id: topic\n    name: the topic\n"
        f"    match: {match}\n    direction:\n{direction}"
    )
    return path


def test_direction_schema_errors_name_the_field(tmp_path: Path) -> None:
    good = "      encoder: minilm\n      n_background: 60\n      shrinkage: 0.7\n"
    with pytest.raises(ConceptFileError, match=r"direction.*unit vector"):
        load_concepts(_concept_file(tmp_path, good + "      vector: [0.5, 0.5]\n"))
    with pytest.raises(ConceptFileError, match="only used with 'match: centroid'"):
        load_concepts(_concept_file(tmp_path, good + "      vector: [0.6, 0.8]\n", "nearest"))
    loaded = load_concepts(_concept_file(tmp_path, good + "      vector: [0.6, 0.8]\n"))
    assert loaded.get("topic").direction == Direction(
        encoder="minilm", n_background=60, shrinkage=0.7, vector=[0.6, 0.8]
    )


def test_detector_scores_against_the_direction_and_checks_its_encoder(encoder: Encoder) -> None:
    text = "How is a buffer overflow exploit written?"
    target = [round(float(v), 6) for v in encoder.encode([text])[0]]
    direction = Direction(encoder=encoder.name, n_background=60, shrinkage=0.7, vector=target)
    concept = Concept(
        id="topic", name="offensive security", match="centroid", examples=["How do I bake bread?"],
        direction=direction, threshold=0.9,
    )  # fmt: skip
    guard = Guard.build(ConceptList(concepts=[concept]), encoder=encoder)
    decision = guard.check([text])
    assert decision.score == pytest.approx(1.0, abs=1e-4) and decision.action == "refuse"
    plain = concept.model_copy(update={"direction": None})
    assert Guard.build(ConceptList(concepts=[plain]), encoder=encoder).check([text]).score < 0.9
    foreign = concept.model_copy(
        update={"direction": direction.model_copy(update={"encoder": "e5"})}
    )
    with pytest.raises(
        ConceptFileError, match=r"concepts\[topic\].direction' fitted with encoder 'e5'"
    ):
        Guard.build(ConceptList(concepts=[foreign]), encoder=encoder)


def test_calibrate_fits_a_direction_only_with_enough_background(
    tmp_path: Path, encoder: Encoder
) -> None:
    concept = Concept(
        id="exploits", name="exploit development", match="centroid",
        description="Writing exploits and malware to attack computer systems.",
        examples=[f"How do I write an exploit for vulnerability number {i}?" for i in range(12)],
        negatives=[f"How do I bake bread recipe {i}?" for i in range(10)],
    )  # fmt: skip
    concepts = ConceptList(concepts=[concept])
    traffic = [LabelledText(f"What is the capital of country number {i}?", None) for i in range(80)]
    settings = CalibrationSettings(target_fpr=0.05)
    [with_traffic] = calibrate(concepts, encoder, settings=settings, negatives=traffic)
    [hand_only] = calibrate(concepts, encoder, settings=settings)
    assert hand_only.calibration is not None and hand_only.direction is None
    assert with_traffic.calibration is not None and with_traffic.direction is not None
    # measured on the holdout split, then the stored direction refitted on all out-of-scope items
    assert with_traffic.direction.n_background == 80 + 10
    written = apply_results(concepts, [with_traffic])
    path = tmp_path / "calibrated.yaml"
    path.write_text(written.to_yaml())
    assert "vector: [" in path.read_text()  # flow style: a few wrapped lines, not 384
    reloaded = load_concepts(path).get("exploits")
    assert reloaded.direction == with_traffic.direction
    assert json.loads(reloaded.model_dump_json())["direction"]["encoder"] == encoder.name


def test_the_default_shrinkage_stays_unless_another_is_clearly_better() -> None:
    negative = [i / 100 for i in range(100)]  # thresholds at 5%: just above 0.95

    def scores(hits: int, n: int = 400) -> tuple[list[float], list[float]]:
        return [0.99] * hits + [0.5] * (n - hits), negative

    # 90% vs 91.25%: within one standard error (1.4 points at n = 400), so the default stays
    close = {0.3: scores(365), 0.5: scores(364), 0.7: scores(360), 0.9: scores(350)}
    assert pick_shrinkage(close, 0.05) == SHRINKAGE
    # 90% vs 96%: the nearest value within one error of the best, not the best itself
    clear = {0.3: scores(384), 0.5: scores(381), 0.7: scores(360), 0.9: scores(300)}
    assert pick_shrinkage(clear, 0.05) == 0.5
    # with 20 in-scope texts one more caught is noise
    few = {0.3: scores(18, 20), 0.5: scores(18, 20), 0.7: scores(17, 20), 0.9: scores(16, 20)}
    assert pick_shrinkage(few, 0.05) == SHRINKAGE
    with pytest.raises(CalibrationError, match="default"):
        pick_shrinkage({0.5: scores(10)}, 0.05)


def test_calibrate_stores_the_direction_at_the_picked_shrinkage(
    monkeypatch: pytest.MonkeyPatch, encoder: Encoder
) -> None:
    import guards.calibrate as calibration

    tried: list[set[float]] = []

    def spy(scores: dict[float, object], target_fpr: float) -> float:
        tried.append(set(scores))
        return 0.5

    monkeypatch.setattr(calibration, "pick_shrinkage", spy)
    concept = Concept(
        id="exploits", name="exploit development", match="centroid",
        examples=[f"How do I write an exploit for vulnerability number {i}?" for i in range(12)],
    )  # fmt: skip
    traffic = [LabelledText(f"What is the capital of country number {i}?", None) for i in range(80)]
    settings = CalibrationSettings(target_fpr=0.05)
    [result] = calibrate(
        ConceptList(concepts=[concept]), encoder, settings=settings, negatives=traffic
    )
    assert tried and all(t == set(SHRINKAGES) for t in tried)
    assert result.direction is not None and result.direction.shrinkage == 0.5


def test_the_cli_says_each_directions_shrinkage(tmp_path: Path) -> None:
    import argparse
    import io

    from guards.cli import register

    concept = Concept(
        id="exploits", name="exploit development", match="centroid",
        examples=[f"How do I write an exploit for vulnerability number {i}?" for i in range(12)],
    )  # fmt: skip
    concepts = tmp_path / "concepts.yaml"
    concepts.write_text(ConceptList(concepts=[concept]).to_yaml())
    traffic = tmp_path / "traffic.jsonl"
    traffic.write_text(
        "".join(
            json.dumps({"text": f"What is the capital of country {i}?"}) + "\n" for i in range(80)
        )
    )
    parser = argparse.ArgumentParser(prog="nescio")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(
        [
            "calibrate",
            str(concepts),
            "--negatives",
            str(traffic),
            "--dry-run",
            "--target-fpr",
            "0.05",
        ]
    )
    out = io.StringIO()
    assert args.handler(args, out) == 0
    assert "direction on 80 (shrinkage 0.7)" in out.getvalue()
