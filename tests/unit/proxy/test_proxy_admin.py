"""The admin API changes the concept list at run time, atomically, and never half-applies."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from proxy_fakes import FakeUpstream, proxy_client

from guards.concepts import ConceptList, validate_concepts
from guards.encoder import Encoder
from guards.guard import Guard
from proxy.settings import ProxySettings

pytestmark = pytest.mark.anyio

ADMIN = {"authorization": "Bearer sk-admin"}
CHAT = "/v1/chat/completions"
HOGWARTS = "Which Hogwarts house is the bravest?"
SMAUG = "Tell me about Smaug."
DRAGONS: dict[str, Any] = {
    "id": "dragons",
    "name": "dragons",
    "aliases": ["Smaug"],
    "policy": "refuse",
    "refusal": "No dragons here.",
}
NEW_LIST: dict[str, Any] = {
    "concepts": [
        {
            "id": "harry-potter",
            "name": "Harry Potter",
            "aliases": ["Hogwarts"],
            "policy": "instruct",
        },
        DRAGONS,
    ]
}


# fitted in another encoder's space: the list is wrong for this guard
FOREIGN = {"encoder": "e5", "n_background": 60, "shrinkage": 0.7, "vector": [0.6, 0.8]}


def settings(**extra: Any) -> ProxySettings:
    return ProxySettings(admin_key="sk-admin", **extra)


def ask(prompt: str) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": prompt}]}


def decided(response: httpx.Response) -> str:
    """The action and concept of the decision header, without the score."""
    return response.headers["x-nescio-decision"].split("; score")[0]


def ids(listing: dict[str, Any]) -> list[str]:
    return [c["id"] for c in listing["concepts"]]


async def test_list_shows_concepts_but_not_forget_corpus_contents(
    guard: Guard, upstream: FakeUpstream
) -> None:
    async with proxy_client(settings(), upstream, guard, **ADMIN) as client:
        response = await client.get("/admin/concepts")
    assert response.status_code == 200
    assert ids(response.json()) == ["quill-ashford", "harry-potter", "nerve-agents"]
    assert response.json()["concepts"][0]["forget_corpus"] == ["forget/quill_ashford.txt"]
    assert "Marrowgate" not in response.text


async def test_add_then_duplicate(guard: Guard, upstream: FakeUpstream) -> None:
    async with proxy_client(settings(), upstream, guard, **ADMIN) as client:
        assert decided(await client.post(CHAT, json=ask(SMAUG))) == "allow"
        added = await client.post("/admin/concepts", json=DRAGONS)
        refused = await client.post(CHAT, json=ask(SMAUG))
        duplicate = await client.post("/admin/concepts", json=DRAGONS)
        listing = (await client.get("/admin/concepts")).json()
    assert added.status_code == 201 and ids(added.json())[-1] == "dragons"
    assert refused.json()["choices"][0]["message"]["content"] == "No dragons here."
    assert duplicate.status_code == 409 and duplicate.json()["error"]["param"] == "id"
    assert ids(listing).count("dragons") == 1


async def test_delete_then_missing(guard: Guard, upstream: FakeUpstream) -> None:
    async with proxy_client(settings(), upstream, guard, **ADMIN) as client:
        assert (
            decided(await client.post(CHAT, json=ask(HOGWARTS))) == "refuse; concept=harry-potter"
        )
        deleted = await client.delete("/admin/concepts/harry-potter")
        after = await client.post(CHAT, json=ask(HOGWARTS))
        missing = await client.delete("/admin/concepts/harry-potter")
    assert deleted.status_code == 204 and deleted.content == b""
    assert decided(after) == "allow" and upstream.last.json() == ask(HOGWARTS)
    assert missing.status_code == 404


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"concepts": [{"id": "x", "name": "x", "threshold": 5.0}]}, "concepts[x].threshold"),
        ({"concepts": [{"id": "x", "name": "x", "policy": "delete"}]}, "concepts[x].policy"),
        ({"concepts": [{"id": "x"}]}, "concepts[x].name"),
        ({"concepts": [{"id": "x", "name": "x", "colour": "red"}]}, "concepts[x].colour"),
        (
            {"concepts": [{"id": "x", "name": "x", "match": "centroid", "direction": FOREIGN}]},
            "concepts[x].direction",
        ),
    ],
)
async def test_invalid_replacement_names_the_field_and_keeps_the_old_list(
    guard: Guard, upstream: FakeUpstream, payload: dict[str, Any], field: str
) -> None:
    async with proxy_client(settings(), upstream, guard, **ADMIN) as client:
        response = await client.put("/admin/concepts", json=payload)
        still = await client.post(CHAT, json=ask(HOGWARTS))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == field and field in error["message"]
    assert decided(still) == "refuse; concept=harry-potter"


async def test_valid_replacement_takes_effect(guard: Guard, upstream: FakeUpstream) -> None:
    async with proxy_client(settings(), upstream, guard, **ADMIN) as client:
        replaced = await client.put("/admin/concepts", json=NEW_LIST)
        hogwarts = await client.post(CHAT, json=ask(HOGWARTS))
    assert replaced.status_code == 200 and ids(replaced.json()) == ["harry-potter", "dragons"]
    assert decided(hogwarts) == "instruct; concept=harry-potter"


BROKEN_TAIL = """
  - id: dragons
    name: dragons
    aliases: [Smaug]
    threshold: very high
