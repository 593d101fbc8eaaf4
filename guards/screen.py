"""One request in, everything the proxy needs out: :func:`screen` and its :class:`Screening`.

This is the product path, the only one. The proxy parses a body and calls :meth:`Guard.ascreen`;
the evaluator's studies call :meth:`Guard.screen` on the same bodies. Screening:

1. reads every text the model would read (:func:`guards.chat.request_texts`: guarded, or a 400
   for what the guard cannot read), within the request's limits (:class:`ScreenPolicy`);
2. decides with the detector, charging a :class:`~guards.budget.WorkBudget`;
3. splits the last user message into its in-scope and other parts (:mod:`guards.mixed`): when
   the concept is only mentioned in passing (the in-scope parts state, the rest asks and
   refers back to nothing), the mention is cut out silently and the request answered as
   allowed; for a mixed prompt, the in-scope parts are withheld (the model told so) and the
   rest forwarded; any failure there falls back to the whole policy, the stricter outcome;
4. otherwise applies the concept's policy (:mod:`guards.interventions`): a refusal text, or a
   rewritten body;
5. arms the output guard for every concept the forwarded conversation did not name.

Client-written assistant, tool and function turns, and every other text field, are checked as
context (each on its own, never joined with a question; see :class:`guards.detector.Detector`),
with this guard's own answers (refusal texts, the in-context "I don't know" answer) cut out of
them first, so a conversation that was refused once is not refused forever after.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from guards.budget import WorkBudget, spending
from guards.chat import Endpoint, MediaPolicy, RequestTexts, request_texts
from guards.decision import Decision
from guards.errors import GuardDeadlineExceeded, NescioError, RequestRejected
from guards.interventions import Refusal
from guards.mixed import Partial, isolate
from guards.output_guard import LeakScanner

if TYPE_CHECKING:
    from guards.guard import Guard

MixedPrompts = Literal["answer_allowed", "whole_policy"]
UNLIMITED = 10**9


@dataclass(frozen=True, slots=True)
class ScreenPolicy:
    """How a request is screened: what is read, how much, for how long, and what is armed.

    ``max_segments`` caps the texts the encoder is asked for (every turn, pair of turns and
    sentence counts) for the decision, and again for a mixed-prompt split; ``deadline`` is in
    seconds from the call. Defaults are unlimited, for library and evaluation use; the proxy
    passes its settings.
    """

    media: MediaPolicy = "reject"
    mixed_prompts: MixedPrompts = "answer_allowed"
    output_guard: bool = True
    max_chars: int = UNLIMITED
    max_turns: int = UNLIMITED
    max_segments: int = UNLIMITED
    deadline: float | None = None


UNLIMITED_POLICY = ScreenPolicy()


@dataclass(frozen=True, slots=True)
class Screening:
    """What to do with one request.

    Exactly one of ``body`` (forward it upstream, maybe rewritten) and ``refusal`` (answer with
    this text, the model is not called) is set. ``header`` is the ``X-Nescio-Decision`` value;
    ``scanner`` watches the answer for concepts the conversation never named (``None``: nothing
    to watch, or the output guard is off); ``partial`` is the split of a mixed prompt whose
    in-scope parts were withheld from ``body``. ``decision`` is ``None`` only for
    :meth:`unguarded`.
    """

    decision: Decision | None
    header: str
    body: Mapping[str, Any] | None
    refusal: str | None = None
    scanner: LeakScanner | None = None
    partial: Partial | None = None

    @classmethod
    def unguarded(cls, body: Mapping[str, Any], header: str) -> Screening:
        """Forward ``body`` as it is, unchecked (no concept list, or the guard failed open)."""
        return cls(None, header, body)


def screen(
    guard: Guard,
    body: Mapping[str, Any],
    endpoint: Endpoint,
    policy: ScreenPolicy,
    deadline: float | None = None,
) -> Screening:
    """Screen one request body (see the module docstring). Blocking.

    ``deadline`` is a ``time.monotonic()`` instant (default: ``policy.deadline`` from now).
    Raises :class:`RequestRejected` for what the client must change (400) and
    :class:`GuardDeadlineExceeded` or another error when the guard itself failed.
    """
    if deadline is None and policy.deadline is not None:
        deadline = time.monotonic() + policy.deadline
    texts = request_texts(body, endpoint, policy.media)
    _within_limits(texts, policy, endpoint)
    turns, context = list(texts.questions), _without_own_answers(guard, texts)
    with spending(_budget(policy, deadline)):
        decision = guard.detector.check(turns, context)
    everything = [*turns, *context]
    if not decision.in_scope:
        scanner = _scanner(guard, everything, policy, decision.named)
        return Screening(decision, decision.header_value(), body, None, scanner)
    partial = _isolate(guard, turns, context, texts.last_user, decision, policy, deadline)
    if partial is not None:
        sent = [*turns[: partial.turn], partial.kept, *turns[partial.turn + 1 :], *context]
        if partial.in_passing and (quiet := guard.withhold(body, partial, False)) is not None:
            allowed = Decision.allow(
                decision.score, decision.threshold, decision.concept_id, decision.latency_ms
            )
            header = f"allow; mentioned={decision.concept_id}"
            return Screening(allowed, header, quiet.body, None, _scanner(guard, sent, policy))
        if (
            policy.mixed_prompts == "answer_allowed"
            and (rewrite := guard.withhold(body, partial)) is not None
        ):
            scanner = _scanner(guard, sent, policy)
            return Screening(decision, partial.header_value(), rewrite.body, None, scanner, partial)
    outcome = guard.intervene(body, decision)
    if isinstance(outcome, Refusal):
        return Screening(decision, decision.header_value(), None, outcome.text)
    scanner = _scanner(guard, everything, policy, decision.named)
    return Screening(decision, decision.header_value(), outcome.body, None, scanner)


async def ascreen(
    guard: Guard, body: Mapping[str, Any], endpoint: Endpoint, policy: ScreenPolicy
) -> Screening:
    """:func:`screen` in a worker thread, answered by ``policy.deadline`` even when the worker
    threads are all busy (the late check then stops at its first encoder call)."""
    if policy.deadline is None:
        return await asyncio.to_thread(screen, guard, body, endpoint, policy)
    deadline = time.monotonic() + policy.deadline
    work = asyncio.to_thread(screen, guard, body, endpoint, policy, deadline)
    try:
        return await asyncio.wait_for(work, policy.deadline + 0.5)
    except TimeoutError as exc:
        raise GuardDeadlineExceeded("the guard did not finish within its deadline") from exc


def _within_limits(texts: RequestTexts, policy: ScreenPolicy, endpoint: Endpoint) -> None:
    field = "messages" if endpoint == "chat" else "prompt"
    if len(texts.turns) > policy.max_turns:
        raise RequestRejected(
            f"the guard checks at most {policy.max_turns} texts (messages, prompts, text fields) "
            f"per request; this one has {len(texts.turns)}",
            param=field,
            code="guard_limit_exceeded",
        )
    if texts.chars > policy.max_chars:
        raise RequestRejected(
            f"the guard checks at most {policy.max_chars} characters of text per request; this "
            f"one has {texts.chars}",
            param=field,
            code="guard_limit_exceeded",
        )


def _budget(policy: ScreenPolicy, deadline: float | None) -> WorkBudget:
    return WorkBudget(policy.max_segments, float("inf") if deadline is None else deadline)


def _without_own_answers(guard: Guard, texts: RequestTexts) -> list[str]:
    """The context texts, with this guard's own answers (refusals, "I don't know") cut out."""
    context = []
    for text in texts.context:
        for answer in guard.own_answers:
            text = text.replace(answer, " ")
        context.append(text)
    return context


def _isolate(
    guard: Guard,
    turns: list[str],
    context: list[str],
    last_user: int | None,
    decision: Decision,
    policy: ScreenPolicy,
    deadline: float | None,
) -> Partial | None:
    """The in-scope parts of the last user message (:func:`guards.mixed.isolate`), or ``None``:
    the whole policy applies (not a chat, no clean split, or the split failed: stricter)."""
    if last_user is None:
        return None
    try:
        with spending(_budget(policy, deadline)):
            return isolate(guard.detector, turns, last_user, decision, context)
    except NescioError:
        return None


def _scanner(
    guard: Guard, turns: list[str], policy: ScreenPolicy, named: tuple[bool, ...] = ()
) -> LeakScanner | None:
    """The output guard for ``turns``; ``named``: the decision's flags for these very turns,
    when it has them (else the turns are read for names here)."""
    if not policy.output_guard:
        return None
    scanner = guard.leak_scanner(turns, named or None)
    return scanner if scanner.active else None
