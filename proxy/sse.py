"""Server-sent events as OpenAI streams use them: one encoder, one event splitter, one reader.

The splitter and the reader follow the SSE spec (an event ends at a blank line, whichever of
``\\n``, ``\\r\\n`` or ``\\r`` ends its lines; ``data:`` lines join with ``\\n``; one space after the
colon is not part of the value), so the relay and the output guard agree on where events end.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

DONE = b"data: [DONE]\n\n"
DONE_DATA = b"[DONE]"
_BOUNDARY = re.compile(rb"\r\n\r\n|\n\n|\r\r")
_BOUNDARY_MAX = len(b"\r\n\r\n")


def encode(payload: Mapping[str, Any]) -> bytes:
    """One ``data:`` event carrying ``payload`` as JSON."""
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def split_events(buffer: bytes, searched: int = 0) -> tuple[list[tuple[bytes, int]], int]:
    """The complete events of ``buffer``, each as its block (no boundary) and the offset after it,
    and the offset where the incomplete rest begins.

    ``searched``: how many leading bytes hold no complete boundary (the incomplete rest of an earlier
    call, before the next read was appended), so an event arriving in many reads is searched once.
    """
    start = max(0, searched - _BOUNDARY_MAX + 1)
    events: list[tuple[bytes, int]] = []
    begin = 0
    while (match := _BOUNDARY.search(buffer, start)) is not None:
        end = match.end()
        events.append((buffer[begin : match.start()], end))
        begin = start = end
    return events, begin


def event_data(block: bytes) -> bytes | None:
    """The ``data`` of one event block; ``None`` when it has no ``data:`` line (a comment, or an
    ``event:``/``id:``/``retry:`` line alone)."""
    data: bytes | None = None
    for line in block.splitlines():
        if line.startswith(b"data:"):
            value = line[6:] if line.startswith(b"data: ") else line[5:]
            data = value if data is None else data + b"\n" + value
    return data