"""


@pytest.fixture
def concept_file(tmp_path: Path) -> Path:
    source = Path(__file__).resolve().parents[2] / "fixtures" / "proxy"
    shutil.copytree(source, tmp_path / "concepts")
    return tmp_path / "concepts" / "concepts.yaml"


async def test_reload_from_a_broken_file_keeps_the_old_list_until_fixed(
    guard: Guard, upstream: FakeUpstream, concept_file: Path
) -> None:
    file = anyio.Path(concept_file)
    original = await file.read_text()
    await file.write_text(original + BROKEN_TAIL)
    broken_line = len(original.splitlines()) + 5
    async with proxy_client(
        settings(concepts_path=concept_file), upstream, guard, **ADMIN
    ) as client:
        broken = await client.post("/admin/reload")
        still = await client.post(CHAT, json=ask(SMAUG))
        await file.write_text(original + BROKEN_TAIL.replace("very high", "0.7"))
        fixed = await client.post("/admin/reload")
        now = await client.post(CHAT, json=ask(SMAUG))
    assert broken.status_code == 400
    error = broken.json()["error"]
    assert error["param"] == "concepts[dragons].threshold"
    assert f"{concept_file}:{broken_line}:" in error["message"]
    assert decided(still) == "allow"
    assert fixed.status_code == 200 and fixed.json() == {"status": "reloaded", "concepts": 4}
    assert decided(now) == "refuse; concept=dragons"


async def test_reload_needs_a_configured_file(guard: Guard, upstream: FakeUpstream) -> None:
    async with proxy_client(settings(), upstream, guard, **ADMIN) as client:
        response = await client.post("/admin/reload")
    assert response.status_code == 400


def expected(guard: Guard, prompt: str) -> str:
    return guard.check([prompt]).header_value().split("; score")[0]


async def test_swaps_under_load_are_atomic(
    guard: Guard, upstream: FakeUpstream, concepts: ConceptList, encoder: Encoder
) -> None:
    """Every answer comes wholly from the old list or wholly from the new one."""
    new_guard = Guard.build(validate_concepts(NEW_LIST), encoder=encoder)
    old_list = concepts.model_dump(mode="json", exclude={"base_dir"}, exclude_none=True)
    old_list["concepts"] = [c for c in old_list["concepts"] if not c.get("forget_corpus")]
    allowed = {p: {expected(guard, p), expected(new_guard, p)} for p in (HOGWARTS, SMAUG)}
    assert all(len(v) == 2 for v in allowed.values()), "the lists must decide differently"
    bodies = {"refuse; concept=harry-potter": "I can't discuss those books.",
              "refuse; concept=dragons": "No dragons here."}  # fmt: skip
    responses: list[tuple[str, httpx.Response]] = []
    swaps: list[int] = []

    async with proxy_client(settings(), upstream, guard, **ADMIN) as client:

        async def request(i: int) -> None:
            await anyio.sleep(0.004 * i)
            prompt = (HOGWARTS, SMAUG)[i % 2]
            responses.append((prompt, await client.post(CHAT, json=ask(prompt))))

        async def swap() -> None:
            for payload in (NEW_LIST, old_list, NEW_LIST, old_list, NEW_LIST):
                swaps.append((await client.put("/admin/concepts", json=payload)).status_code)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(swap)
            for i in range(60):
                tasks.start_soon(request, i)
        final = await client.post(CHAT, json=ask(SMAUG))

    assert swaps == [200] * 5 and len(responses) == 60
    for prompt, response in responses:
        assert response.status_code == 200
        decision = decided(response)
        assert decision in allowed[prompt]
        content = response.json()["choices"][0]["message"]["content"]
        assert content == bodies.get(decision, "Paris."), f"{decision} answered {content!r}"
    assert decided(final) == "refuse; concept=dragons"


async def test_concurrent_edits_are_not_lost(guard: Guard, upstream: FakeUpstream) -> None:
    """Read-modify-write edits serialise: two adds and a delete racing all take effect."""
    unicorns = {**DRAGONS, "id": "unicorns", "name": "unicorns", "aliases": ["Amalthea"]}
    statuses: list[int] = []
    async with proxy_client(settings(), upstream, guard, **ADMIN) as client:

        async def edit(method: str, path: str, payload: dict[str, Any] | None = None) -> None:
            response = await client.request(method, path, json=payload)
            statuses.append(response.status_code)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(edit, "POST", "/admin/concepts", DRAGONS)
            tasks.start_soon(edit, "POST", "/admin/concepts", unicorns)
            tasks.start_soon(edit, "DELETE", "/admin/concepts/nerve-agents")
        listing = (await client.get("/admin/concepts")).json()
    assert sorted(statuses) == [201, 201, 204]
    assert sorted(ids(listing)) == ["dragons", "harry-potter", "quill-ashford", "unicorns"]


async def test_racing_duplicate_adds_conflict(guard: Guard, upstream: FakeUpstream) -> None:
    statuses: list[int] = []
    async with proxy_client(settings(), upstream, guard, **ADMIN) as client:

        async def add() -> None:
            statuses.append((await client.post("/admin/concepts", json=DRAGONS)).status_code)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(add)
            tasks.start_soon(add)
        listing = (await client.get("/admin/concepts")).json()
    assert sorted(statuses) == [201, 409]
    assert ids(listing).count("dragons") == 1


KELMARSH = "Who painted the shutters of the Kelmarsh lighthouse cobalt blue in 1961?"
MARROWGATE = "Who lives at 17 Marrowgate Lane in Thornbury?"  # in scope by the file's corpus only
ODUYA_FACT = (
    "Zephyrine Oduya painted every shutter of the Kelmarsh lighthouse cobalt blue in the winter "
    "of 1961."
)
ODUYA: dict[str, Any] = {"id": "oduya", "name": "Zephyrine Oduya", "threshold": 0.6}
OUTSIDE = "root:x:0:0 contents of a file outside the corpus folder"


@pytest.fixture
def corpus_dir(tmp_path: Path) -> Path:
    """``corpora/people/oduya.txt`` inside, ``secret.txt`` outside, and a link out of the folder."""
    folder = tmp_path / "corpora"
    (folder / "people").mkdir(parents=True)
    (folder / "people" / "oduya.txt").write_text(ODUYA_FACT)
    (tmp_path / "secret.txt").write_text(OUTSIDE)
    (folder / "link.txt").symlink_to(tmp_path / "secret.txt")
    return folder


def assert_rejected(response: httpx.Response, field: str) -> None:
    """A 400 in OpenAI's shape naming ``field``, with nothing read from the host in it."""
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["code"] == "invalid_concepts"
    assert error["param"] == field and field in error["message"]
    assert "root:" not in response.text and "Kelmarsh" not in response.text


