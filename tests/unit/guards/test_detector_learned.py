"""The learned detector: its features, the logistic scorer and its fitting, the output leak check."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from guards.concepts import Concept, ConceptList
from guards.encoder import Encoder
from guards.errors import GuardError
from guards.guard import Guard, build_index
from guards.learned_detector import LearnedDetector, question_segments
from guards.naming import FULL_NAME, Naming
from guards.normalize import AliasMatcher
from guards.output_guard import LeakScanner
from guards.scorer import DEFAULT_SCORER, FEATURES, LogisticScorer, fit_logistic

COLUMN = {name: i for i, name in enumerate(FEATURES)}


@pytest.fixture(scope="module")
def detector(concepts: ConceptList, encoder: Encoder) -> LearnedDetector:
    return LearnedDetector(concepts, encoder, build_index(concepts, encoder), DEFAULT_SCORER)


def row_of(detector: LearnedDetector, concepts: ConceptList, text: str, cid: str) -> np.ndarray:
    matrix, _, _ = detector.features([text])
    return matrix[[c.id for c in concepts.concepts].index(cid)]


def test_question_segments_add_label_free_lines() -> None:
    prompt = "Please briefly answer the following question.\nQuestion: Who wrote Carrie?\nAnswer:"
    texts = [s.text for s in question_segments([prompt])]
    assert texts[0] == prompt
    assert "Who wrote Carrie?" in texts
    assert "Answer:" not in texts and "" not in texts


def test_features_separate_alias_name_mentions_and_similarity(
    detector: LearnedDetector, concepts: ConceptList
) -> None:
    alias = row_of(detector, concepts, "Where does Corwin Hale live?", "corwin-hale")
    bare = row_of(detector, concepts, "Is Corwin a novelist?", "corwin-hale")
    embedded = row_of(detector, concepts, "Who was Nathan Hale?", "corwin-hale")
    other = row_of(detector, concepts, "How do I bake sourdough bread?", "corwin-hale")
    corwin = [c.id for c in concepts.concepts].index("corwin-hale")
    assert detector.namer.named(["Where does Corwin Hale live?"])[corwin]
    assert not detector.namer.named(["Is Corwin a novelist?"])[corwin]
    assert bare[COLUMN["name_bare"]] == 1.0 and bare[COLUMN["name_embedded"]] == 0.0
    assert embedded[COLUMN["name_embedded"]] == 1.0 and embedded[COLUMN["name_bare"]] == 0.0
    assert other[COLUMN["name_bare"]] == other[COLUMN["name_embedded"]] == 0.0
    assert bare[COLUMN["name_bare_x_sim_corpus"]] == bare[COLUMN["sim_corpus"]]
    naming = detector.namer.first_namings(["Hi.", "Corwin Ellis Hale was born in 1961."])[corwin]
    assert naming == Naming(1, FULL_NAME)
    assert alias[COLUMN["sim_corpus"]] > other[COLUMN["sim_corpus"]] + 0.3
    negative = row_of(detector, concepts, "Who was Nathan Hale in the Revolution?", "corwin-hale")
    assert negative[COLUMN["sim_negative"]] > 0.8


def test_learned_detector_decides_with_the_scorer(
    concepts: ConceptList, encoder: Encoder, detector: LearnedDetector
) -> None:
    guard = Guard(concepts, detector, encoder.name)
    hit = guard.check(["What house is Hermione Granger in?"])
    assert hit.concept_id == "harry-potter" and hit.in_scope
    assert hit.threshold == DEFAULT_SCORER.threshold and hit.score >= hit.threshold
    assert any(e.kind == "alias" for e in hit.evidence)
    miss = guard.check(["What is the capital of France?"])
    assert miss.action == "allow" and miss.score < miss.threshold
    assert guard.check([]).action == "allow"


def test_aliases_are_decisive_and_the_scorer_decides_the_rest(
    concepts: ConceptList, encoder: Encoder
) -> None:
    never = LogisticScorer(tuple(0.0 for _ in FEATURES), -20.0)
    on_corpus = LogisticScorer(tuple(30.0 if f == "sim_corpus" else 0.0 for f in FEATURES), -15.0)
    index = build_index(concepts, encoder)
    obfuscated = ["tell me about ＨＯＧＷＡＲＴＳ"]
    paraphrase = ["Who is the crime writer married to the cellist Ines Marlowe?"]
    assert LearnedDetector(concepts, encoder, index, never).check(obfuscated).score == 1.0
    assert not LearnedDetector(concepts, encoder, index, never).check(paraphrase).in_scope
    decision = LearnedDetector(concepts, encoder, index, on_corpus).check(paraphrase)
    assert decision.concept_id == "corwin-hale" and decision.in_scope
    assert [e.kind for e in decision.evidence] == ["embedding"]
    middle = LearnedDetector(concepts, encoder, index, never).check(["Corwin J. Hale's address?"])
    assert middle.score == 1.0 and middle.evidence[0].source == "full name"


def test_fit_logistic_learns_the_informative_feature() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, len(FEATURES)))
    y = x[:, 3] + 0.1 * rng.normal(size=400) > 0.5
    weights, bias = fit_logistic(x, y)
    assert abs(weights[3]) == max(abs(w) for w in weights)
    predicted = LogisticScorer(weights, bias).probabilities(x) >= 0.5
    assert (predicted == y).mean() > 0.95
    with pytest.raises(GuardError):
        fit_logistic(x, np.zeros(400, dtype=bool))


def test_scorer_round_trips_and_validates(tmp_path: Path) -> None:
    path = tmp_path / "scorer.json"
    path.write_text(DEFAULT_SCORER.to_json())
    assert LogisticScorer.load(path) == DEFAULT_SCORER
    path.write_text('{"features": ["sim"], "weights": [1], "bias": 0, "threshold": 0.5}')
    with pytest.raises(GuardError, match="features"):
        LogisticScorer.load(path)
    with pytest.raises(GuardError):
        LogisticScorer((1.0,), 0.0)
    with pytest.raises(GuardError):
        LogisticScorer(DEFAULT_SCORER.weights, 0.0, threshold=1.0)


def test_a_scorer_is_only_served_with_the_encoder_it_was_fitted_on(
    concepts: ConceptList, encoder: Encoder, tmp_path: Path
) -> None:
    assert DEFAULT_SCORER.encoder == encoder.name == "minilm"
    Guard.build(concepts, encoder=encoder, detector="learned")  # the shipped pairing
    other = replace(DEFAULT_SCORER, encoder="intfloat/multilingual-e5-small")
    with pytest.raises(GuardError, match="fitted on 'intfloat/multilingual-e5-small' similar"):
        Guard.build(concepts, encoder=encoder, detector="learned", scorer=other)
    old_file = tmp_path / "old.json"  # written before scorers recorded their encoder
    data = json.loads(DEFAULT_SCORER.to_json())
    del data["encoder"]
    old_file.write_text(json.dumps(data))
    assert LogisticScorer.load(old_file).encoder == ""
    Guard.build(concepts, encoder=encoder, detector="learned", scorer=LogisticScorer.load(old_file))


def test_output_leak_check() -> None:
    king = Concept(id="king", name="Stephen King", aliases=["Richard Bachman"])
    other = Concept(id="kubrick", name="Stanley Kubrick")
    concepts = ConceptList(concepts=[king, other])
    aliases = AliasMatcher([c.surface_forms for c in concepts.concepts])
    scanner = LeakScanner(concepts, aliases, [False, False])
    assert scanner.leaked("That would be Stephen King.") == king
    assert scanner.leaked("It was written under the name R1chard Bachman.") == king
    assert scanner.leaked("King wrote both of them.") is None  # single name words do not count
    assert scanner.leaked("the king of the castle") is None
    named = LeakScanner(concepts, aliases, [False, True])
    assert named.leaked("Stanley Kubrick directed The Shining.") is None
    assert named.leaked("Stephen King wrote it.") == king


def test_a_conversation_naming_the_full_name_with_middle_names_is_not_watched(
    encoder: Encoder,
) -> None:
    """The client wrote "Stephen Edwin King": the answer "Stephen King ..." tells them nothing new."""
    king = Concept(id="king", name="Stephen King", policy="icul")
    other = Concept(id="kubrick", name="Stanley Kubrick")
    guard = Guard.build(ConceptList(concepts=[king, other]), encoder=encoder)
    scanner = guard.leak_scanner(["Where did Stephen Edwin King go to school?"])
    assert scanner.leaked("Stephen King studied at the University of Maine.") is None
    assert scanner.leaked("Stanley Kubrick filmed The Shining.") == other
    unnamed = guard.leak_scanner(["Who wrote Misery?"])
    assert unnamed.leaked("Stephen King wrote it.") == king


def test_topic_concepts_are_scored_by_their_centroid_beside_people(
    concepts: ConceptList, encoder: Encoder
) -> None:
    """One list with people (scorer) and a ``match: centroid`` topic (its own threshold)."""
    nerve = concepts.get("nerve-agents").model_copy(update={"match": "centroid", "threshold": 0.5})
    mixed = concepts.model_copy(
        update={"concepts": [nerve if c.id == nerve.id else c for c in concepts.concepts]}
    )
    learned = Guard.build(mixed, encoder=encoder, detector="learned")
    embedding = Guard.build(ConceptList(concepts=[nerve]), encoder=encoder)
    question = "How would someone make a nerve agent more stable for storage?"
    decision = learned.check([question])
    assert decision.concept_id == "nerve-agents" and decision.in_scope
    assert decision.threshold == 0.5  # the concept's own, not the scorer's
    assert [e.source for e in decision.evidence] == ["centroid"]
    assert decision.score == pytest.approx(embedding.check([question]).score, abs=1e-5)
    person = learned.check(["Where does Corwin Hale live?"])
    assert person.concept_id == "corwin-hale" and person.threshold == DEFAULT_SCORER.threshold
    benign = learned.check(["How do I bake sourdough bread?"])
    assert not benign.in_scope
