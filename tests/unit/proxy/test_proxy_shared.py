"""Workers sharing the concept list in force through a folder (proxy/shared.py, GuardState): two
apps in one process on one ``state_dir`` stand in for two worker processes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from proxy_fakes import FakeUpstream, proxy_client

from guards.concepts import ConceptList, load_concepts, validate_concepts
from guards.guard import Guard
from proxy.settings import ProxySettings
from proxy.shared import SharedList

pytestmark = pytest.mark.anyio

ADMIN = {"authorization": "Bearer sk-admin"}
CHAT = "/v1/chat/completions"
FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "proxy" / "concepts.yaml"
WAIT_S = 120.0  # a bound on waiting for a rebuild, never a speed requirement


def concept(concept_id: str, alias: str) -> dict[str, Any]:
    return {"id": concept_id, "name": concept_id, "aliases": [alias], "policy": "refuse"}


def ask(prompt: str) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": prompt}]}


def settings(state_dir: Path, **extra: Any) -> ProxySettings:
    return ProxySettings(admin_key="sk-admin", state_dir=state_dir, sync_interval=0.05, **extra)


@asynccontextmanager
async def workers(
    count: int, state_dir: Path, guard: Guard | None, **extra: Any
) -> AsyncIterator[list[httpx.AsyncClient]]:
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(
                proxy_client(settings(state_dir, **extra), FakeUpstream(), guard, **ADMIN)
            )
            for _ in range(count)
        ]


async def ids(client: httpx.AsyncClient) -> list[str]:
    return [c["id"] for c in (await client.get("/admin/concepts")).json()["concepts"]]


async def until_listed(client: httpx.AsyncClient, *wanted: str, absent: str = "") -> list[str]:
    """The listing once it holds ``wanted`` and not ``absent`` (waiting for a rebuild)."""
    with anyio.fail_after(WAIT_S):
        while True:
            listed = await ids(client)
            if set(wanted) <= set(listed) and absent not in listed:
                return listed
            await anyio.sleep(0.05)


async def test_a_change_on_one_worker_reaches_the_other(guard: Guard, tmp_path: Path) -> None:
    async with workers(2, tmp_path, guard) as (first, second):
        before = await second.post(CHAT, json=ask("Tell me about Smaug."))
        assert before.headers["x-nescio-decision"] == "allow"
        added = await first.post("/admin/concepts", json=concept("dragons", "Smaug"))
        assert added.status_code == 201
        await until_listed(second, "dragons")
        after = await second.post(CHAT, json=ask("Tell me about Smaug."))
        assert after.headers["x-nescio-decision"].startswith("refuse; concept=dragons")
        removed = await second.delete("/admin/concepts/dragons")
        assert removed.status_code == 204
        await until_listed(first, absent="dragons")


async def test_concurrent_changes_on_two_workers_both_land(guard: Guard, tmp_path: Path) -> None:
    async with workers(2, tmp_path, guard) as (first, second):
        answers: list[int] = []

        async def add(client: httpx.AsyncClient, item: dict[str, Any]) -> None:
            answers.append((await client.post("/admin/concepts", json=item)).status_code)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(add, first, concept("dragons", "Smaug"))
            tasks.start_soon(add, second, concept("krakens", "Kraken"))
        assert answers == [201, 201]
        for client in (first, second):
            listed = await until_listed(client, "dragons", "krakens")
            assert len(listed) == len(set(listed)) == 5  # the fixture's three and both new ones


async def test_a_worker_started_later_joins_with_the_list_in_force(
    guard: Guard, tmp_path: Path
) -> None:
    async with workers(1, tmp_path, guard) as (first,):
        await first.post("/admin/concepts", json=concept("dragons", "Smaug"))
        async with workers(1, tmp_path, None, concepts_path=FIXTURE) as (late,):
            assert "dragons" in await ids(late)  # not the configured file's list
            answer = await late.post(CHAT, json=ask("Tell me about Smaug."))
            assert answer.headers["x-nescio-decision"].startswith("refuse; concept=dragons")


def test_published_list_reads_back_identical_and_still_confined(
    concepts: ConceptList, tmp_path: Path
) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "dragons.txt").write_text("Smaug sleeps on the gold of Erebor.\n")
    sent = {**concept("dragons", "Smaug"), "forget_corpus": ["dragons.txt"]}
    confined = validate_concepts({"concepts": [sent]}, base_dir=corpus, confined=True)
    mixed = concepts.model_copy(update={"concepts": [*concepts.concepts, *confined.concepts]})
    shared = SharedList(tmp_path / "state", corpus)
    assert shared.read() is None and shared.stamp() is None
    shared.write(7, mixed)
    published = shared.read()
    assert published is not None and published.version == 7
    back = published.concepts
    assert back.content_hash() == mixed.content_hash()
    assert [c.id for c in back.concepts] == [c.id for c in mixed.concepts]
    assert [c._confined for c in back.concepts] == [False, False, False, True]
    assert back.corpus_file(back.concepts[-1], Path("dragons.txt")) == corpus / "dragons.txt"
    # the file-loaded concepts keep resolving their corpus next to their own file
    original = load_concepts(FIXTURE)
    assert back.base_dir == original.base_dir
