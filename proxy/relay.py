"""Relaying an upstream SSE stream to the client, and ending it cleanly when the upstream fails.

Complete events are released as soon as their read arrives, byte for byte; only an incomplete
event's bytes wait for the read that completes it. The body is read decoded (``aiter_bytes``),
since the relayed headers drop ``content-encoding``. Each event's ``data`` is parsed once, to
check that it is a JSON object or exactly ``[DONE]``; events without ``data`` (comments,
``event:`` lines) pass as they are.

A stream that breaks off, times out, carries a malformed event, grows an event past
``MAX_EVENT_BYTES`` or ends without ``[DONE]`` is ended for the client with one OpenAI-shaped
error event and ``[DONE]``, so SDKs raise an error instead of returning a silently cut answer;
nothing after a malformed event is relayed, and the fault is logged once, by reason only. After
``[DONE]`` the rest of the body is read and dropped, which returns the upstream connection to the
pool. The upstream response is closed on every exit, a client disconnect included, shielded from
cancellation so that the close, which stops the generation, always happens.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass

import anyio
import httpx

from proxy import sse
from proxy.errors import error_body

log = logging.getLogger(__name__)
MAX_EVENT_BYTES = 16 * 2**20


@dataclass(frozen=True)
class StreamFault:
    """Why an upstream stream was cut, in the error event's terms."""

    type: str
    code: str
    message: str

    def event(self) -> bytes:
        """The error event and the ``[DONE]`` that close the client's stream."""
        return sse.encode(error_body(self.message, self.type, code=self.code)) + sse.DONE


INCOMPLETE = StreamFault(
    "upstream_error", "stream_incomplete", "upstream stream ended without [DONE]"
)
MALFORMED = StreamFault(
    "upstream_error", "malformed_event", "upstream sent an event that is not a JSON object"
)
OVERSIZED = StreamFault(
    "upstream_error", "event_too_large", "upstream event exceeds the relay's size limit"
)


def transport_fault(exc: httpx.HTTPError) -> StreamFault:
    if isinstance(exc, httpx.TimeoutException):
        message = f"upstream stream timed out ({type(exc).__name__})"
        return StreamFault("upstream_timeout", "stream_timeout", message)
    message = f"upstream stream broke off ({type(exc).__name__})"
    return StreamFault("upstream_error", "stream_broken", message)


class EventChecker:
    """Splits upstream reads into complete events and checks each once.

    ``feed`` returns the bytes to release now. Once ``done`` (``[DONE]`` relayed) or ``fault`` is
    set, it releases nothing more.
    """

    def __init__(self, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self.max_event_bytes = max_event_bytes
        self.done = False
        self.fault: StreamFault | None = None
        self._pending = b""

    def feed(self, chunk: bytes) -> bytes:
        if self.done or self.fault is not None:
            return b""
        buffer = self._pending + chunk if self._pending else chunk
        events, rest = sse.split_events(buffer, len(self._pending))
        released = 0
        for block, end in events:
            data = sse.event_data(block)
            if data == sse.DONE_DATA:
                self.done = True
                self._pending = b""
                return buffer[:end]
            if data is not None and not _is_json_object(data):
                self.fault = MALFORMED
                self._pending = b""
                return buffer[:released]
            released = end
        if len(buffer) - rest > self.max_event_bytes:
            self.fault = OVERSIZED
            self._pending = b""
        else:
            self._pending = buffer[rest:]
        return buffer[:released]


def _is_json_object(data: bytes) -> bool:
    try:
        return isinstance(json.loads(data), dict)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        return False


async def relay_stream(response: httpx.Response) -> AsyncGenerator[bytes, None]:
    """The upstream's events as they arrive, ending in ``[DONE]`` or in an error event and
    ``[DONE]`` (see the module docstring); the upstream response is closed on every exit."""
    checker = EventChecker()
    try:
        fault: StreamFault | None
        try:
            async for chunk in response.aiter_bytes():
                released = checker.feed(chunk)
                if released:
                    yield released
                if checker.fault is not None:
                    break
            fault = None if checker.done else checker.fault or INCOMPLETE
        except httpx.HTTPError as exc:
            fault = None if checker.done else transport_fault(exc)
        if fault is not None:
            log.warning("upstream stream cut (%s): %s", fault.code, fault.message)
            yield fault.event()
    finally:
        with anyio.CancelScope(shield=True):
            await response.aclose()
