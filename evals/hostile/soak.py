"""The soak: many concurrent clients against a real ``nescio serve`` in front of the echo upstream,
with the upstream restarted once half way, watching for errors and for memory that keeps growing.

Every request is judged (status, decision header, whether the answer came from the upstream,
whether a stream ended with ``[DONE]``) and every failure is classified against the restart
window, which runs from the moment the upstream is stopped until one second after it is ready
again: a 502/504 (or a stream ending in an error event) in flight during that window is expected;
anything else is not. The proxy's RSS is sampled after a warm-up, periodically and at the end.

Entry point: ``benchmarks/soak.py`` (its ``--help`` explains the options).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import psutil  # type: ignore[import-untyped]  # no stubs; pyproject lists none

from evals.hostile.servers import EchoUpstream, ProxyServer, ServerError, Termination

DECISION_HEADER = "x-nescio-decision"
UPSTREAM_FAILURES = (502, 504)
WINDOW_TAIL_S = 1.0
REQUEST_TIMEOUT_S = 60.0
EXAMPLES_KEPT = 1000

Class = Literal["served", "expected", "unexpected"]


@dataclass(frozen=True)
class Probe:
    """One request of the mix. ``marker`` is text of the prompt: the echo upstream repeats it, so
    its presence in the answer shows the upstream answered (required when allowed, forbidden
    when refused)."""

    kind: str
    path: str
    body: dict[str, Any]
    refused: bool
    marker: str

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))


def _chat(question: str, stream: bool) -> dict[str, Any]:
    return {
        "model": "echo",
        "messages": [{"role": "user", "content": question}],
        "max_tokens": 16,
        "stream": stream,
    }


ALLOWED = "What is the capital of France?"
REFUSED = "Who is the headmaster of Hogwarts?"  # examples/concepts.yaml refuses Harry Potter
COMPLETION = "The capital of France is"
MIX: tuple[Probe, ...] = (
    Probe("chat", "/v1/chat/completions", _chat(ALLOWED, False), False, ALLOWED),
    Probe("chat_stream", "/v1/chat/completions", _chat(ALLOWED, True), False, ALLOWED),
    Probe("refused", "/v1/chat/completions", _chat(REFUSED, False), True, REFUSED),
    Probe("refused_stream", "/v1/chat/completions", _chat(REFUSED, True), True, REFUSED),
    Probe(
        "completion",
        "/v1/completions",
        {"model": "echo", "prompt": COMPLETION, "max_tokens": 16},
        False,
        COMPLETION,
    ),
)


@dataclass(frozen=True)
class Outcome:
    """One request: seconds since the measured phase began (negative during warm-up), the HTTP
    status (None when no answer came), and ``problem`` (None when it was served as expected)."""

    kind: str
    started: float
    ended: float
    status: int | None
    problem: str | None
    error_event: bool = False


@dataclass(frozen=True)
class Window:
    """Seconds (same clock as ``Outcome``) during which upstream failures are expected."""

    start: float
    end: float


def judge(
    probe: Probe, status: int, header: str, text: str, done: bool, error_event: bool
) -> str | None:
    """What is wrong with an answer to ``probe``, or None when it is what the proxy promises."""
    if status != 200:
        return f"HTTP {status}"
    if error_event:
        return "stream ended in an error event"
    if probe.stream and not done:
        return "stream ended without [DONE]"
    answered_upstream = probe.marker in text
    if probe.refused and answered_upstream:
        return "refused request answered by the upstream"
    if probe.refused and not header.startswith("refuse"):
        return f"decision {header!r}, expected refuse"
    if not probe.refused and header.startswith("refuse"):
        return f"allowed request refused ({header!r})"
    if not probe.refused and not answered_upstream:
        return "answer does not echo the prompt"
    return None


def classify(outcome: Outcome, windows: Sequence[Window]) -> Class:
    """Served; expected (a 502/504 or a stream error event, the request in flight at some moment
    of a restart window); or unexpected (every other failure)."""
    if outcome.problem is None:
        return "served"
    upstream_failure = outcome.status in UPSTREAM_FAILURES or outcome.error_event
    in_window = any(w.start <= outcome.ended and outcome.started <= w.end for w in windows)
    return "expected" if upstream_failure and in_window else "unexpected"


def answered_as_upstream_failure(outcome: Outcome) -> bool:
    """Whether a failed request was told the upstream failed (502/504 or a stream error event)."""
    return outcome.status in UPSTREAM_FAILURES or outcome.error_event


def rss_change(start: int, end: int) -> float:
    """Relative change of RSS from ``start`` to ``end`` (0.05 is +5%)."""
    return (end - start) / start


def rss_flat(start: int, end: int, tolerance: float = 0.10) -> bool:
    """The memory target: the end RSS within ``tolerance`` of the start, either way."""
    return abs(rss_change(start, end)) <= tolerance


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


async def _read_stream(response: httpx.Response) -> tuple[str, bool, bool]:
    """The streamed text, whether ``[DONE]`` arrived, and whether an error event arrived."""
    parts: list[str] = []
    done = error_event = False
    async for line in response.aiter_lines():
        if not line.startswith("data: ") or done:
            continue
        data = line.removeprefix("data: ").strip()
        if data == "[DONE]":
            done = True
            continue
        chunk = json.loads(data)
        if "error" in chunk:
            error_event = True
            continue
        for choice in chunk.get("choices") or []:
            parts.append((choice.get("delta") or {}).get("content") or choice.get("text") or "")
    return "".join(parts), done, error_event


def _text(body: bytes) -> str:
    choice = json.loads(body)["choices"][0]
    text: str = (choice.get("message") or {}).get("content") or choice.get("text") or ""
    return text


async def send(client: httpx.AsyncClient, probe: Probe, clock: Callable[[], float]) -> Outcome:
    """Send one probe and judge its answer; never raises for a failed request."""
    started = clock()
    status: int | None = None
    error_event = False
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT_S):
            async with client.stream("POST", probe.path, json=probe.body) as response:
                status = response.status_code
                header = response.headers.get(DECISION_HEADER, "")
                if probe.stream and status == 200:
                    text, done, error_event = await _read_stream(response)
                else:
                    body = await response.aread()
                    text, done = (_text(body) if status == 200 else ""), False
        problem = judge(probe, status, header, text, done, error_event)
    except (httpx.HTTPError, TimeoutError, ValueError, LookupError) as exc:
        problem = f"{type(exc).__name__}: {exc}"[:200]
    return Outcome(probe.kind, started, clock(), status, problem, error_event)


@dataclass(frozen=True)
class SoakConfig:
    """What to run; see ``benchmarks/soak.py --help`` for each field's meaning."""

    concepts: Path
    duration: float = 600.0
    clients: int = 64
    warmup: int = 500
    restart_pause: float = 2.0
    sample_interval: float = 10.0
    rss_tolerance: float = 0.10
    shutdown_timeout: float = 30.0
    log_dir: Path | None = None