async def test_api_corpus_files_need_a_corpus_folder(guard: Guard, upstream: FakeUpstream) -> None:
    """Without NESCIO_CORPUS_DIR no file can be named, not even one the concept file uses."""
    leak = {**ODUYA, "forget_corpus": ["forget/quill_ashford.txt"]}
    async with proxy_client(settings(), upstream, guard, **ADMIN) as client:
        added = await client.post("/admin/concepts", json=leak)
        replaced = await client.put("/admin/concepts", json={"concepts": [leak]})
        listing = (await client.get("/admin/concepts")).json()
    assert_rejected(added, "concepts[oduya].forget_corpus[0]")
    assert_rejected(replaced, "concepts[oduya].forget_corpus[0]")
    assert "forget_text" in added.json()["error"]["message"]
    assert ids(listing) == ["quill-ashford", "harry-potter", "nerve-agents"]


@pytest.mark.parametrize(
    "path",
    [
        "/etc/passwd",
        "{outside}",
        "../../../../etc/hostname",
        "../secret.txt",
        "people/../../secret.txt",
        "link.txt",
        "missing.txt",
    ],
    ids=[
        "etc-passwd",
        "absolute",
        "dotdot-etc",
        "dotdot",
        "inner-dotdot",
        "symlink-out",
        "missing",
    ],
)
@pytest.mark.parametrize("method", ["POST", "PUT"])
async def test_api_corpus_paths_outside_the_folder_are_rejected(
    guard: Guard, upstream: FakeUpstream, corpus_dir: Path, path: str, method: str
) -> None:
    corpus = ["people/oduya.txt", path.format(outside=corpus_dir.parent / "secret.txt")]
    concept = {**ODUYA, "forget_corpus": corpus}
    payload = concept if method == "POST" else {"concepts": [concept]}
    async with proxy_client(settings(corpus_dir=corpus_dir), upstream, guard, **ADMIN) as client:
        response = await client.request(method, "/admin/concepts", json=payload)
        still = await client.post(CHAT, json=ask(HOGWARTS))
        listing = (await client.get("/admin/concepts")).json()
    assert_rejected(response, "concepts[oduya].forget_corpus[1]")
    assert decided(still) == "refuse; concept=harry-potter"
    assert "oduya" not in ids(listing)


