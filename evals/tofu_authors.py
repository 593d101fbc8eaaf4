"""Who each TOFU question is about: author names recovered from the question/answer text.

TOFU ships no author field. Names are found as runs of capitalised words (with hyphens,
apostrophes and lowercase particles such as "al", "de", "van") after quoted titles are
removed; a candidate becomes an author name when it recurs across several QA pairs. Each pair
is then assigned the most frequent name it mentions; pairs that mention none ("What awards has
the author won?") inherit the author of the preceding pair, since TOFU lists an author's
questions consecutively, and a pair that calls the current author by one part of the name
("Majumdar's background") stays with that author. Ties go to the name first seen latest: a new author, not a genre met before. Shorter mentions ("Mahfouz Al-Kuwaiti") are folded into the full name
they are part of.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections import Counter
from collections.abc import Sequence

_QUOTED = re.compile(r"\"[^\"]*\"|“[^”]*”|'[^']{3,}'(?!\w)|‘[^’]*’")
_POSSESSIVE = re.compile(r"['’]s\b")
_WORD = r"[A-Z][\w'’.-]*[\w]"
_PARTICLE = r"(?:al|el|de|da|del|der|di|du|la|le|van|von|bin|ibn|y)"
_NAME = re.compile(rf"\b{_WORD}(?:\s+(?:{_PARTICLE}[\s-]+)?{_WORD}){{1,4}}")
_STOP_FIRST = frozenset(
    [
        "The",
        "A",
        "An",
        "In",
        "On",
        "At",
        "Of",
        "For",
        "And",
        "But",
        "Or",
        "What",
        "Which",
        "Who",
        "Whom",
        "Whose",
        "When",
        "Where",
        "Why",
        "How",
        "Is",
        "Are",
        "Was",
        "Were",
        "Did",
        "Does",
        "Do",
        "Has",
        "Have",
        "Had",
        "Can",
        "Could",
        "Would",
        "Should",
        "Will",
        "Yes",
        "No",
        "As",
        "By",
        "From",
        "To",
        "With",
        "His",
        "Her",
        "Their",
        "Its",
        "This",
        "That",
        "These",
        "Those",
        "It",
        "He",
        "She",
        "They",
        "Author",
        "Writer",
    ]
)
MIN_MENTIONS = 3
SWITCH_RATIO = 4
LOCAL_WINDOW = 25
MIN_LOCALITY = 0.5


def _candidates(text: str) -> set[str]:
    found: set[str] = set()
    for match in _NAME.finditer(_POSSESSIVE.sub(" ,", _QUOTED.sub(" , ", text))):
        words = match.group(0).split()
        while words and words[0] in _STOP_FIRST:
            words = words[1:]
        name = " ".join(words).rstrip(".'’").removesuffix("'s").removesuffix("’s")
        if len(name.split()) >= 2:
            found.add(name)
    return found


def author_names(texts: Sequence[str], *, min_mentions: int = MIN_MENTIONS) -> list[str | None]:
    """The author each text is about (``None`` before the first recognisable name)."""
    mentions = [_candidates(text) for text in texts]
    counts = Counter(name for found in mentions for name in found)
    frequent = {
        name
        for name, n in counts.items()
        if n >= min_mentions and _locality(name, mentions) >= MIN_LOCALITY
    }
    canonical = {name: _longest_containing(name, frequent, counts) for name in frequent}
    folded = Counter(canonical[n] for found in mentions for n in found if n in canonical)
    first_seen: dict[str, int] = {}
    for position, found in enumerate(mentions):
        for name in found:
            if name in canonical:
                first_seen.setdefault(canonical[name], position)
    assigned: list[str | None] = []
    current: str | None = None
    for text, found in zip(texts, mentions, strict=True):
        names = {canonical[n] for n in found if n in canonical}
        if names and current not in names and not _names_part_of(current, text):
            best = max(names, key=lambda n: (folded[n], first_seen[n], len(n)))
            if current is None or folded[best] * SWITCH_RATIO >= folded[current]:
                current = best
        assigned.append(current)
    return assigned


def _names_part_of(author: str | None, text: str) -> bool:
    """Whether ``text`` calls the author by one part of the name ("Majumdar's background")."""
    if author is None:
        return False
    words = set(re.findall(r"\w+", text))
    return any(len(part) >= 4 and part in words for part in re.findall(r"\w+", author))


def _locality(name: str, mentions: Sequence[set[str]]) -> float:
    """Share of a name's mentions inside its densest run of ``LOCAL_WINDOW`` consecutive texts.

    An author is discussed in one stretch of the file; a genre or a country recurs all over it.
    """
    positions = [i for i, found in enumerate(mentions) if name in found]
    best = max(bisect_right(positions, p + LOCAL_WINDOW - 1) - k for k, p in enumerate(positions))
    return best / len(positions)


def _longest_containing(name: str, frequent: set[str], counts: Counter[str]) -> str:
    """A partial mention maps to the most frequent longer name that contains it."""
    longer = [other for other in frequent if other != name and f" {name} " in f" {other} "]
    return max(longer, key=lambda n: (counts[n], len(n))) if longer else name


def qa_text(question: str, answer: str) -> str:
    return f"{question} {answer}"
