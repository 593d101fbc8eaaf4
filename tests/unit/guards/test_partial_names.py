"""Partial name evidence (misspelt, scattered, acronyms), alias case for common-word aliases,
and the namesake veto: what each frees and what each still catches (real MiniLM)."""

from __future__ import annotations

import pytest

from guards.concepts import Concept, ConceptList
from guards.detector import PARTIAL_NAME_DISCOUNT
from guards.encoder import Encoder
from guards.guard import Guard
from guards.normalize import AliasMatcher, NormalizedText
from guards.partial_names import PartialNames

CONCEPTS = ConceptList(
    concepts=[
        Concept(
            id="lotr", name="The Lord of the Rings", aliases=["Gandalf", "Frodo Baggins"],
            description="Tolkien's Middle-earth stories, their plot and characters.",
            examples=["Why does Frodo take the Ring to Mordor?", "Who is Gollum?",
                      "Summarise The Lord of the Rings."],
        ),
        Concept(
            id="mj", name="Michael Jordan", aliases=["His Airness"],
            description="The Chicago Bulls basketball player.",
            examples=["How many championships did Michael Jordan win?",
                      "Why did Michael Jordan retire to play baseball?",
                      "What is Michael Jordan's net worth?"],
            negatives=["Who is Michael B. Jordan, the actor in Creed?"],
        ),
        Concept(
            id="bb", name="Breaking Bad", aliases=["Walter White"],
            description="The TV series Breaking Bad.",
            examples=["How does Breaking Bad end?", "Why does Walter White cook meth?",
                      "Who is Gus Fring?"],
        ),
    ]
)  # fmt: skip
IDS = [c.id for c in CONCEPTS.concepts]


def partial(*texts: str) -> list[str]:
    found = PartialNames(CONCEPTS).evidence(list(texts))
    return [cid for cid, hit in zip(IDS, found, strict=True) if hit]


@pytest.mark.parametrize(
    ("texts", "expected"),
    [
        (["why did Gandlaf fall in Moria?"], ["lotr"]),  # a misspelt distinctive name word
        (["Micheal Jordon playoff stats?"], ["mj"]),  # a misspelt full name
        (["First part: Michael.", "Second part: Jordan. How many points did he score?"], ["mj"]),
        (["in LOTR who forged the ring?"], ["lotr"]),  # an acronym
        (["Who is Michael Jordan?"], []),  # written plainly: an alias's business, not this one
        (["Did Jordan beat Michael in chess?"], []),  # one text, no repair: a namesake as often
        (["I got a new car."], []),  # "got" is a word, not Game of Thrones' acronym
    ],
)
def test_what_counts_as_a_partial_name(texts: list[str], expected: list[str]) -> None:
    assert partial(*texts) == expected


def test_an_alias_of_common_words_names_the_concept_only_when_capitalised() -> None:
    matcher = AliasMatcher([["Breaking Bad", "Walter White", "Heisenberg"]])

    def names(text: str) -> bool:
        return matcher.names(0, NormalizedText.of(text), text)

    assert names("What happens in Breaking Bad season 5?")
    assert names("BREAKING BAD finale theories")
    assert not names("any tips for breaking bad habits?")
    assert names("who was heisenberg really")  # not common words: named however written
    assert matcher.names(0, NormalizedText.of("breaking bad habits"))  # no text: as before


@pytest.fixture(scope="module")
def guard(encoder: Encoder) -> Guard:
    return Guard.build(CONCEPTS, encoder=encoder, multilingual=False)


def test_a_partial_name_lowers_the_bar_and_says_so(guard: Guard) -> None:
    plain = guard.check(["What are the best hiking trails in New Zealand?"])
    misspelt = guard.check(["Where did Gandlaf the wizard go after Moria?"])
    assert plain.threshold == pytest.approx(0.6)
    assert misspelt.concept_id == "lotr"
    assert misspelt.threshold == pytest.approx(0.6 - PARTIAL_NAME_DISCOUNT)


def test_an_alias_reading_like_an_authors_negative_does_not_decide(guard: Guard) -> None:
    namesake = guard.check(["Which movies has Michael B. Jordan starred in besides Creed?"])
    assert not namesake.in_scope or namesake.concept_id != "mj"
    assert not namesake.named[IDS.index("mj")]
    own = guard.check(["How many rings did Michael Jordan win with the Bulls?"])
    assert own.in_scope and own.concept_id == "mj"
    assert "alias" in {e.kind for e in own.evidence}
