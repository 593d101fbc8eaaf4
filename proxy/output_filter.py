"""Applying the output guard (:mod:`guards.output_guard`) to upstream answers.

Non-streamed answers are checked whole (off the event loop when large). Streams are relayed with a
small hold-back: an event is released only once ``HOLD_CHARS`` more characters have arrived after
it, so a name split across chunks is caught before any part of the text that completes it leaves
the proxy; each new piece is checked with the scanner's ``window`` of text before it, never the
whole answer again, so a long answer costs linear time. What a client reads is checked: the
content, the reasoning and tool-call arguments (a forced tool call answers in its arguments). On a leak the
held-back events are dropped, the concept's refusal text closes the choice, ``[DONE]`` follows,
and the upstream request is closed (which stops the generation). An incomplete event left when the
stream ends is dropped, as SSE clients drop it, so no unchecked text leaves.

With ``structured`` (the request asked for JSON or a forced tool call, see
:func:`proxy.refusal.wants_structured`), a chat answer is withheld in OpenAI's ``refusal`` field
instead of its content, so SDK helpers that parse the content report a refusal.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from guards.concepts import Concept
from guards.output_guard import LeakScanner
from proxy import sse

log = logging.getLogger(__name__)
HOLD_CHARS = 48
READABLE_FIELDS = ("content", "reasoning_content", "reasoning", "tool_calls", "function_call")


def filter_body(
    body: bytes, scanner: LeakScanner, *, structured: bool = False
) -> tuple[bytes, Concept | None]:
    """Replace leaking choices of a chat or text completion JSON body with the refusal text (in a
    chat message's ``refusal``, its ``content`` null, when ``structured``); a chat message that
    leaks loses its reasoning and tool calls too."""
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
        if isinstance(message, dict):
            concept = scanner.leaked(_message_text(message))
            if concept is not None:
                for key in READABLE_FIELDS:
                    message.pop(key, None)
                if structured:
                    message.update(content=None, refusal=scanner.refusal(concept))
                else:
                    message["content"] = scanner.refusal(concept)
        else:
            text = choice.get("text")
            concept = scanner.leaked(text) if isinstance(text, str) else None
            if concept is not None:
                choice["text"] = scanner.refusal(concept)
        if concept is not None:
            hit = concept
            choice["finish_reason"] = "stop"
            choice["logprobs"] = None
    if hit is None:
        return body, None
    return json.dumps(payload).encode(), hit


def _message_text(message: dict[str, Any]) -> str:
    """What a client reads of a chat message or delta: content, reasoning, tool-call arguments."""
    parts = [message.get(key) for key in ("content", "reasoning_content", "reasoning")]
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list) else []:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            parts += [function.get("name"), function.get("arguments")]
    return " ".join(p for p in parts if isinstance(p, str))


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
    structured: bool = False


async def filter_stream(
    chunks: AsyncGenerator[bytes, None],
    scanner: LeakScanner,
    hold_chars: int = HOLD_CHARS,
    *,
    structured: bool = False,
) -> AsyncIterator[bytes]:
    """Relay SSE events, holding back the last ``hold_chars`` characters until they are checked.

    ``chunks`` is closed on every exit (leak, end, client disconnect), closing the upstream. The
    stream's own ending (``[DONE]``, or the relay's error event and ``[DONE]``) passes through;
    only a withheld answer gets a ``[DONE]`` from here, since nothing after the leak is relayed.
    """
    state = _StreamState(structured=structured)
    buffer = b""
    try:
        async for chunk in chunks:
            searched = len(buffer)
            buffer += chunk
            events, rest = sse.split_events(buffer, searched)
            begin = 0
            for block, end in events:
                concept = _add_event(state, block, buffer[begin:end], scanner)
                begin = end
                if concept is not None:
                    log.info("output guard: answer withheld, concept=%s", concept.id)
                    for withheld in _withheld(state, scanner.refusal(concept)):
                        yield withheld
                    return
                for released in _release(state, hold_chars):
                    yield released
            buffer = buffer[rest:]
        for event in state.pending:
            yield event.raw
    finally:
        await chunks.aclose()


def _add_event(
    state: _StreamState, block: bytes, raw: bytes, scanner: LeakScanner
) -> Concept | None:
    data = sse.event_data(block)
    added = 0
    if data is not None and data != sse.DONE_DATA:
        try:
            payload = json.loads(data)
        except ValueError:  # JSONDecodeError and UnicodeDecodeError
            payload = None
        if isinstance(payload, dict) and isinstance(payload.get("choices"), list):
            if not state.template:
                state.template = {k: payload.get(k) for k in ("id", "object", "created", "model")}
            for choice in payload["choices"]:
                piece = _piece(choice, state)
                if piece:
                    index = _index(choice)
                    text = state.texts.get(index, "") + piece
                    added += len(piece)
                    leaked = scanner.leaked(text)
                    if leaked is not None:
                        return leaked
                    state.texts[index] = _tail(text, scanner.window)
    state.pending.append(_Event(raw, added))
    return None


def _piece(choice: Any, state: _StreamState) -> str:
    if not isinstance(choice, dict):
        return ""
    delta = choice.get("delta")
    if isinstance(delta, dict):
        return _message_text(delta)
    state.is_chat = False
    text = choice.get("text")
    return text if isinstance(text, str) else ""


def _index(choice: dict[str, Any]) -> int:
    index = choice.get("index", 0)
    return index if isinstance(index, int) else 0


def _tail(text: str, window: int) -> str:
    """The last ``window`` characters of ``text``, cut at a space so no word is split (a split
    word could read as a name it is not part of)."""
    if len(text) <= window:
        return text
    tail = text[-window:]
    space = tail.find(" ")
    return tail[space + 1 :] if space >= 0 else tail


def _release(state: _StreamState, hold_chars: int) -> list[bytes]:
    released: list[bytes] = []
    while state.pending and sum(e.chars for e in state.pending[1:]) >= hold_chars:
        released.append(state.pending.pop(0).raw)
    while state.pending and state.pending[0].chars == 0 and len(state.pending) > 1:
        released.append(state.pending.pop(0).raw)
    return released


def _withheld(state: _StreamState, refusal: str) -> list[bytes]:
    """Close every choice seen so far: the refusal text (a chat ``refusal`` delta when structured),
    a finish chunk of its own, ``[DONE]``."""
    events = []
    for index in sorted(state.texts) or [0]:
        for text, finish in ((f"\n{refusal}", None), ("", "stop")):
            choice: dict[str, Any] = {"index": index, "logprobs": None, "finish_reason": finish}
            if not state.is_chat:
                choice["text"] = text
            elif not text:
                choice["delta"] = {}
            elif state.structured:
                choice["delta"] = {"refusal": refusal}
            else:
                choice["delta"] = {"content": text}
            events.append(sse.encode({**state.template, "choices": [choice]}))
    events.append(sse.DONE)
    return events
