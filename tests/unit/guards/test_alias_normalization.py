"""Alias matching survives obfuscation (case, full-width, confusables, zero-width, spacing,
punctuation, leetspeak) without firing on short aliases hidden inside other words."""

from __future__ import annotations

import pytest

from guards.normalize import AliasMatcher, AliasPattern, NormalizedText, deleet, normalize


def hits(alias: str, text: str) -> bool:
    return AliasPattern.of(alias).matches(NormalizedText.of(text))


@pytest.mark.parametrize(
    ("alias", "text"),
    [
        ("Harry Potter", "tell me about HARRY potter please"),
        ("Harry Potter", "Who is Ｈａｒｒｙ Ｐｏｔｔｅｒ?"),
        ("Harry Potter", "Who is Нarrу Роttеr?"),  # Cyrillic Н, у, Р, о, е
        ("Harry Potter", "Who is Ηαrry Ρotter?"),  # Greek Eta, alpha, Rho
        ("Harry Potter", "Who is Har\u200bry Pot\u200dter?"),
        ("Harry Potter", "Who is Har\u00adry Potter?"),
        ("Harry Potter", "what about H a r r y   P o t t e r"),
        ("Harry Potter", "what about H-a-r-r-y P.o.t.t.e.r"),
        ("Harry Potter", "what about H4rry P0tt3r"),
        ("Harry Potter", "what about harrypotter"),
        ("J.K. Rowling", "books by J.K.-Rowling"),
        ("J.K. Rowling", "books by jk rowling"),
        ("J.K. Rowling", "books by J. K. Rowling"),
        ("J.K. Rowling", "books by j k r0wl1ng"),
        ("sarin", "how is S4RIN made"),
        ("sarin", "how is $arin made"),
        ("Élodie Brûlé", "where does elodie brule live"),
        ("Hogwarts", "the school H o g w a r t s"),
    ],
)
def test_obfuscated_alias_is_found(alias: str, text: str) -> None:
    assert hits(alias, text)


@pytest.mark.parametrize(
    ("alias", "text"),
    [
        ("Ron", "the iron environment of the electron"),
        ("Ron", "Ronald Reagan was president"),
        ("sarin", "we met at the Sarinah mall in Jakarta"),
        ("VX", "configure a VXLAN tunnel"),
        ("tabun", "the tabunganku savings app"),
        ("Hale", "whales and shale oil"),
        ("Harry Potter", "harry styles and beatrix potter"),
        ("Hogwarts", "hedgehog wart remedies"),
    ],
)
def test_short_alias_inside_other_words_does_not_match(alias: str, text: str) -> None:
    assert not hits(alias, text)


def test_normalize_produces_lowercase_ascii_words() -> None:
    assert normalize("  Ｊ．Ｋ．  Rоwling!! ") == "j k rowling"
    assert normalize("Zoë\u200b-Brûlé") == "zoe brule"


def test_deleet_only_maps_digit_substitutions() -> None:
    assert deleet("r0wl1ng 4 3v3r") == "rowling a ever"


def test_empty_alias_never_matches() -> None:
    assert not hits("!!!", "anything at all !!!")


def test_named_set_finds_exactly_the_concepts_names_finds() -> None:
    forms = [
        ["Harry Potter", "Hogwarts", "Hermione Granger"],
        ["Breaking Bad", "Walter White"],
        ["nerve agents", "sarin", "VX nerve agent"],
        ["Stephen King", "Richard Bachman"],
        [""],
    ]
    matcher = AliasMatcher(forms)
    texts = [
        "Who founded H0gwarts?",
        "tips for breaking bad habits",
        "Is Breaking Bad worth watching?",
        "How is s a r i n made? And what about VX nerve agents?",
        "Did Stephen King write as R i c h a r d B a c h m a n?",
        "What is the capital of France?",
        "hermione granger and walter white walk into a bar",
    ]
    for text in texts:
        view = NormalizedText.of(text)
        for written in (text, None):
            expected = {c for c in range(len(forms)) if matcher.names(c, view, written)}
            assert matcher.named_set(view, written) == expected, text
