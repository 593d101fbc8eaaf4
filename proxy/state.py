"""The guard in force, and atomic replacement of it.

Readers take ``state.guard`` once per request and use that object throughout, so a concurrent swap
never mixes two configurations. Writers build the new Guard in a worker thread (encoding can take
seconds) under a lock, and only a fully built Guard replaces the old one: a bad update leaves the
running list in force.

Concepts read from the operator's file (``NESCIO_CONCEPTS_PATH``) are trusted: their forget-corpus
paths resolve relative to that file. Concepts sent to the admin API are not: an admin key changes
the list, it does not grant reads of the host's files. Their corpus comes inline (``forget_text``)
or from files inside ``NESCIO_CORPUS_DIR`` only (see ``validate_concepts``'s ``confined``).

With several worker processes (``NESCIO_STATE_DIR`` set, as ``nescio serve --workers N`` does),
every change is published to the folder they share (:mod:`proxy.shared`) under a cross-process
lock, and :meth:`GuardState.watch` brings each worker to the published list within
``NESCIO_SYNC_INTERVAL`` seconds plus its build time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

from guards.concepts import Concept, ConceptList, load_concepts, validate_concepts
from guards.encoder import load_encoder
from guards.errors import NescioError
from guards.guard import Guard
from guards.scorer import DEFAULT_SCORER, LogisticScorer
from proxy.errors import Conflict, InvalidRequest, NotFound
from proxy.settings import ProxySettings
from proxy.shared import Published, SharedList

log = logging.getLogger(__name__)
WARM_UP = {"messages": [{"role": "user", "content": "Is this a warm-up request? It is."}]}


class GuardState:
    def __init__(self, settings: ProxySettings, guard: Guard | None = None) -> None:
        self._settings = settings
        self._lock = asyncio.Lock()
        self.guard = guard
        self.version = 0  # of the list in force: 0 as started, +1 per change (shared by workers)
        self._shared = (
            SharedList(settings.state_dir, settings.corpus_dir) if settings.state_dir else None
        )
        self._seen: tuple[int, int] | None = None  # the shared file's stamp last read
        self.on_swap: Callable[[int], object] | None = None  # told each new version in force

    @property
    def base_dir(self) -> Path | None:
        path = self._settings.concepts_path
        return path.resolve().parent if path else None

    def _build(self, concepts: ConceptList) -> Guard:
        settings = self._settings
        scorer = (
            LogisticScorer.load(settings.scorer_path) if settings.scorer_path else DEFAULT_SCORER
        )
        guard = Guard.build(
            concepts,
            encoder=load_encoder(settings.encoder, settings.encoder_backend),
            cache_dir=settings.cache_dir,
            detector=settings.detector,
            scorer=scorer,
            batching=settings.encoder_batching,
            multilingual=settings.multilingual,
        )
        # The first check of a fresh process pays the model's lazy set-up (~80 ms on 2 cores);
        # pay it here, before /ready, not on a client's request.
        guard.screen(WARM_UP)
        return guard

    async def load_initial(self) -> None:
        """Build the guard from the configured file at startup (errors abort the start); with a
        shared folder that already holds a published list, from that list instead."""
        if self._shared is not None and await self._sync():
            return
        if self.guard is None and self._settings.concepts_path is not None:
            concepts = load_concepts(self._settings.concepts_path)
            self.guard = await asyncio.to_thread(self._build, concepts)
            log.info("guard ready: %d concepts", len(concepts.concepts))

    async def watch(self) -> None:
        """Follow the lists other workers publish, until cancelled (no-op without a shared
        folder). A list that fails to build is logged and skipped until the next change."""
        if self._shared is None:
            return
        while True:
            await asyncio.sleep(self._settings.sync_interval)
            if self._shared.stamp() == self._seen:
                continue
            async with self._lock:
                try:
                    await self._sync()
                except NescioError as exc:
                    log.error("shared concept list not applied: %s", exc)

    async def _sync(self) -> bool:
        """Swap in the published list if it is newer than the one in force; whether it was."""
        shared = self._shared
        if shared is None:
            return False
        stamp = shared.stamp()
        published = await asyncio.to_thread(shared.read)
        self._seen = stamp
        if published is None or published.version <= self.version:
            return False
        await self._swap(published)
        return True

    async def _swap(self, published: Published) -> None:
        self.guard = await asyncio.to_thread(self._build, published.concepts)
        self._set_version(published.version)
        log.info(
            "concept list version %d in force: %d concepts",
            published.version,
            len(published.concepts.concepts),
        )

    async def replace(self, concepts: ConceptList) -> Guard:
        return await self._update(lambda _: concepts)

    async def _update(self, change: Callable[[ConceptList], ConceptList]) -> Guard:
        """Apply ``change`` to the list in force and swap in its guard, one writer at a time, so
        concurrent edits never build on a stale list (no lost update, no duplicate add). With a
        shared folder: one writer across all workers, the change applied to the latest published
        list, and the result published for the others."""
        async with self._lock, self._shared_lock():
            await self._sync()
            concepts = change(self.current_concepts())
            guard = await asyncio.to_thread(self._build, concepts)
            version = self.version + 1
            if self._shared is not None:
                await asyncio.to_thread(self._shared.write, version, concepts)
                self._seen = self._shared.stamp()
            self.guard = guard
            self._set_version(version)
        log.info("concept list version %d: %d concepts", version, len(concepts.concepts))
        return guard

    def _shared_lock(self) -> contextlib.AbstractAsyncContextManager[None]:
        return contextlib.nullcontext() if self._shared is None else self._shared.locked()

    def _set_version(self, version: int) -> None:
        self.version = version
        if self.on_swap is not None:
            self.on_swap(version)

    def current_concepts(self) -> ConceptList:
        return self.guard.concepts if self.guard else ConceptList(base_dir=self.base_dir)

    async def reload_from_file(self) -> Guard:
        if self._settings.concepts_path is None:
            raise InvalidRequest("no concept file configured (NESCIO_CONCEPTS_PATH)")
        return await self.replace(load_concepts(self._settings.concepts_path))

    def _from_request(self, data: object) -> ConceptList:
        return validate_concepts(
            data, source="<request body>", base_dir=self._settings.corpus_dir, confined=True
        )

    async def replace_from_json(self, payload: object) -> Guard:
        return await self.replace(self._from_request(payload))

    async def add(self, payload: object) -> Guard:
        """Add one concept; a list read from the file keeps resolving its own corpora there."""
        concept = self._from_request({"concepts": [payload]}).concepts[0]

        def added(current: ConceptList) -> ConceptList:
            if any(c.id == concept.id for c in current.concepts):
                raise Conflict(f"concept {concept.id!r} already exists", param="id")
            return _with(current, [*current.concepts, concept])

        return await self._update(added)

    async def delete(self, concept_id: str) -> Guard:
        def deleted(current: ConceptList) -> ConceptList:
            kept = [c for c in current.concepts if c.id != concept_id]
            if len(kept) == len(current.concepts):
                raise NotFound(f"no concept with id {concept_id!r}")
            return _with(current, kept)

        return await self._update(deleted)


def _with(concepts: ConceptList, items: list[Concept]) -> ConceptList:
    return concepts.model_copy(update={"concepts": items})
