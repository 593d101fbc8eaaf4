"""Hostile inputs, each a case with the answer the proxy promises, checked against running servers.

The cases are the issue's: bodies too large or too deep to check (413/400 in OpenAI's error
shape, quickly), text past the guard's limits (400 ``guard_limit_exceeded``), broken JSON and
Unicode, wrong types (4xx, never 5xx), admin requests that name server files (400, nothing
read), a heavy check in flight while health probes and small requests keep being answered, an
upstream that fails mid-stream (the client's stream ends with an error event and ``[DONE]``), a
refused structured-output request (``message.refusal``), and SIGTERM with requests in flight (the
process ends within 30 s). Every request has a timeout, every wait a bound.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from evals.hostile.channels import (
    ALLOWED,
    DECISION_HEADER,
    MODEL,
    QUESTION,
    CaseResult,
    is_openai_error,
    short_decision,
)
from evals.hostile.servers import ServerProcess

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
QUICK_S = 5.0  # a rejection must come this fast, whatever the body
PROBE_LIMIT_S = 2.0  # health probes and a small chat while a heavy check runs
SHUTDOWN_LIMIT_S = 30.0
# 45,000 characters within every default limit and no sentence to split on; every 400-character
# piece distinct (the guard encodes each distinct text once, so repeated words would be cheap).
HEAVY_TEXT = " ".join(f"item{i:05d}" for i in range(4_500))


@dataclass
class Targets:
    """What the cases run against: the proxy in front of the echo upstream (with ``admin_key``),
    and, for the stream-fault and shutdown cases, a proxy in front of the faulty upstream (it is
    stopped by the last case)."""

    proxy_url: str
    admin_key: str
    guard_deadline: float = 10.0
    faulty: ServerProcess | None = None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class InputCase:
    name: str
    expected: str
    run: Callable[[Targets], CaseResult]


def _chat(content: Any, **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], **extra}


def _raw(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


def _send(
    base_url: str,
    method: str,
    path: str,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> tuple[httpx.Response | None, float, str]:
    """One request; the response (None on a transport error), seconds taken, the error's name."""
    began = time.monotonic()
    sent = {"content-type": "application/json", **(headers or {})}
    try:
        with httpx.Client(base_url=base_url, timeout=timeout, trust_env=False) as client:
            response = client.request(method, path, content=content, headers=sent)
    except httpx.HTTPError as exc:
        return None, time.monotonic() - began, f"no answer: {type(exc).__name__}"
    return response, time.monotonic() - began, ""


