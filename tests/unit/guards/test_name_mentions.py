"""Entity-aware name evidence: full names with middle names, bare name words, name words that
belong to another entity (guards.names)."""

from __future__ import annotations

import pytest

from guards.names import Mentions, NameMatcher

MATCHER = NameMatcher(
    [
        ["Stephen King"],
        ["Don Johnson"],
        ["R. Kelly"],
        ["Vincent van Gogh"],
        ["Chris Brown"],
        ["Prince Harry, Duke of Sussex", "Prince Harry", "Duke of Sussex"],
    ]
)
KING, JOHNSON, KELLY, GOGH, BROWN, HARRY = range(6)


def kind(text: str, concept: int) -> str:
    m = MATCHER.mentions([text])[concept]
    return "full" if m.full else "bare" if m.bare else "embedded" if m.embedded else "none"


@pytest.mark.parametrize(
    ("text", "concept", "expected"),
    [
        ("Stephen Edwin King (born September 21, 1947) is an American ___", KING, "full"),
        ("Robert Sylvester Kelly was born in Chicago.", KELLY, "full"),
        ("Christopher Maurice Brown is an American singer.", BROWN, "full"),
        ("Vincent Willem van Gogh was a Dutch painter.", GOGH, "full"),
        ("King's debut novel, titled ___, was a hit.", KING, "bare"),
        ("What did King write in 1974?", KING, "bare"),
        ("In 1886, Van Gogh moved to Paris.", GOGH, "bare"),
        ("Which films did Johnson star in?", JOHNSON, "bare"),
        ("In what city was Dakota Johnson born?", JOHNSON, "embedded"),
        ("The Lion King premiered in 1994.", KING, "embedded"),
        (
            "The series was first hosted by news reporter ___ Cooper and ___ Johnson.",
            JOHNSON,
            "embedded",
        ),
        ("The Starry Night hangs in the Museum of Modern Art.", GOGH, "none"),
        ("the king of the castle", KING, "none"),
        ("Who is Prince William married to?", HARRY, "embedded"),
    ],
)
def test_mentions_are_told_apart(text: str, concept: int, expected: str) -> None:
    assert kind(text, concept) == expected


def test_openers_never_start_a_name_and_kinds_accumulate_over_texts() -> None:
    assert kind("Which King novel came first?", KING) == "bare"
    assert kind("Please name Stephen Edwin King's first novel.", KING) == "full"
    mentions = MATCHER.mentions(["Dakota Johnson was born in 1989.", "Did Johnson attend?"])
    assert mentions[JOHNSON] == Mentions(full=False, bare=True, embedded=True)
    assert MATCHER.mentions([]) == [Mentions()] * 6
