"""Shared fixtures for the proxy unit tests: one real Guard per session, a fake upstream per test."""

from __future__ import annotations

from pathlib import Path

import pytest

from guards.concepts import ConceptList, load_concepts
from guards.encoder import Encoder, load_encoder
from guards.guard import Guard

pytest.register_assert_rewrite("proxy_fakes")
from proxy_fakes import FakeUpstream  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "proxy"
CONCEPTS_FILE = FIXTURES / "concepts.yaml"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def encoder() -> Encoder:
    return load_encoder()


@pytest.fixture(scope="session")
def concepts() -> ConceptList:
    return load_concepts(CONCEPTS_FILE)


@pytest.fixture(scope="session")
def guard(concepts: ConceptList, encoder: Encoder) -> Guard:
    """The fixture list's guard, built once with the real bundled encoder."""
    return Guard.build(concepts, encoder=encoder)


@pytest.fixture
def upstream() -> FakeUpstream:
    return FakeUpstream()