def _code(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"].get("code"))
    except (ValueError, KeyError, TypeError, AttributeError):
        return "?"


def request_case(
    name: str,
    content: bytes,
    *,
    status: int | None = None,
    code: str | None = None,
    path: str = CHAT,
    method: str = "POST",
    admin: bool = False,
    within: float = QUICK_S,
    forbidden_text: str | None = None,
) -> InputCase:
    """A request expected to be answered within ``within`` seconds with ``status`` (None: any
    4xx) in OpenAI's error shape, with error ``code`` when given, and without
    ``forbidden_text`` anywhere in the answer (e.g. the content of a server file)."""
    expected = f"{status or '4xx'}" + (f" {code}" if code else "") + f" <{within:.0f}s"

    def run(targets: Targets) -> CaseResult:
        headers = {"authorization": f"Bearer {targets.admin_key}"} if admin else {}
        response, seconds, error = _send(targets.proxy_url, method, path, content, headers)
        if response is None:
            return CaseResult("inputs", name, expected, None, "", seconds, False, error)
        got = response.status_code
        problems = []
        if (got != status) if status is not None else not 400 <= got < 500:
            problems.append(f"status {got}")
        if not is_openai_error(response):
            problems.append("not OpenAI error shape")
        elif code is not None and _code(response) != code:
            problems.append(f"code {_code(response)}")
        if seconds > within:
            problems.append(f"slow ({seconds:.1f}s)")
        if forbidden_text is not None and forbidden_text in response.text:
            problems.append(f"answer contains {forbidden_text!r}")
        detail = "; ".join(problems) if problems else f"code={_code(response)}"
        decision = short_decision(response.headers.get(DECISION_HEADER, ""))
        return CaseResult("inputs", name, expected, got, decision, seconds, not problems, detail)

    return InputCase(name, expected, run)


def health_case(name: str) -> InputCase:
    """The proxy still answers ``/health`` (after the cases before it)."""
    expected = f"200 <{PROBE_LIMIT_S:.0f}s"

    def run(targets: Targets) -> CaseResult:
        response, seconds, error = _send(targets.proxy_url, "GET", "/health", timeout=10.0)
        status = None if response is None else response.status_code
        passed = status == 200 and seconds <= PROBE_LIMIT_S
        return CaseResult("inputs", name, expected, status, "", seconds, passed, error)

    return InputCase(name, expected, run)


def _admin_concept(path: str) -> bytes:
    return _raw({"id": "leak-test", "name": "Leak Test", "forget_corpus": [path]})


def _in_background(
    base_url: str, content: bytes, timeout: float
) -> tuple[threading.Thread, list[Any]]:
    """Send a chat body from a thread; its (response, seconds, error) lands in the returned list."""
    outcome: list[Any] = []

    def send() -> None:
        outcome.append(_send(base_url, "POST", CHAT, content, timeout=timeout))

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread, outcome


def _heavy_in_flight(targets: Targets) -> CaseResult:
    """While a heavy check runs, ``/health``, ``/ready`` and a small chat are answered fast."""
    name = "health/ready/chat during a heavy check"
    expected = f"probes 200 <{PROBE_LIMIT_S:.0f}s"
    limit = targets.guard_deadline + 15.0
    began = time.monotonic()
    thread, outcome = _in_background(targets.proxy_url, _raw(_chat(HEAVY_TEXT)), limit)
    time.sleep(0.5)
    worst: dict[str, float] = {}
    failures: list[str] = []
    overlapped = 0
    small = _raw(_chat(ALLOWED, max_tokens=8))
    probes = (
        ("health", "GET", "/health", None),
        ("ready", "GET", "/ready", None),
        ("chat", "POST", CHAT, small),
    )
    while thread.is_alive() and time.monotonic() - began < limit:
        for label, method, path, content in probes:
            response, seconds, error = _send(targets.proxy_url, method, path, content, timeout=10)
            worst[label] = max(worst.get(label, 0.0), seconds)
            if response is None:
                failures.append(f"{label} {error}")
            elif response.status_code != 200:
                failures.append(f"{label} {response.status_code}")
            elif thread.is_alive():
                overlapped += 1
        time.sleep(0.2)
    thread.join(timeout=max(0.0, limit - (time.monotonic() - began)))
    heavy = outcome[0] if outcome else (None, time.monotonic() - began, "still running")
    response, seconds, error = heavy
    status = None if response is None else response.status_code
    slow = [f"{k} {v:.2f}s" for k, v in worst.items() if v > PROBE_LIMIT_S]
    passed = not failures and not slow and overlapped > 0 and status is not None
    latencies = ", ".join(f"{k} max {v:.2f}s" for k, v in worst.items())
    detail = (
        f"heavy: {status or error} in {seconds:.1f}s; {overlapped} probes overlapped; {latencies}"
    )
    if failures:
        detail += f"; failed: {', '.join(failures[:3])}"
    if overlapped == 0:
        detail += "; the heavy check ended before any probe (not heavy here)"
    return CaseResult("inputs", name, expected, status, "", seconds, passed, detail)


def _read_stream(
    base_url: str, body: dict[str, Any], path: str = CHAT
) -> tuple[int | None, list[str], float, str]:
    """A streamed request's status and every ``data:`` payload, in order (bounded by a timeout)."""
    began = time.monotonic()
    events: list[str] = []
    try:
        with (
            httpx.Client(base_url=base_url, timeout=30.0, trust_env=False) as client,
            client.stream("POST", path, json=body) as response,
        ):
            for line in response.iter_lines():
                if line.startswith("data:"):
                    events.append(line.removeprefix("data:").strip())
            return response.status_code, events, time.monotonic() - began, ""
    except httpx.HTTPError as exc:
        return None, events, time.monotonic() - began, f"stream broke: {type(exc).__name__}"


def _is_error_event(data: str) -> bool:
    try:
        event = json.loads(data)
    except ValueError:
        return False
    return isinstance(event, dict) and isinstance(event.get("error"), dict)


def stream_fault_case(fault: str, path: str = CHAT) -> InputCase:
    """A stream from the faulty upstream (``model`` picks the fault): a fault must end the
    client's stream with an error event and ``[DONE]``; the control (``ok``) with ``[DONE]``
    and no error event."""
    endpoint = "chat" if path == CHAT else "completions"
    name = f"upstream stream {fault} ({endpoint})"
    control = fault == "ok"
    expected = "200 ... [DONE]" if control else "200 ... error event, [DONE]"

    def run(targets: Targets) -> CaseResult:
        if targets.faulty is None:
            return CaseResult("inputs", name, expected, None, "", 0.0, False, "no faulty proxy")
        body: dict[str, Any] = {"model": fault, "stream": True, "max_tokens": 16}
        body.update(_chat(ALLOWED) if path == CHAT else {"prompt": "The capital of France is"})
        body["model"] = fault
        status, events, seconds, error = _read_stream(targets.faulty.url, body, path)
        ends_done = bool(events) and events[-1] == "[DONE]"
        error_events = [e for e in events if _is_error_event(e)]
        if control:
            passed = status == 200 and ends_done and not error_events
        else:
            passed = (
                status == 200 and ends_done and len(events) >= 2 and _is_error_event(events[-2])
            )
        tail = " | ".join(e[:60] for e in events[-2:])
        detail = error or f"{len(events)} events, last: {tail}"
        return CaseResult("inputs", name, expected, status, "", seconds, passed, detail)

    return InputCase(name, expected, run)


def _upstream_drop_plain(targets: Targets) -> CaseResult:
    name = "upstream body cut (not streamed)"
    expected = "502 OpenAI error"
    if targets.faulty is None:
        return CaseResult("inputs", name, expected, None, "", 0.0, False, "no faulty proxy")
    body = _raw({**_chat(ALLOWED), "model": "drop"})
    response, seconds, error = _send(targets.faulty.url, "POST", CHAT, body, timeout=30.0)
    if response is None:
        return CaseResult("inputs", name, expected, None, "", seconds, False, error)
    passed = response.status_code == 502 and is_openai_error(response)
    detail = f"code={_code(response)}" if is_openai_error(response) else response.text[:80]
    return CaseResult("inputs", name, expected, response.status_code, "", seconds, passed, detail)


def structured_refusal_case(stream: bool) -> InputCase:
    """A refused request that asked for a JSON schema is refused in ``refusal``, content null."""
    name = "refused json_schema request" + (" (stream)" if stream else "")
    expected = "refusal set, content null"
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    body = _chat(
        QUESTION,
        stream=stream,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": schema},
        },
    )

    def run(targets: Targets) -> CaseResult:
        if stream:
            status, events, seconds, error = _read_stream(targets.proxy_url, body)
            deltas = [
                json.loads(e)["choices"][0].get("delta", {})
                for e in events
                if e != "[DONE]" and not _is_error_event(e) and json.loads(e).get("choices")
            ]
            refusal = "".join(d.get("refusal") or "" for d in deltas)
            content = "".join(d.get("content") or "" for d in deltas)
            passed = status == 200 and bool(refusal) and not content
            detail = error or f"refusal={refusal[:40]!r} content={content[:40]!r}"
            return CaseResult("inputs", name, expected, status, "", seconds, passed, detail)
        response, seconds, error = _send(targets.proxy_url, "POST", CHAT, _raw(body))
        if response is None:
            return CaseResult("inputs", name, expected, None, "", seconds, False, error)
        try:
            message = response.json()["choices"][0]["message"]
        except (ValueError, KeyError, IndexError, TypeError):
            message = {}
        decision = response.headers.get(DECISION_HEADER, "")
        passed = (
            response.status_code == 200
            and decision.startswith("refuse")
            and bool(message.get("refusal"))
            and message.get("content") is None
        )
        detail = f"refusal={message.get('refusal')!r:.50} content={message.get('content')!r:.40}"
        return CaseResult(
            "inputs",
            name,
            expected,
            response.status_code,
            short_decision(decision),
            seconds,
            passed,
            detail,
        )

    return InputCase(name, expected, run)


