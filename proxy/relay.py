"""Relaying an upstream SSE stream to the client."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator

import httpx

from proxy.errors import error_body


async def relay_stream(response: httpx.Response) -> AsyncGenerator[bytes, None]:
    """Bytes as they arrive; a broken upstream stream ends with an SSE error event."""
    try:
        async for chunk in response.aiter_raw():
            yield chunk
    except httpx.HTTPError as exc:
        error = error_body(f"upstream stream broke off ({type(exc).__name__})", "upstream_error")
        yield f"data: {json.dumps(error)}\n\n".encode()
    finally:
        await response.aclose()
