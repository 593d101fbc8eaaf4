"""The Guard: a concept list, its index and detector, and the interventions, behind one object.

A Guard is immutable once built. Reloading a concept list means building a new Guard (off the
event loop) and swapping the reference, so a request always sees one consistent configuration.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tqdm import tqdm

from guards.concepts import ConceptList
from guards.corpus import evidence_texts
from guards.decision import Decision
from guards.detector import Detector, EmbeddingAliasDetector
from guards.encoder import DEFAULT_ENCODER, Encoder, load_encoder
from guards.errors import GuardError
from guards.index import Entry, FaissIndex
from guards.interventions import Outcome, Rewrite, intervention_for, message_text, withhold_parts
from guards.learned_detector import LearnedDetector
from guards.mixed import Partial, isolate
from guards.naming import ConceptNamer
from guards.output_guard import LeakScanner
from guards.scorer import DEFAULT_SCORER, LogisticScorer

log = logging.getLogger(__name__)
DetectorKind = Literal["embedding", "learned"]
GUARDED_ROLES = frozenset({"user", "system", "developer"})


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
    ) -> Guard:
        """Encode the concepts' evidence (or reload it from ``cache_dir``) and build the detector.

        ``detector="embedding"`` (default) is alias matching plus per-concept similarity
        thresholds: the higher-recall choice. ``"learned"`` weighs alias, name-word and
        similarity features with ``scorer`` (fitted on RWKU people): far fewer false positives
        on neighbouring topics, at some recall cost (numbers: README, "Detection quality").
        """
        encoder = encoder or load_encoder(DEFAULT_ENCODER)
        index = build_index(concepts, encoder, cache_dir=cache_dir, progress=progress)
        namer = ConceptNamer(concepts)
        chosen: Detector
        if detector == "learned":
            chosen = LearnedDetector(concepts, encoder, index, scorer, namer)
        else:
            chosen = EmbeddingAliasDetector(concepts, encoder, index, namer)
        return cls(concepts, chosen, encoder.name, namer)

    def check(self, turns: Sequence[str]) -> Decision:
        return self.detector.check(turns)

    def check_messages(self, messages: Sequence[Any]) -> Decision:
        return self.detector.check(turns_of_messages(messages))

    def check_prompt(self, prompt: str | Sequence[str]) -> Decision:
        return self.detector.check([prompt] if isinstance(prompt, str) else list(prompt))

    async def acheck(self, turns: Sequence[str]) -> Decision:
        """:meth:`check` in a worker thread, so encoding never blocks the event loop."""
        return await asyncio.to_thread(self.detector.check, turns)

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

    def isolate(self, turns: Sequence[str], last: int, decision: Decision) -> Partial | None:
        """Which sentences of ``turns[last]`` to withhold (see :mod:`guards.mixed`), or ``None``."""
        return isolate(self.detector, turns, last, decision)

    async def aisolate(self, turns: Sequence[str], last: int, decision: Decision) -> Partial | None:
        """:meth:`isolate` in a worker thread (it runs the detector once per sentence)."""
        return await asyncio.to_thread(isolate, self.detector, turns, last, decision)

    def withhold(self, body: Mapping[str, Any], partial: Partial) -> Rewrite | None:
        """``body`` without ``partial``'s withheld parts, or ``None`` to apply the whole policy.

        The promise, checked on every request: no withheld part appears (ignoring case and
        spacing) in any message, whatever its role, or prompt of the returned body. Whenever it
        cannot be kept, e.g. the client repeated the sentence in an earlier turn, the answer is
        ``None``.
        """
        rewrite = withhold_parts(body, partial)
        if rewrite is None:
            return None
        sent = [_folded(t) for t in _all_texts(rewrite.body)]
        for part in partial.withheld:
            if any(_folded(part) in text for text in sent):
                return None
        return rewrite


def turns_of_messages(messages: Sequence[Any]) -> list[str]:
    """The guarded text of a chat: every user/system/developer turn, text parts of multi-part content."""
    return [text for _, text in _guarded(messages)]


def last_user_turn(messages: Sequence[Any]) -> int | None:
    """The index, among :func:`turns_of_messages`, of the last user message (``None``: none)."""
    users = [i for i, (role, _) in enumerate(_guarded(messages)) if role == "user"]
    return users[-1] if users else None


def _guarded(messages: Sequence[Any]) -> list[tuple[str, str]]:
    pairs = []
    for message in messages:
        if isinstance(message, Mapping) and message.get("role") in GUARDED_ROLES:
            text = message_text(message)
            if text is not None:
                pairs.append((str(message["role"]), text))
    return pairs


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
    folder = None
    if cache_dir is not None:
        folder = cache_dir / f"{encoder.name.replace('/', '_')}-{concepts.content_hash()[:24]}"
        if (folder / "index.faiss").exists():
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
        index.save(folder)
    return index


def _encode_all(encoder: Encoder, texts: list[str], progress: bool, batch: int = 256) -> np.ndarray:
    if not texts:
        return np.zeros((0, encoder.dim), dtype=np.float32)
    chunks = range(0, len(texts), batch)
    bar = tqdm(chunks, desc="encoding concept evidence", unit="batch", disable=not progress)
    return np.concatenate([encoder.encode(texts[i : i + batch]) for i in bar])