def _sigterm_in_flight(targets: Targets) -> CaseResult:
    """SIGTERM while a heavy check and a stalled upstream stream are in flight: the process ends
    within 30 s without SIGKILL. Stops the faulty-upstream proxy (run it last)."""
    name = "SIGTERM with requests in flight"
    expected = f"exits <{SHUTDOWN_LIMIT_S:.0f}s"
    server = targets.faulty
    if server is None or not server.running:
        return CaseResult("inputs", name, expected, None, "", 0.0, False, "no faulty proxy")
    heavy, _ = _in_background(server.url, _raw(_chat(HEAVY_TEXT)), SHUTDOWN_LIMIT_S + 15)
    stalled = threading.Thread(
        target=_read_stream,
        args=(server.url, {**_chat(ALLOWED), "model": "stall", "stream": True}),
        daemon=True,
    )
    stalled.start()
    time.sleep(1.0)
    ended = server.terminate(timeout=SHUTDOWN_LIMIT_S + 10)
    heavy.join(timeout=5.0)
    stalled.join(timeout=5.0)
    passed = not ended.killed and ended.seconds <= SHUTDOWN_LIMIT_S
    how = "SIGKILL needed" if ended.killed else f"exit code {ended.returncode}"
    return CaseResult("inputs", name, expected, None, "", ended.seconds, passed, how)


