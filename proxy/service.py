"""The proxy's behaviour: parse, screen, then refuse or relay the upstream answer.

Routes only parse and call in here; what the model reads, and whether it reads it, is decided by
one call, :meth:`guards.guard.Guard.ascreen` (see :mod:`guards.screen`). Every response carries
the decision header (unless turned off). Streaming answers are relayed chunk by chunk as the
upstream sends them; when the client goes away, the relay is cancelled and the upstream response
closed, which aborts the generation.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import httpx
from fastapi.responses import JSONResponse, Response, StreamingResponse

from guards.chat import Endpoint
from guards.errors import RequestRejected
from guards.guard import Guard
from guards.screen import Screening, ScreenPolicy
from proxy.errors import (
    GuardUnavailable,
    ProxyError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from proxy.observe import Record, current
from proxy.output_filter import filter_body, filter_stream
from proxy.protocol import ChatCompletionRequest, CompletionRequest, dumps_json, parse_body
from proxy.refusal import (
    chat_refusal,
    chat_refusal_stream,
    completion_refusal,
    completion_refusal_stream,
    wants_structured,
)
from proxy.relay import relay_stream
from proxy.settings import ProxySettings
from proxy.state import GuardState
from proxy.upstream import Upstream, relay_headers

log = logging.getLogger(__name__)
DECISION_HEADER = "X-Nescio-Decision"
FAIL_OPEN_HEADER = "error; fail-open"
OUTPUT_HEADER = "X-Nescio-Output"


class ProxyService:
    """Parse, screen (:meth:`guards.guard.Guard.ascreen`), then refuse or relay. Nothing else."""

    def __init__(self, settings: ProxySettings, state: GuardState, upstream: Upstream) -> None:
        self.settings = settings
        self.state = state
        self.upstream = upstream
        self.policy = ScreenPolicy(
            media=settings.unguarded_media,
            mixed_prompts=settings.mixed_prompts,
            output_guard=settings.output_guard,
            max_chars=settings.max_guarded_chars,
            max_turns=settings.max_guarded_turns,
            max_segments=settings.max_guarded_segments,
            deadline=settings.guard_deadline,
        )

    async def chat(self, raw: bytes, headers: dict[str, str]) -> Response:
        body, request = parse_body(raw, ChatCompletionRequest, self.settings.max_json_depth)
        guard = self.state.guard  # one configuration for the whole request, even across a swap
        screening = await self._screen(guard, body, "chat")
        if screening.refusal is not None:
            payload = chat_refusal(request, screening.refusal)
            chunks = chat_refusal_stream(request, screening.refusal)
            return self._refuse(request.stream, payload, chunks, screening.header)
        content = raw if guard is None else None
        return await self._forward("/v1/chat/completions", screening, headers, content)

    async def completions(self, raw: bytes, headers: dict[str, str]) -> Response:
        body, request = parse_body(raw, CompletionRequest, self.settings.max_json_depth)
        guard = self.state.guard  # one configuration for the whole request, even across a swap
        screening = await self._screen(guard, body, "completions")
        if screening.refusal is not None:
            payload = completion_refusal(request, screening.refusal)
            chunks = completion_refusal_stream(request, screening.refusal)
            return self._refuse(request.stream, payload, chunks, screening.header)
        content = raw if guard is None else None
        return await self._forward("/v1/completions", screening, headers, content)

    async def _screen(
        self, guard: Guard | None, body: dict[str, Any], endpoint: Endpoint
    ) -> Screening:
        """The guard's screening; the body unguarded when there is no concept list, or when the
        guard failed and fail-open is on. Client errors (:class:`RequestRejected`) are never
        failed open: they are answered with a 400."""
        record = current()
        if guard is None:
            _note(record, "unguarded")
            return Screening.unguarded(body, "allow")
        started = time.perf_counter()
        try:
            screening = await guard.ascreen(body, endpoint, self.policy)
        except RequestRejected:
            _note(record, "rejected", started)
            raise
        except Exception as exc:  # the fail-open/closed policy must cover every failure mode
            log.error(
                "guard check failed (%s); fail_open=%s", type(exc).__name__, self.settings.fail_open
            )
            if self.settings.fail_open:
                _note(record, "fail-open", started)
                return Screening.unguarded(body, FAIL_OPEN_HEADER)
            _note(record, "guard-error", started)
            raise GuardUnavailable("the guard is unavailable; request not forwarded") from exc
        decision = screening.decision
        action = "allow" if decision is None else decision.action
        _note(record, "partial" if screening.partial is not None else action, started)
        if decision is not None and decision.in_scope:
            log.debug(
                "decision %s concept=%s score=%.3f%s",
                decision.action,
                decision.concept_id,
                decision.score,
                "" if screening.header == decision.header_value() else " (mixed prompt split)",
            )
        return screening

    async def models(self, headers: dict[str, str]) -> Response:
        response = await self.upstream.send("GET", "/v1/models", headers=headers)
        try:
            content = await response.aread()
        finally:
            await response.aclose()
        return Response(content, response.status_code, relay_headers(response))

    async def upstream_ready(self) -> bool:
        try:
            response = await self.upstream.send("GET", "/v1/models")
        except ProxyError:  # unreachable or timed out: not ready
            return False
        await response.aclose()
        return response.status_code == 200

    def _decision_headers(self, value: str) -> dict[str, str]:
        return {DECISION_HEADER: value} if self.settings.decision_header else {}

    def _refuse(
        self,
        stream: bool,
        payload: dict[str, Any],
        chunks: AsyncIterator[bytes],
        header: str,
    ) -> Response:
        headers = self._decision_headers(header)
        if stream:
            return StreamingResponse(chunks, media_type="text/event-stream", headers=headers)
        return JSONResponse(payload, headers=headers)

    async def _forward(
        self, path: str, screening: Screening, headers: dict[str, str], raw: bytes | None
    ) -> Response:
        body, scanner = screening.body, screening.scanner
        if body is None:
            raise ProxyError("internal error: a screening without a refusal or a body")
        structured = wants_structured(body)
        started = time.perf_counter()
        # ``raw`` (the client's own bytes, as checked by parse_body) only when no guard ran; a
        # screened body is re-serialised, so the upstream reads exactly the JSON the guard read
        # (no parser differences, e.g. over duplicate keys).
        content = dumps_json(body) if raw is None else raw
        response = await self.upstream.send("POST", path, content=content, headers=headers)
        record = current()
        if record is not None:
            record.upstream_s = time.perf_counter() - started
        out_headers = {**relay_headers(response), **self._decision_headers(screening.header)}
        is_stream = response.headers.get("content-type", "").startswith("text/event-stream")
        if body.get("stream") and response.status_code == 200 and is_stream:
            chunks = relay_stream(response)
            return StreamingResponse(
                chunks
                if scanner is None
                else filter_stream(chunks, scanner, structured=structured),
                status_code=200,
                headers=out_headers,
                media_type="text/event-stream",
            )
        try:
            content = await response.aread()
        except httpx.TimeoutException as exc:
            await response.aclose()
            raise UpstreamTimeout(
                f"upstream did not answer in time ({type(exc).__name__})"
            ) from exc
        except httpx.HTTPError as exc:
            await response.aclose()
            raise UpstreamUnavailable(
                f"upstream response broke off ({type(exc).__name__})"
            ) from exc
        await response.aclose()
        if scanner is not None and response.status_code == 200:
            check = partial(filter_body, content, scanner, structured=structured)
            # A long answer is checked in a worker thread, so the event loop keeps serving.
            content, leaked = await asyncio.to_thread(check) if len(content) > 65536 else check()
            if leaked is not None:
                log.info("output guard: answer withheld, concept=%s", leaked.id)
                if self.settings.decision_header:
                    out_headers[OUTPUT_HEADER] = f"withheld; concept={leaked.id}"
        return Response(content, response.status_code, out_headers)


def _note(record: Record | None, decision: str, started: float | None = None) -> None:
    """Put the decision (and the guard's time since ``started``) on the request's record."""
    if record is None:
        return
    record.decision = decision
    if started is not None:
        record.guard_s = time.perf_counter() - started
