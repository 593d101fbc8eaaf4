"""Shared fixtures for the guards tests: the real bundled MiniLM encoder, loaded once per session,
and a Guard built on the small fixture concept list in ``tests/fixtures/guards``."""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from guards.concepts import ConceptList, load_concepts
from guards.decision import Decision
from guards.encoder import Encoder, load_encoder
from guards.guard import Guard

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "guards"
CONCEPTS_FILE = FIXTURES / "concepts.yaml"


@pytest.fixture(scope="session")
def encoder() -> Encoder:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return load_encoder()


@pytest.fixture(scope="session")
def concepts() -> ConceptList:
    return load_concepts(CONCEPTS_FILE)


@pytest.fixture(scope="session")
def guard(concepts: ConceptList, encoder: Encoder) -> Guard:
    return Guard.build(concepts, encoder=encoder)


@pytest.fixture(scope="session")
def decide(guard: Guard) -> Callable[[str], Decision]:
    """``guard.check`` on one text, memoised: many tests share the same few prompts."""

    @functools.cache
    def check(text: str) -> Decision:
        return guard.check([text])

    return check


@pytest.fixture
def fixture_copy(tmp_path: Path) -> Path:
    """A writable copy of the fixture folder; returns the path of its concept file."""
    target = tmp_path / "guards"
    shutil.copytree(FIXTURES, target)
    return target / CONCEPTS_FILE.name
