"""Bearer-key checks for clients and for the admin API, in constant time."""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from fastapi import Request
from pydantic import SecretStr

from proxy.errors import Forbidden, Unauthorized


def _bearer(header: str) -> str | None:
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _matches(token: str, keys: Sequence[SecretStr]) -> bool:
    found = False
    for key in keys:  # compare against every key so timing does not reveal which one matched
        found |= hmac.compare_digest(token.encode(), key.get_secret_value().encode())
    return found


def check_client(keys: Sequence[SecretStr], authorization: str) -> None:
    """Raise :class:`Unauthorized` unless ``authorization`` carries one of ``keys`` (none: open)."""
    if not keys:
        return
    token = _bearer(authorization)
    if token is None or not _matches(token, keys):
        raise Unauthorized("missing or invalid API key", code="invalid_api_key")


# The dependencies are ``async``: FastAPI runs a plain ``def`` dependency in its thread pool,
# a thread hop per request (~10% of the relay's CPU on this machine).
async def require_client(request: Request) -> None:
    check_client(request.app.state.settings.api_keys, request.headers.get("authorization", ""))


async def require_admin(request: Request) -> None:
    key: SecretStr | None = request.app.state.settings.admin_key
    if key is None:
        raise Forbidden("the admin API is disabled; set NESCIO_ADMIN_KEY to enable it")
    token = _bearer(request.headers.get("authorization", ""))
    if token is None or not _matches(token, [key]):
        raise Unauthorized("missing or invalid admin key", code="invalid_api_key")