@dataclass
class SoakRun:
    """Everything measured, in raw form; ``summarize`` turns it into verdicts."""

    config: SoakConfig
    outcomes: list[Outcome] = field(default_factory=list)
    warmup_outcomes: list[Outcome] = field(default_factory=list)
    windows: list[Window] = field(default_factory=list)
    rss: list[tuple[float, int]] = field(default_factory=list)
    elapsed: float = 0.0
    aborted: str | None = None
    termination: Termination | None = None
    logs: dict[str, str] = field(default_factory=dict)


def run_soak(config: SoakConfig) -> SoakRun:
    """Start the echo upstream and the proxy, drive the load, stop both (also on Ctrl-C)."""
    log_dir = config.log_dir or Path(tempfile.mkdtemp(prefix="nescio-soak-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    run = SoakRun(config)
    with (
        EchoUpstream(log_path=log_dir / "upstream.log") as upstream,
        ProxyServer(config.concepts, upstream.url, log_path=log_dir / "proxy.log") as proxy,
    ):
        run.logs = {"upstream": str(upstream.log_path), "proxy": str(proxy.log_path)}
        asyncio.run(_drive(run, upstream, proxy))
        run.termination = proxy.terminate(config.shutdown_timeout)
    return run


async def _drive(run: SoakRun, upstream: EchoUpstream, proxy: ProxyServer) -> None:
    config = run.config
    limits = httpx.Limits(max_connections=config.clients, max_keepalive_connections=config.clients)
    process = psutil.Process(proxy.pid)
    async with httpx.AsyncClient(
        base_url=proxy.url, limits=limits, timeout=30.0, trust_env=False
    ) as client:
        tickets = iter(range(config.warmup))
        warm_origin = time.monotonic()
        await asyncio.gather(
            *(
                _client(
                    client,
                    i,
                    lambda: next(tickets, None) is not None,
                    lambda: time.monotonic() - warm_origin,
                    run.warmup_outcomes,
                )
                for i in range(config.clients)
            )
        )
        origin = time.monotonic()
        deadline = origin + config.duration
        stop = asyncio.Event()

        def clock() -> float:
            return time.monotonic() - origin

        run.rss.append((0.0, process.memory_info().rss))
        watchers = [
            asyncio.create_task(_restart(run, upstream, clock, stop)),
            asyncio.create_task(_sample(run, process, clock, stop)),
        ]
        try:
            await asyncio.gather(
                *(
                    _client(
                        client,
                        i,
                        lambda: not stop.is_set() and time.monotonic() < deadline,
                        clock,
                        run.outcomes,
                    )
                    for i in range(config.clients)
                )
            )
        finally:
            stop.set()
            await asyncio.gather(*watchers)
        run.elapsed = clock()
        with contextlib.suppress(psutil.Error):  # gone: _sample already recorded the abort
            run.rss.append((run.elapsed, process.memory_info().rss))


async def _client(
    client: httpx.AsyncClient,
    index: int,
    going: Callable[[], bool],
    clock: Callable[[], float],
    sink: list[Outcome],
) -> None:
    """Send the mix in turn (each client starting at a different kind) while ``going()``."""
    turn = index
    while going():
        sink.append(await send(client, MIX[turn % len(MIX)], clock))
        turn += 1


async def _pause(stop: asyncio.Event, seconds: float) -> bool:
    """Wait ``seconds``; False when ``stop`` was set first."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return True
    return False


async def _restart(
    run: SoakRun, upstream: EchoUpstream, clock: Callable[[], float], stop: asyncio.Event
) -> None:
    """Half way through: stop the upstream, pause, start it again at the same address."""
    if not await _pause(stop, run.config.duration / 2):
        return
    began = clock()
    await asyncio.to_thread(upstream.stop)
    await asyncio.sleep(run.config.restart_pause)
    try:
        await asyncio.to_thread(upstream.start)
    except ServerError as exc:
        run.aborted = f"the upstream did not come back: {exc}"
        run.windows.append(Window(began, float("inf")))
        stop.set()
        return
    run.windows.append(Window(began, clock() + WINDOW_TAIL_S))


async def _sample(
    run: SoakRun, process: psutil.Process, clock: Callable[[], float], stop: asyncio.Event
) -> None:
    """Sample the proxy's RSS every ``sample_interval`` until ``stop``; stop the soak if the proxy
    is gone (clients would only collect connection errors)."""
    while await _pause(stop, run.config.sample_interval):
        try:
            run.rss.append((clock(), process.memory_info().rss))
        except psutil.Error:
            run.aborted = f"the proxy exited at {clock():.1f} s"
            stop.set()


@dataclass(frozen=True)
class Target:
    name: str
    met: bool
    detail: str


def summarize(run: SoakRun) -> dict[str, Any]:
    """Counts, rates and latencies per kind, RSS, and the verdict of each target (JSON-ready)."""
    classes = [classify(o, run.windows) for o in run.outcomes]
    warm_failed = [o for o in run.warmup_outcomes if o.problem is not None]
    unexpected = [o for o, c in zip(run.outcomes, classes, strict=True) if c == "unexpected"]
    unexpected += warm_failed
    failed = [o for o in [*run.outcomes, *run.warmup_outcomes] if o.problem is not None]
    elapsed = run.elapsed or 1e-9
    kinds: dict[str, dict[str, Any]] = {}
    for probe in MIX:
        mine = [(o, c) for o, c in zip(run.outcomes, classes, strict=True) if o.kind == probe.kind]
        served_ms = [(o.ended - o.started) * 1000 for o, c in mine if c == "served"]
        kinds[probe.kind] = {
            "served": len(served_ms),
            "per_s": len(served_ms) / elapsed,
            "p50_ms": percentile(served_ms, 50) if served_ms else None,
            "p99_ms": percentile(served_ms, 99) if served_ms else None,
            "expected": sum(c == "expected" for _, c in mine),
            "unexpected": sum(c == "unexpected" for _, c in mine),
        }
    served = sum(k["served"] for k in kinds.values())
    rss_start, rss_end = run.rss[0][1], run.rss[-1][1]
    change = rss_change(rss_start, rss_end)
    answered = sum(answered_as_upstream_failure(o) for o in failed)
    tolerance = run.config.rss_tolerance
    targets = [
        Target("ran to the end", run.aborted is None, run.aborted or "proxy and upstream alive"),
        Target("unexpected errors == 0", not unexpected, f"{len(unexpected)}"),
        Target(
            "every error answered 502/504 (or a stream error event)",
            answered == len(failed),
            f"{answered} of {len(failed)}",
        ),
        Target(
            f"RSS end within {tolerance:.0%} of start",
            rss_flat(rss_start, rss_end, tolerance),
            f"{change:+.1%}",
        ),
    ]
    return {
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(run.config).items()},
        "elapsed_s": run.elapsed,
        "served": served,
        "per_s": served / elapsed,
        "kinds": kinds,
        "warmup": {"sent": len(run.warmup_outcomes), "failed": len(warm_failed)},
        "windows": [asdict(w) for w in run.windows],
        "expected_errors": sum(c == "expected" for c in classes),
        "unexpected_errors": len(unexpected),
        "unexpected_examples": [asdict(o) for o in unexpected[:EXAMPLES_KEPT]],
        "rss": {
            "start": rss_start,
            "end": rss_end,
            "max": max(r for _, r in run.rss),
            "change": change,
            "samples": run.rss,
        },
        "shutdown": None if run.termination is None else asdict(run.termination),
        "targets": [asdict(t) for t in targets],
        "passed": all(t.met for t in targets),
        "logs": run.logs,
    }


def format_summary(summary: dict[str, Any], examples: int = 5) -> str:
    """The human-readable table printed at the end of a soak."""
    config, mib = summary["config"], 1024 * 1024
    lines = [
        f"soak: {config['clients']} clients for {summary['elapsed_s']:.0f} s "
        f"(+{summary['warmup']['sent']} warm-up requests, {summary['warmup']['failed']} failed)",
    ]
    for w in summary["windows"]:
        lines.append(f"upstream restart window: {w['start']:.1f} s .. {w['end']:.1f} s")
    lines.append(
        f"{'kind':<16}{'served':>9}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'expected':>10}{'unexpected':>12}"
    )
    for kind, k in summary["kinds"].items():
        p50 = "-" if k["p50_ms"] is None else f"{k['p50_ms']:.1f}"
        p99 = "-" if k["p99_ms"] is None else f"{k['p99_ms']:.1f}"
        lines.append(
            f"{kind:<16}{k['served']:>9}{k['per_s']:>8.1f}{p50:>9}{p99:>9}"
            f"{k['expected']:>10}{k['unexpected']:>12}"
        )
    lines.append(
        f"{'total':<16}{summary['served']:>9}{summary['per_s']:>8.1f}{'':>18}"
        f"{summary['expected_errors']:>10}{summary['unexpected_errors']:>12}"
    )
    rss = summary["rss"]
    lines.append(
        f"proxy RSS: start {rss['start'] / mib:.1f} MiB, end {rss['end'] / mib:.1f} MiB, "
        f"max {rss['max'] / mib:.1f} MiB ({rss['change']:+.1%}, {len(rss['samples'])} samples)"
    )
    if summary["shutdown"] is not None:
        shutdown = summary["shutdown"]
        how = "SIGKILL after the timeout" if shutdown["killed"] else "exited"
        lines.append(f"proxy after SIGTERM: {how} in {shutdown['seconds']:.2f} s")
    for example in summary["unexpected_examples"][:examples]:
        lines.append(
            f"  unexpected: {example['kind']} at {example['started']:.2f}..{example['ended']:.2f} s, "
            f"status {example['status']}: {example['problem']}"
        )
    lines.append("targets:")
    for t in summary["targets"]:
        lines.append(f"  [{'PASS' if t['met'] else 'FAIL'}] {t['name']}: {t['detail']}")
    lines.append(f"logs: {summary['logs']}")
    return "\n".join(lines)