def _deep(depth: int) -> bytes:
    return (
        b'{"model":"echo","messages":[{"role":"user","content":"hi"}],"x":'
        + b"[" * depth
        + b"]" * depth
        + b"}"
    )


MESSAGE = b'{"model":"echo","messages":[{"role":"user","content":"%s"}]%s}'

CASES: tuple[InputCase, ...] = (
    request_case("5 MB user message", _raw(_chat("a " * 2_500_000)), status=413,
                 code="request_too_large"),
    health_case("health after the 5 MB message"),
    request_case("3 MB text under the body cap", _raw(_chat("lorem ipsum " * 250_000)),
                 status=400, code="guard_limit_exceeded"),
    request_case("20,000 short turns", _raw({"model": MODEL, "messages": [
        {"role": "user", "content": "Hi."}] * 20_000}), status=400, code="guard_limit_exceeded"),
    request_case("JSON nested 100,000 deep", _deep(100_000), status=400, code="json_too_deep"),
    request_case("JSON nested 100,000 deep (completions)", _deep(100_000).replace(
        b'"messages":[{"role":"user","content":"hi"}]', b'"prompt":"hi"'), path=COMPLETIONS,
        status=400, code="json_too_deep"),
    request_case("lone surrogate in a message", MESSAGE % (b"hi \\ud800 there", b""),
                 status=400, code="invalid_unicode"),
    request_case("lone surrogate in `user`", MESSAGE % (ALLOWED.encode(), b',"user":"\\udfff"'),
                 status=400, code="invalid_unicode"),
    request_case("lone surrogate in a prompt", b'{"model":"echo","prompt":"\\udc00"}',
                 path=COMPLETIONS, status=400, code="invalid_unicode"),
    request_case("bytes that are not UTF-8", MESSAGE % (b"caf\xe9 \xff\xfe", b""), status=400),
    request_case("malformed JSON", b'{"model":"echo","messages":[{"role":', status=400),
    request_case("NaN in a number field", MESSAGE % (b"hi", b',"temperature":NaN'), status=400),
    request_case("empty body", b"", status=400),
    request_case("body is a JSON array", b"[1, 2, 3]", status=400),
    request_case("body is a JSON string", b'"Who is the headmaster of Hogwarts?"', status=400),
    request_case("messages as a string", _raw({"model": MODEL, "messages": QUESTION})),
    request_case("messages empty", _raw({"model": MODEL, "messages": []})),
    request_case("message without role", _raw({"model": MODEL, "messages": [{"content": "hi"}]})),
    request_case("n = -1", _raw(_chat(ALLOWED, n=-1))),
    request_case("stream = \"yes\"", _raw(_chat(ALLOWED, stream="yes"))),
    request_case("stream_options a string", _raw(_chat(ALLOWED, stream=True, stream_options="x"))),
    request_case("prompt missing", _raw({"model": MODEL}), path=COMPLETIONS),
    request_case("prompt an object", _raw({"model": MODEL, "prompt": {"q": QUESTION}}),
                 path=COMPLETIONS),
    request_case("admin forget_corpus /etc/passwd", _admin_concept("/etc/passwd"),
                 path="/admin/concepts", admin=True, status=400, forbidden_text="root:"),
    request_case("admin forget_corpus ../../../../etc/hostname",
                 _admin_concept("../../../../etc/hostname"), path="/admin/concepts", admin=True,
                 status=400),
    request_case("admin PUT with forget_corpus /etc/passwd", _raw({"version": 1, "concepts": [
        {"id": "leak-test", "name": "Leak Test", "forget_corpus": ["/etc/passwd"]}]}),
        path="/admin/concepts", method="PUT", admin=True, status=400, forbidden_text="root:"),
    request_case("admin without a key", _raw({"id": "x", "name": "X"}), path="/admin/concepts",
                 status=401),
    health_case("health after the hostile bodies"),
    structured_refusal_case(stream=False),
    structured_refusal_case(stream=True),
    InputCase("health/ready/chat during a heavy check", "probes 200", _heavy_in_flight),
    stream_fault_case("ok"),
    stream_fault_case("drop"),
    stream_fault_case("malformed"),
    stream_fault_case("no-done"),
    stream_fault_case("drop", COMPLETIONS),
    InputCase("upstream body cut (not streamed)", "502 OpenAI error", _upstream_drop_plain),
    InputCase("SIGTERM with requests in flight", "exits <30s", _sigterm_in_flight),
)  # fmt: skip


def run_inputs(targets: Targets, cases: tuple[InputCase, ...] = CASES) -> list[CaseResult]:
    """Run the cases in order (the SIGTERM case, last, stops the faulty-upstream proxy)."""
    return [case.run(targets) for case in cases]
