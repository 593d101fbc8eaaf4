"""Client keys, the separate admin key, and which credentials the upstream sees."""

from __future__ import annotations

import pytest
from proxy_fakes import FakeUpstream, proxy_client

from guards.guard import Guard
from proxy.settings import ProxySettings

pytestmark = pytest.mark.anyio

KEYS = ["sk-client-one", "sk-client-two"]
ADMIN_KEY = "sk-admin-only"
UPSTREAM_KEY = "sk-upstream"
CHAT = "/v1/chat/completions"
BODY = {"model": "m", "messages": [{"role": "user", "content": "Hello"}]}


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        (bearer("sk-wrong"), 401),
        (bearer(""), 401),
        ({"authorization": f"Basic {KEYS[0]}"}, 401),
        (bearer(ADMIN_KEY), 401),
        (bearer(KEYS[0]), 200),
        (bearer(KEYS[1]), 200),
        ({"authorization": f"bearer  {KEYS[1]} "}, 200),
    ],
)
async def test_client_keys(
    guard: Guard, upstream: FakeUpstream, headers: dict[str, str], status: int
) -> None:
    settings = ProxySettings(api_keys=KEYS, admin_key=ADMIN_KEY)
    async with proxy_client(settings, upstream, guard) as client:
        chat = await client.post(CHAT, json=BODY, headers=headers)
        models = await client.get("/v1/models", headers=headers)
    assert (chat.status_code, models.status_code) == (status, status)
    if status == 401:
        assert chat.json()["error"]["type"] == "authentication_error"
        assert upstream.received == []


async def test_no_client_keys_means_open_access(guard: Guard, upstream: FakeUpstream) -> None:
    async with proxy_client(ProxySettings(), upstream, guard) as client:
        assert (await client.post(CHAT, json=BODY)).status_code == 200


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), (bearer(KEYS[0]), 401), (bearer("sk-wrong"), 401), (bearer(ADMIN_KEY), 200)],
)
async def test_admin_needs_the_admin_key(
    guard: Guard, upstream: FakeUpstream, headers: dict[str, str], status: int
) -> None:
    settings = ProxySettings(api_keys=KEYS, admin_key=ADMIN_KEY)
    async with proxy_client(settings, upstream, guard) as client:
        response = await client.get("/admin/concepts", headers=headers)
    assert response.status_code == status


@pytest.mark.parametrize("headers", [{}, bearer(KEYS[0]), bearer("anything")])
async def test_admin_is_disabled_without_an_admin_key(
    guard: Guard, upstream: FakeUpstream, headers: dict[str, str]
) -> None:
    async with proxy_client(ProxySettings(api_keys=KEYS), upstream, guard) as client:
        response = await client.get("/admin/concepts", headers=headers)
        deleted = await client.delete("/admin/concepts/harry-potter", headers=headers)
    assert response.status_code == deleted.status_code == 403
    assert response.json()["error"]["type"] == "permission_error"


@pytest.mark.parametrize("path", [CHAT, "/v1/models"])
async def test_upstream_gets_the_upstream_key_never_the_client_key(
    guard: Guard, upstream: FakeUpstream, path: str
) -> None:
    settings = ProxySettings(api_keys=KEYS, upstream_api_key=UPSTREAM_KEY)
    async with proxy_client(settings, upstream, guard, **bearer(KEYS[0])) as client:
        if path == CHAT:
            await client.post(path, json=BODY, headers={"cookie": "session=1", "x-trace": "t1"})
        else:
            await client.get(path)
    sent = upstream.last.headers
    assert sent["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert KEYS[0] not in str(sent.raw)
    assert "cookie" not in sent
    if path == CHAT:
        assert sent["x-trace"] == "t1"


async def test_proxy_keys_without_upstream_key_send_no_credentials_upstream(
    guard: Guard, upstream: FakeUpstream
) -> None:
    async with proxy_client(ProxySettings(api_keys=KEYS), upstream, guard) as client:
        await client.post(CHAT, json=BODY, headers=bearer(KEYS[1]))
    assert "authorization" not in upstream.last.headers


async def test_without_proxy_keys_the_client_credentials_pass_through(
    guard: Guard, upstream: FakeUpstream
) -> None:
    async with proxy_client(ProxySettings(), upstream, guard) as client:
        await client.post(CHAT, json=BODY, headers=bearer("sk-for-upstream"))
    assert upstream.last.headers["authorization"] == "Bearer sk-for-upstream"