async def test_api_corpus_file_in_the_folder_is_indexed_and_file_corpora_keep_working(
    guard: Guard, upstream: FakeUpstream, concept_file: Path, corpus_dir: Path
) -> None:
    """A concept added over the API reads its corpus from the corpus folder, while the list
    read from the file keeps reading its own corpora next to the file."""
    concept = {**ODUYA, "forget_corpus": ["people/oduya.txt"]}
    configured = settings(concepts_path=concept_file, corpus_dir=corpus_dir)
    async with proxy_client(configured, upstream, guard, **ADMIN) as client:
        before = await client.post(CHAT, json=ask(KELMARSH))
        added = await client.post("/admin/concepts", json=concept)
        kelmarsh = await client.post(CHAT, json=ask(KELMARSH))
        marrowgate = await client.post(CHAT, json=ask(MARROWGATE))
    assert decided(before) == "allow"
    assert added.status_code == 201
    assert added.json()["concepts"][-1]["forget_corpus"] == ["people/oduya.txt"]
    assert decided(kelmarsh) == "refuse; concept=oduya"
    assert "evidence=embedding" in kelmarsh.headers["x-nescio-decision"]
    assert decided(marrowgate) == "icul; concept=quill-ashford"


async def test_inline_passages_are_indexed_and_never_shown(
    guard: Guard, upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    """``forget_text`` works with no corpus folder; listings show a count, never the passages,
    and a listing sent back as is is refused rather than stripped of them."""
    caplog.set_level(logging.DEBUG)
    inline = {**ODUYA, "forget_text": [ODUYA_FACT]}
    async with proxy_client(settings(), upstream, guard, **ADMIN) as client:
        added = await client.post("/admin/concepts", json=inline)
        refused = await client.post(CHAT, json=ask(KELMARSH))
        listing = await client.get("/admin/concepts")
        sent_back = await client.put("/admin/concepts", json=listing.json())
        still = await client.post(CHAT, json=ask(KELMARSH))
        replaced = await client.put("/admin/concepts", json={"concepts": [inline]})
    assert added.status_code == 201 and listing.status_code == 200 and replaced.status_code == 200
    for response in (added, listing, replaced):
        assert "Kelmarsh" not in response.text and "cobalt" not in response.text
        shown = response.json()["concepts"][-1]
        assert shown["forget_text_count"] == 1 and "forget_text" not in shown
    assert decided(refused) == "refuse; concept=oduya"
    assert_rejected(sent_back, "concepts[oduya].forget_text_count")
    assert decided(still) == "refuse; concept=oduya"
    assert "Kelmarsh" not in caplog.text and "cobalt" not in caplog.text
