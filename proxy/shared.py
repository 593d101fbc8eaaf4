"""The concept list in force, shared by the worker processes of one ``nescio serve`` through a
folder (``NESCIO_STATE_DIR``; ``nescio serve --workers N`` makes a private temporary one).

Why a file: an admin call reaches one worker, and every worker must enforce the same list. The
worker that takes the call holds :meth:`SharedList.locked` (an exclusive ``flock``, so admin calls
on different workers apply one after another, each to the latest list), builds and swaps its own
guard, then publishes the list with a version one higher (:meth:`write`: a temporary file renamed
over ``concepts.json``, so a reader never sees half of it). Every other worker polls the file's
identity (:meth:`stamp`, one ``stat``) and, when it changed, reads the list and rebuilds
(:class:`proxy.state.GuardState`). A worker that (re)starts later loads the published list, not
the configured file, so it joins with the list in force.

The file holds the whole list, inline forget passages included (the guard needs them), so the
folder must be private to the proxy's user: the temporary one is made mode 0700.

Confined concepts (sent to the admin API, see :func:`guards.concepts.validate_concepts`) stay
confined when read back: they are validated again against the corpus folder, their
forget-corpus files resolved inside it only.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guards.concepts import ConceptList, validate_concepts

FILE = "concepts.json"
LOCK = "concepts.lock"
LOCK_POLL_S = 0.05


@dataclass(frozen=True)
class Published:
    """One published list and its version (1, 2, ...: one per change, across all workers)."""

    version: int
    concepts: ConceptList


class SharedList:
    def __init__(self, folder: Path, corpus_dir: Path | None) -> None:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.folder = folder
        self.path = folder / FILE
        self._corpus_dir = corpus_dir

    def stamp(self) -> tuple[int, int] | None:
        """What changes whenever a list is published (inode and modification time), or ``None``
        while none has been."""
        try:
            info = self.path.stat()
        except FileNotFoundError:
            return None
        return info.st_ino, info.st_mtime_ns

    @asynccontextmanager
    async def locked(self) -> AsyncIterator[None]:
        """Exclusive across the workers. Waits without blocking the event loop (a non-blocking
        ``flock`` tried every :data:`LOCK_POLL_S`), and a cancelled wait holds nothing."""
        with (self.folder / LOCK).open("a") as handle:
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    await asyncio.sleep(LOCK_POLL_S)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def write(self, version: int, concepts: ConceptList) -> None:
        data = {
            "version": version,
            "base_dir": None if concepts.base_dir is None else str(concepts.base_dir),
            # A concept's confinement is private state of the model (never dumped): kept aside.
            "confined": [c.id for c in concepts.concepts if c._confined],
            "list": concepts.model_dump(mode="json", exclude={"base_dir"}),
        }
        fd, temporary = tempfile.mkstemp(dir=self.folder, prefix=".concepts-", suffix=".json")
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle)
        os.replace(temporary, self.path)

    def read(self) -> Published | None:
        """The published list, or ``None`` while none has been. Raises ``ConceptFileError`` if it
        no longer validates (e.g. a corpus file was removed since)."""
        try:
            data: dict[str, Any] = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        listing: dict[str, Any] = data["list"]
        confined = set(data["confined"])
        base_dir = None if data["base_dir"] is None else Path(data["base_dir"])
        items = listing["concepts"]
        trusted = validate_concepts(
            {**listing, "concepts": [c for c in items if c["id"] not in confined]},
            source=self.path,
            base_dir=base_dir,
        )
        untrusted = validate_concepts(
            {"concepts": [c for c in items if c["id"] in confined]},
            source=self.path,
            base_dir=self._corpus_dir,
            confined=True,
        )
        by_id = {c.id: c for c in [*trusted.concepts, *untrusted.concepts]}
        concepts = trusted.model_copy(update={"concepts": [by_id[c["id"]] for c in items]})
        return Published(int(data["version"]), concepts)
