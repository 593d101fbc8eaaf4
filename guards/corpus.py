"""Turning a concept into the texts that represent it in the index.

Evidence comes from the name, the description, the in-scope examples and the forget corpus
(files and inline passages alike, chunked into sentences). Hard negatives are indexed too, under
source ``negative``, so the detector can tell "closer to what must be allowed" from "closer to
what must be refused".
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from guards.concepts import Concept, ConceptList
from guards.errors import ConceptFileError
from guards.jsonl import read_objects

NEGATIVE = "negative"
# A sentence ends at ., ! or ? before a capital or digit, but not after a title or an initial
# ("Mr. Frodo", "Dr. Voss", "J. R. R. Tolkien").
_SENTENCE_END = re.compile(
    r"(?<=[.!?])(?<!\b[A-Z]\.)(?<!\bMr\.)(?<!\bMs\.)(?<!\bDr\.)(?<!\bSt\.)(?<!\bMrs\.)"
    r"(?<!\bProf\.)\s+(?=[\"'(\[]?[A-Z0-9])"
)
MIN_WORDS = 5
MAX_CHARS = 400


def split_sentences(text: str) -> list[str]:
    """Sentences of at least ``MIN_WORDS`` words (short ones are merged into the next)."""
    pieces = [p.strip() for p in _SENTENCE_END.split(" ".join(text.split())) if p.strip()]
    out: list[str] = []
    carry = ""
    for piece in pieces:
        carry = f"{carry} {piece}".strip()
        if len(carry.split()) >= MIN_WORDS:
            out.extend(_wrap(carry))
            carry = ""
    if carry:
        if out and len(carry.split()) < MIN_WORDS:
            out[-1] = f"{out[-1]} {carry}"
        else:
            out.append(carry)
    return out


def _wrap(sentence: str) -> list[str]:
    if len(sentence) <= MAX_CHARS:
        return [sentence]
    words, chunks, current = sentence.split(), [], ""
    for word in words:
        if current and len(current) + len(word) + 1 > MAX_CHARS:
            chunks.append(current)
            current = word
        else:
            current = f"{current} {word}".strip()
    return [*chunks, current] if current else chunks


def read_corpus_file(path: Path) -> list[str]:
    """Passages of a forget-corpus file: JSONL with a ``text`` field, else plain text paragraphs."""
    if path.suffix.lower() in {".jsonl", ".ndjson"}:
        passages = []
        for number, item in read_objects(path):
            if not isinstance(item.get("text"), str):
                raise ConceptFileError(path, "each line needs a string", line=number, field="text")
            passages.append(item["text"])
        return passages
    try:
        raw = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConceptFileError(path, f"cannot read forget corpus: {exc.strerror}") from exc
    return [p for p in re.split(r"\n\s*\n", raw) if p.strip()]


def evidence_texts(concepts: ConceptList, concept: Concept) -> Iterator[tuple[str, str]]:
    """``(source, text)`` pairs for one concept, negatives included."""
    yield "name", concept.name
    for alias in concept.aliases:
        yield "name", alias
    if concept.description:
        yield "description", concept.description
    for example in concept.examples:
        yield "example", example
    for path in concept.forget_corpus:
        yield from _corpus_sentences(read_corpus_file(concepts.corpus_file(concept, path)))
    yield from _corpus_sentences(concept.forget_text)
    for negative in concept.negatives:
        yield NEGATIVE, negative


def _corpus_sentences(passages: list[str]) -> Iterator[tuple[str, str]]:
    for passage in passages:
        for sentence in split_sentences(passage):
            yield "corpus", sentence
