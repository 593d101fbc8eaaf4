"""Applying the output guard (:mod:`guards.output_guard`) to upstream answers.

Non-streamed answers are checked whole. Streams are relayed with a small hold-back: an event is
released only once ``HOLD_CHARS`` more characters have arrived after it, so a name split across
chunks is caught before any part of the text that completes it leaves the proxy. On a leak the
held-back events are dropped, the concept's refusal text closes the choice, ``[DONE]`` follows,
and the upstream request is closed (which stops the generation).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from guards.concepts import Concept
from guards.output_guard import LeakScanner

log = logging.getLogger(__name__)
HOLD_CHARS = 48


def filter_body(body: bytes, scanner: LeakScanner) -> tuple[bytes, Concept | None]:
    """Replace leaking choices of a chat or text completion JSON body with the refusal text."""
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return body, None
    choices = payload.get("choices") if isinstance(payload, dict) else None
    if not isinstance(choices, list):
        return body, None
    hit: Concept | None = None
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        message = choice.get("message")
        holder, key = (message, "content") if isinstance(message, dict) else (choice, "text")
        text = holder.get(key)
        concept = scanner.leaked(text) if isinstance(text, str) else None
        if concept is not None:
            hit = concept
            holder[key] = scanner.refusal(concept)
            choice["finish_reason"] = "stop"
            choice["logprobs"] = None
    if hit is None:
        return body, None
    return json.dumps(payload).encode(), hit


@dataclass
class _Event:
    raw: bytes
    chars: int


@dataclass
class _StreamState:
    texts: dict[int, str] = field(default_factory=dict)
    pending: list[_Event] = field(default_factory=list)
    template: dict[str, Any] = field(default_factory=dict)
    is_chat: bool = True


async def filter_stream(
    chunks: AsyncGenerator[bytes, None], scanner: LeakScanner, hold_chars: int = HOLD_CHARS
) -> AsyncIterator[bytes]:
    """Relay SSE events, holding back the last ``hold_chars`` characters until they are checked.

    ``chunks`` is closed on every exit (leak, end, client disconnect), closing the upstream.
    """
    state = _StreamState()
    buffer = b""
    try:
        async for chunk in chunks:
            buffer += chunk
            while b"\n\n" in buffer:
                raw, buffer = buffer.split(b"\n\n", 1)
                concept = _add_event(state, raw + b"\n\n", scanner)
                if concept is not None:
                    log.info("output guard: answer withheld, concept=%s", concept.id)
                    for withheld in _withheld(state, scanner.refusal(concept)):
                        yield withheld
                    return
                for released in _release(state, hold_chars):
                    yield released
        for event in state.pending:
            yield event.raw
        if buffer:
            yield buffer
    finally:
        await chunks.aclose()


def _add_event(state: _StreamState, raw: bytes, scanner: LeakScanner) -> Concept | None:
    data = raw.strip()
    added = 0
    if data.startswith(b"data:") and data[5:].strip() != b"[DONE]":
        try:
            payload = json.loads(data[5:])
        except (json.JSONDecodeError, UnicodeDecodeError):
            payload = None
        if isinstance(payload, dict) and isinstance(payload.get("choices"), list):
            if not state.template:
                state.template = {k: payload.get(k) for k in ("id", "object", "created", "model")}
            for choice in payload["choices"]:
                piece = _piece(choice, state)
                if piece:
                    index = int(choice.get("index", 0))
                    state.texts[index] = state.texts.get(index, "") + piece
                    added += len(piece)
                    leaked = scanner.leaked(state.texts[index])
                    if leaked is not None:
                        return leaked
    state.pending.append(_Event(raw, added))
    return None


def _piece(choice: Any, state: _StreamState) -> str:
    if not isinstance(choice, dict):
        return ""
    delta = choice.get("delta")
    if isinstance(delta, dict):
        content = delta.get("content")
        return content if isinstance(content, str) else ""
    state.is_chat = False
    text = choice.get("text")
    return text if isinstance(text, str) else ""


def _release(state: _StreamState, hold_chars: int) -> list[bytes]:
    released: list[bytes] = []
    while state.pending and sum(e.chars for e in state.pending[1:]) >= hold_chars:
        released.append(state.pending.pop(0).raw)
    while state.pending and state.pending[0].chars == 0 and len(state.pending) > 1:
        released.append(state.pending.pop(0).raw)
    return released


def _withheld(state: _StreamState, refusal: str) -> list[bytes]:
    """Close every choice seen so far: the refusal text, a finish chunk of its own, ``[DONE]``."""
    events = []
    for index in sorted(state.texts) or [0]:
        for text, finish in ((f"\n{refusal}", None), ("", "stop")):
            choice: dict[str, Any] = {"index": index, "logprobs": None, "finish_reason": finish}
            if state.is_chat:
                choice["delta"] = {"content": text} if text else {}
            else:
                choice["text"] = text
            events.append(
                f"data: {json.dumps({**state.template, 'choices': [choice]})}\n\n".encode()
            )
    events.append(b"data: [DONE]\n\n")
    return events
