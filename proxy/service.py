"""The proxy's behaviour: check the conversation, apply the policy, relay the upstream answer.

Routes only parse and call in here. Every response carries the decision header (unless turned
off). A mixed prompt, whose last user message is only partly in scope, is forwarded without its
in-scope sentences (``partial=<n>`` in the header) unless ``mixed_prompts`` is ``whole_policy``.
Streaming answers are relayed chunk by chunk as the upstream sends them; when the client goes
away, the relay is cancelled and the upstream response closed, which aborts the generation.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
from fastapi.responses import JSONResponse, Response, StreamingResponse

from guards.decision import Decision
from guards.guard import Guard, last_user_turn, turns_of_messages
from guards.interventions import Outcome, Refusal, Rewrite
from guards.mixed import Partial
from guards.output_guard import LeakScanner
from proxy.errors import (
    GuardUnavailable,
    ProxyError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from proxy.output_filter import filter_body, filter_stream
from proxy.protocol import ChatCompletionRequest, CompletionRequest, parse_body
from proxy.relay import relay_stream
from proxy.refusal import (
    chat_refusal,
    chat_refusal_stream,
    completion_refusal,
    completion_refusal_stream,
)
from proxy.settings import ProxySettings
from proxy.state import GuardState
from proxy.upstream import Upstream, relay_headers

log = logging.getLogger(__name__)
DECISION_HEADER = "X-Nescio-Decision"
FAIL_OPEN_HEADER = "error; fail-open"
OUTPUT_HEADER = "X-Nescio-Output"
RefusalBuilder = Callable[[str], tuple[dict[str, Any], AsyncIterator[bytes]]]


class ProxyService:
    def __init__(self, settings: ProxySettings, state: GuardState, upstream: Upstream) -> None:
        self.settings = settings
        self.state = state
        self.upstream = upstream

    async def chat(self, raw: bytes, headers: dict[str, str]) -> Response:
        body, request = parse_body(raw, ChatCompletionRequest)

        def refusal(text: str) -> tuple[dict[str, Any], AsyncIterator[bytes]]:
            return chat_refusal(request, text), chat_refusal_stream(request, text)

        messages = body["messages"]
        turns = turns_of_messages(messages)
        last = last_user_turn(messages)
        return await self._guarded(
            "/v1/chat/completions", body, turns, last, headers, refusal, request.stream
        )

    async def completions(self, raw: bytes, headers: dict[str, str]) -> Response:
        body, request = parse_body(raw, CompletionRequest)

        def refusal(text: str) -> tuple[dict[str, Any], AsyncIterator[bytes]]:
            return completion_refusal(request, text), completion_refusal_stream(request, text)

        turns = request.prompt_texts()
        # A completion prompt is a document to continue, not a message of questions: never split
        # (see guards.interventions.withhold_parts); the concept's policy applies to all of it.
        return await self._guarded(
            "/v1/completions", body, turns, None, headers, refusal, request.stream
        )

    async def _guarded(
        self,
        path: str,
        body: dict[str, Any],
        turns: list[str],
        last: int | None,
        headers: dict[str, str],
        refusal: RefusalBuilder,
        stream: bool,
    ) -> Response:
        """Decide, then refuse, or forward the (possibly rewritten) body with the output guard.

        ``last`` is the index in ``turns`` of the message a mixed prompt may be split in.
        """
        guard = self.state.guard  # one configuration for the whole request, even across a swap
        decision = await self._decide(guard, turns)
        withheld = await self._withhold(guard, body, turns, last, decision)
        if withheld is not None:
            rewrite, partial = withheld
            sent = [*turns[: partial.turn], partial.kept, *turns[partial.turn + 1 :]]
            scanner = self._scanner(guard, sent)  # concepts named only in withheld parts too
            return await self._forward(path, rewrite.body, headers, partial.header_value(), scanner)
        outcome = _outcome(guard, body, decision)
        header = FAIL_OPEN_HEADER if decision is None else decision.header_value()
        if isinstance(outcome, Refusal):
            payload, chunks = refusal(outcome.text)
            return self._refuse(stream, payload, chunks, header)
        forwarded = outcome.body if isinstance(outcome, Rewrite) else body
        scanner = self._scanner(guard, turns)
        return await self._forward(path, forwarded, headers, header, scanner)

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

    async def _decide(self, guard: Guard | None, turns: list[str]) -> Decision | None:
        """The guard's decision; ``None`` when the guard failed and fail-open is on."""
        if guard is None:
            return Decision.allow()
        try:
            decision = await guard.acheck(turns)
        except Exception as exc:  # the fail-open/closed policy must cover every failure mode
            log.error(
                "guard check failed (%s); fail_open=%s", type(exc).__name__, self.settings.fail_open
            )
            if self.settings.fail_open:
                return None
            raise GuardUnavailable("the guard is unavailable; request not forwarded") from exc
        if decision.in_scope:
            log.info(
                "decision %s concept=%s score=%.3f",
                decision.action,
                decision.concept_id,
                decision.score,
            )
        return decision

    async def _withhold(
        self,
        guard: Guard | None,
        body: dict[str, Any],
        turns: list[str],
        last: int | None,
        decision: Decision | None,
    ) -> tuple[Rewrite, Partial] | None:
        """The body without a mixed prompt's in-scope sentences, or ``None``: whole policy."""
        if (
            self.settings.mixed_prompts == "whole_policy"
            or guard is None
            or decision is None
            or not decision.in_scope
            or last is None
        ):
            return None
        try:
            partial = await guard.aisolate(turns, last, decision)
        except Exception as exc:  # the whole policy is the stricter outcome, whatever went wrong
            log.error("mixed-prompt split failed (%s); whole policy applies", type(exc).__name__)
            return None
        rewrite = None if partial is None else guard.withhold(body, partial)
        if partial is None or rewrite is None:
            return None
        log.info(
            "mixed prompt: %d of %d parts withheld, concept=%s",
            len(partial.withheld),
            len(partial.parts),
            decision.concept_id,
        )
        return rewrite, partial

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

    def _scanner(self, guard: Guard | None, turns: list[str]) -> LeakScanner | None:
        if guard is None or not self.settings.output_guard:
            return None
        scanner = guard.leak_scanner(turns)
        return scanner if scanner.active else None

    async def _forward(
        self,
        path: str,
        body: dict[str, Any],
        headers: dict[str, str],
        header: str,
        scanner: LeakScanner | None,
    ) -> Response:
        response = await self.upstream.send("POST", path, json=body, headers=headers)
        out_headers = {**relay_headers(response), **self._decision_headers(header)}
        is_stream = response.headers.get("content-type", "").startswith("text/event-stream")
        if body.get("stream") and response.status_code == 200 and is_stream:
            chunks = relay_stream(response)
            return StreamingResponse(
                chunks if scanner is None else filter_stream(chunks, scanner),
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
            content, leaked = filter_body(content, scanner)
            if leaked is not None:
                log.info("output guard: answer withheld, concept=%s", leaked.id)
                if self.settings.decision_header:
                    out_headers[OUTPUT_HEADER] = f"withheld; concept={leaked.id}"
        return Response(content, response.status_code, out_headers)


def _outcome(
    guard: Guard | None, body: dict[str, Any], decision: Decision | None
) -> Outcome | None:
    if decision is None or not decision.in_scope or guard is None:
        return None
    return guard.intervene(body, decision)
