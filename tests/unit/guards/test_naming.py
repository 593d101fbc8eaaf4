"""One answer to "does this conversation name the concept outright?" for every caller."""

from __future__ import annotations

from guards.concepts import Concept, ConceptList
from guards.naming import ALIAS, FULL_NAME, ConceptNamer, Naming

CONCEPTS = ConceptList(
    concepts=[
        Concept(id="corwin", name="Corwin Hale", aliases=["C. Hale"]),
        Concept(id="elara", name="Elara Voss"),
    ]
)


def test_first_turn_naming_each_concept_and_how() -> None:
    namer = ConceptNamer(CONCEPTS)
    turns = ["Tell me about novelists.", "Is Corwin Ellis Hale one?", "And C0rwin H4le?"]
    assert namer.first_namings(turns) == [Naming(1, FULL_NAME), None]
    assert namer.first_namings(turns[2:]) == [Naming(0, ALIAS), None]  # obfuscation-robust
    assert namer.named(turns) == [True, False]


def test_an_alias_wins_over_the_full_name_in_the_same_turn() -> None:
    namer = ConceptNamer(CONCEPTS)
    assert namer.first_namings(["Corwin Ellis Hale, or C. Hale?"])[0] == Naming(0, ALIAS)


def test_a_bare_name_word_is_not_naming() -> None:
    namer = ConceptNamer(CONCEPTS)
    assert namer.named(["Is Corwin a novelist?", "What did Voss write?"]) == [False, False]
