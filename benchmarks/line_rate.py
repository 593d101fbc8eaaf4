"""The proxy's line rate over real sockets: wrk against the echo upstream directly, through a pure
relay and through guarded proxies, at 1 / 16 / 64 connections, streamed and not; then time to
first token, start-up times and the issue's targets. Run::

    .venv/bin/python benchmarks/line_rate.py                     # the table, about 4 minutes
    .venv/bin/python benchmarks/line_rate.py --rwku              # plus 100 RWKU concepts
    .venv/bin/python benchmarks/line_rate.py --duration 1 --connections 1,4 --ttft-requests 20
    .venv/bin/python benchmarks/line_rate.py --relay-workers 2,3   # relay rows with 2 and 3 workers
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import httpx
import psutil  # type: ignore[import-untyped]  # no stubs; pyproject lists none

from evals.errors import EvalError
from evals.hostile.servers import EchoUpstream, ProxyServer, ServerError, ServerProcess
from evals.hostile.wrk import (
    CHAT_PATH,
    WrkError,
    WrkResult,
    chat_body,
    connections_header,
    format_cell,
    format_ms,
    lua_script,
    numbered_question,
    parse_output,
    render_table,
    result_table,
    wrk_command,
)
from guards.concepts import load_concepts

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "concepts.yaml"
DIRECT = "upstream directly"
RELAY = "proxy, no concept list (pure relay)"
WARMUP_REQUESTS = 10
SETTLE_TIMEOUT_S = 120.0
WRK_MISSING = (
    "line_rate: wrk is not installed; install it with: apt-get update && apt-get install -y wrk"
)

DESCRIPTION = """\
Line rate of the Nescio proxy, measured with wrk (one thread, --duration seconds per point,
--latency) over real sockets on 127.0.0.1. Starts the zero-latency echo upstream
(evals.hostile.echo_upstream) and, one at a time, each `nescio serve` below in front of it. Every
request is a short out-of-scope chat ("What is the capital of France? (17)": eight general
questions in turn, each numbered so no two bodies are equal and no cache can stand in for the
guard).

Rows:
  upstream directly           wrk against the echo upstream itself: the floor of this machine
  proxy, no concept list      `nescio serve` without --concepts: a pure relay (routing, JSON,
                              upstream client, access log), no guard
  ..., N workers              with --relay-workers N (default 2): the same relay with
                              `--workers N` (NESCIO_WORKERS), in the same run
  proxy, examples/...yaml     the guard on examples/concepts.yaml with the default detector
  ..., no micro-batching      with --compare-batching: the same, NESCIO_ENCODER_BATCHING=false
  proxy, N RWKU concepts      with --rwku: the guard on RWKU's people (built from --data-dir);
                              its first start is timed with the cache as found in --cache-dir
                              (cold when empty), then it is restarted (warm) and measured

Columns: one per --connections value; each cell is requests/s (p50 / p99 ms of whole-response
latency), then HTTP errors (status >= 400) and socket errors (incl. wrk timeouts) if any. One
table for plain requests, one for "stream": true (wrk times the whole stream). After each row the
server's RSS is read (psutil, summed over its worker processes). A third table gives the CPU time
each server (all its processes) spent per completed request during each wrk run: unlike
requests/s, it hardly moves when other work shares the cores, so it is the number to compare
between runs on a busy machine. Time to first token: --ttft-requests sequential streamed requests
(httpx), from sending to the first SSE data line, per server. Each server's seconds from start
to /ready are printed, then the targets from the issue, each met or missed.

Duration: with the defaults, about 4 minutes on a 2-core machine (3 servers x 6 wrk runs x 10 s,
plus starts, time to first token and a drain after each run); --rwku adds about 1.5 minutes plus
its two start-ups: the first took 7 minutes with a cold cache on 2 cores (the issue's
measurement), less once --cache-dir holds its index.

The numbers are this machine's: wrk, the upstream and the proxy share its cores. Run nothing
else meanwhile; compare rows within one run, not runs across machines."""


class BenchError(RuntimeError):
    """A server answered in a way that makes the numbers meaningless (an error, or a refusal of
    a question meant to be out of scope)."""


@dataclass
class Measured:
    """Everything one run measured, keyed by row label; ``rows`` and ``rss_mb`` by streaming."""

    labels: list[str] = field(default_factory=list)
    rows: dict[bool, dict[str, dict[int, WrkResult]]] = field(
        default_factory=lambda: {False: {}, True: {}}
    )
    rss_mb: dict[bool, dict[str, float]] = field(default_factory=lambda: {False: {}, True: {}})
    cpu_ms: dict[bool, dict[str, dict[int, float]]] = field(
        default_factory=lambda: {False: {}, True: {}}
    )
    ttft_ms: dict[str, list[float]] = field(default_factory=dict)
    starts: list[str] = field(default_factory=list)
    cold_start_s: float | None = None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="exit codes: 0 printed, 1 a measurement failed, 2 wrk missing, a server did "
        "not start or the RWKU data is missing, 130 interrupted (Ctrl-C or SIGTERM)",
    )
    parser.add_argument(
        "--duration", type=_positive, default=10.0, help="seconds of load per point (default 10)"
    )
    parser.add_argument(
        "--connections",
        type=_counts,
        default=[1, 16, 64],
        help="comma-separated connection counts, one column each (default 1,16,64)",
    )
    parser.add_argument(
        "--ttft-requests",
        type=_positive_int,
        default=200,
        help="sequential streamed requests per server for time to first token (default 200)",
    )
    parser.add_argument(
        "--timeout",
        type=_positive,
        default=10.0,
        help="seconds after which wrk counts a request as a timeout (default 10)",
    )
    parser.add_argument("--rwku", action="store_true", help="add the RWKU row (slow cold start)")
    parser.add_argument(
        "--relay-workers",
        type=_counts,
        default=[2],
        help="comma-separated worker counts for extra pure-relay rows, one row each (default 2; "
        "1 adds none: the relay row itself runs one worker)",
    )
    parser.add_argument(
        "--compare-batching",
        action="store_true",
        help="add the example-list row with NESCIO_ENCODER_BATCHING=false (micro-batching off), "
        "to see what merging concurrent encoder calls buys in the same run",
    )
    parser.add_argument(
        "--rwku-targets", default="1-100", help="RWKU targets for --rwku (default 1-100)"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=REPO.parent / "shared" / "data",
        help="RWKU data folder (default ../shared/data)",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=REPO / "runs" / "line-rate-cache",
        help="NESCIO_CACHE_DIR of the guarded proxies, kept between runs "
        "(default runs/line-rate-cache)",
    )
    parser.add_argument(
        "--startup-timeout",
        type=float,
        default=900.0,
        help="seconds a proxy may take to /ready (default 900)",
    )
    return parser


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text!r}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1: {text!r}")
    return value


def _counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from exc
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"connection counts must be >= 1: {text!r}")
    return sorted(set(counts))


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0-100) of a non-empty sample."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def _check_answer(response: httpx.Response, what: str) -> None:
    decision = response.headers.get("x-nescio-decision", "allow")
    if response.status_code != 200 or not decision.startswith("allow"):
        raise BenchError(f"{what}: status {response.status_code}, decision {decision!r}")


async def first_token_ms(url: str, count: int, read_timeout: float) -> list[float]:
    """Milliseconds from sending each of ``count`` sequential streamed chats to reading the
    first SSE ``data:`` line, after :data:`WARMUP_REQUESTS` uncounted ones; every stream is read
    to its end, so the connection is reused; each read waits at most ``read_timeout`` seconds.
    Raises :class:`BenchError` on a non-200 answer, a
    refusal, or a stream without data."""
    times: list[float] = []
    async with httpx.AsyncClient(base_url=url, timeout=read_timeout, trust_env=False) as client:
        for n in range(1, WARMUP_REQUESTS + count + 1):
            body = chat_body(numbered_question(n), stream=True)
            began = time.perf_counter()
            first: float | None = None
            async with client.stream("POST", CHAT_PATH, json=body) as response:
                async for line in response.aiter_lines():
                    if first is None and line.startswith("data:"):
                        first = time.perf_counter() - began
            _check_answer(response, f"{url} streamed request {n}")
            if first is None:
                raise BenchError(f"{url}: streamed request {n} carried no data event")
            if n > WARMUP_REQUESTS:
                times.append(1e3 * first)
    return times


def settle(url: str) -> None:
    """Wait (bounded) for one chat to pass, so requests a finished wrk run left queued in the
    server are done before the next point starts."""
    body = chat_body(numbered_question(0), stream=False)
    with httpx.Client(base_url=url, timeout=SETTLE_TIMEOUT_S, trust_env=False) as client:
        _check_answer(client.post(CHAT_PATH, json=body), f"{url} after a wrk run")


def run_wrk(script: Path, url: str, connections: int, args: argparse.Namespace) -> WrkResult:
    command = wrk_command(
        script,
        url + CHAT_PATH,
        connections=connections,
        duration=args.duration,
        timeout=args.timeout,
    )
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=args.duration + args.timeout + 60
    )
    if done.returncode != 0:
        raise WrkError(f"wrk exited with {done.returncode}: {done.stderr.strip()}")
    return parse_output(done.stdout)


def measure(
    label: str,
    server: ServerProcess,
    scripts: dict[bool, Path],
    args: argparse.Namespace,
    out: Measured,
) -> None:
    """Time to first token, then every wrk point (plain, then streamed), for one server."""
    out.labels.append(label)
    _progress(f"{label}: time to first token, {args.ttft_requests} requests")
    out.ttft_ms[label] = asyncio.run(first_token_ms(server.url, args.ttft_requests, args.timeout))
    for stream in (False, True):
        cells = out.rows[stream].setdefault(label, {})
        cpu = out.cpu_ms[stream].setdefault(label, {})
        for connections in args.connections:
            before = tree_cpu_s(server.pid)
            cells[connections] = run_wrk(scripts[stream], server.url, connections, args)
            cpu[connections] = 1e3 * (tree_cpu_s(server.pid) - before) / cells[connections].requests
            kind = "streamed" if stream else "plain"
            _progress(f"{label}, {kind}, {connections} conn: {format_cell(cells[connections])}")
            settle(server.url)
        out.rss_mb[stream][label] = sum(p.memory_info().rss for p in tree(server.pid)) / 2**20


def tree(pid: int) -> list[psutil.Process]:
    """A server's process and its children (the workers of `nescio serve --workers N`)."""
    process = psutil.Process(pid)
    return [process, *process.children(recursive=True)]


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by a server's processes still running."""
    total = 0.0
    for process in tree(pid):
        with contextlib.suppress(psutil.Error):  # a process that just ended
            times = process.cpu_times()
            total += times.user + times.system
    return total


@contextlib.contextmanager
def running(server: ServerProcess, label: str, out: Measured) -> Iterator[ServerProcess]:
    """Start ``server`` (recording its seconds to ready), and stop it however the block ends."""
    _progress(f"{label}: starting")
    out.starts.append(f"{label}: {server.start():.1f} s to ready")
    try:
        yield server
    finally:
        server.stop()


def rwku_concepts(args: argparse.Namespace) -> tuple[Path, int, Path]:
    """The RWKU concept list (YAML and corpora written under --cache-dir, the same bytes each
    run, so its index cache stays valid), its size, and the index cache folder for it."""
    from evals.concept_sources import write_concepts
    from evals.concept_sources.base import slug
    from evals.concept_sources.rwku import build
    from evals.loaders import parse_targets
    from evals.presets import CORPUS_DIR

    folder = args.cache_dir / f"rwku-{slug(args.rwku_targets)}"
    built = build(args.data_dir, parse_targets(args.rwku_targets), CORPUS_DIR)
    concepts = write_concepts(built, folder / "concepts" / "concepts.yaml")
    return folder / "concepts" / "concepts.yaml", len(concepts.concepts), folder / "index"


def measure_rwku(
    upstream_url: str, scripts: dict[bool, Path], args: argparse.Namespace, out: Measured
) -> None:
    """Start the RWKU proxy twice (cache as found, then warm) and measure the second."""
    concepts, count, index = rwku_concepts(args)
    label = f"proxy, {count} RWKU concepts"
    cold = not index.is_dir() or not any(index.iterdir())
    proxy = ProxyServer(
        concepts,
        upstream_url,
        env={"NESCIO_CACHE_DIR": str(index)},
        startup_timeout=args.startup_timeout,
    )
    _progress(f"{label}: first start ({'cold' if cold else 'warm'} cache in {index})")
    try:
        first = proxy.start()
    finally:
        proxy.stop()
    cache = "cold cache" if cold else "cache already filled by an earlier run"
    out.starts.append(f"{label}, first start: {first:.1f} s to ready ({cache})")
    if cold:
        out.cold_start_s = first
    with running(proxy, f"{label}, second start (warm cache)", out):
        measure(label, proxy, scripts, args, out)


def run(args: argparse.Namespace, folder: Path) -> Measured:
    out = Measured()
    scripts = {stream: folder / f"chat-stream-{stream}.lua" for stream in (False, True)}
    for stream, path in scripts.items():
        path.write_text(lua_script(stream=stream))
    guarded = f"proxy, examples/concepts.yaml ({len(load_concepts(EXAMPLES).concepts)} concepts)"
    env = {"NESCIO_CACHE_DIR": str(args.cache_dir / "index")}
    with running(EchoUpstream(), DIRECT, out) as upstream:
        measure(DIRECT, upstream, scripts, args, out)
        with running(ProxyServer(None, upstream.url), RELAY, out) as relay:
            measure(RELAY, relay, scripts, args, out)
        for workers in (n for n in args.relay_workers if n > 1):
            label = relay_label(workers)
            server = ProxyServer(None, upstream.url, env={"NESCIO_WORKERS": str(workers)})
            with running(server, label, out) as relay:
                measure(label, relay, scripts, args, out)
        proxy = ProxyServer(EXAMPLES, upstream.url, env=env, startup_timeout=args.startup_timeout)
        with running(proxy, guarded, out):
            measure(guarded, proxy, scripts, args, out)
        if args.compare_batching:
            label = f"{guarded}, no micro-batching"
            unbatched = {**env, "NESCIO_ENCODER_BATCHING": "false"}
            proxy = ProxyServer(
                EXAMPLES, upstream.url, env=unbatched, startup_timeout=args.startup_timeout
            )
            with running(proxy, label, out):
                measure(label, proxy, scripts, args, out)
        if args.rwku:
            measure_rwku(upstream.url, scripts, args, out)
    return out


def relay_label(workers: int) -> str:
    return f"{RELAY}, {workers} workers"


def cpu_table(out: Measured, connections: Sequence[int]) -> str:
    header = ["CPU ms per request (server's processes)"]
    header += [connections_header(c) for c in connections]
    body = []
    for stream, rows in out.cpu_ms.items():
        for label, cells in rows.items():
            name = f"{label}{', streamed' if stream else ''}"
            body.append([name, *(f"{cells[c]:.2f}" if c in cells else "—" for c in connections)])
    return render_table(header, body)


def ttft_table(out: Measured, count: int) -> str:
    direct = percentile(out.ttft_ms[DIRECT], 50)
    rows = []
    for label, times in out.ttft_ms.items():
        p50 = percentile(times, 50)
        over = "—" if label == DIRECT else f"{p50 - direct:+.1f}"
        rows.append([label, format_ms(p50), format_ms(percentile(times, 99)), over])
    header = [f"time to first token, ms ({count} requests)", "p50", "p99", "p50 over direct"]
    return render_table(header, rows)


def target_lines(out: Measured, connections: Sequence[int]) -> list[str]:
    """The issue's targets, each ``met`` or ``MISSED`` with the number it was judged on; checks
    at 64 connections use the largest count measured."""
    low, high = min(connections), max(connections)
    proxies = [label for label in out.labels if label != DIRECT]
    lines = []

    def check(ok: bool, text: str) -> None:
        lines.append(f"{'met   ' if ok else 'MISSED'}  {text}")

    plain = out.rows[False]
    for label in (p for p in proxies if not p.startswith(RELAY)):
        cell = plain[label][high]
        ok = cell.rate >= 500 and cell.p99_ms <= 50 and not cell.http_errors + cell.socket_errors
        check(ok, f"{label}, {high} conn: >= 500 req/s, p99 <= 50 ms: {format_cell(cell)}")
    relays = [label for label in proxies if label.startswith(RELAY)]
    for label in relays:
        relay = plain[label][high]
        check(relay.rate >= 1500, f"{label}, {high} conn: >= 1,500 req/s: {format_cell(relay)}")
    for stream, rows in out.rows.items():
        for label in proxies:
            first, last = rows[label][low].rate, rows[label][high].rate
            kind = "streamed" if stream else "plain"
            text = f"{label}, {kind}: req/s at {high} conn >= at {low}: {last:,.0f} vs {first:,.0f}"
            check(last >= first, text)
    direct = percentile(out.ttft_ms[DIRECT], 50)
    for label in proxies:
        over = percentile(out.ttft_ms[label], 50) - direct
        check(over <= 3.0, f"{label}: time to first token <= 3 ms over direct at p50: {over:+.1f}")
    if out.cold_start_s is not None:
        check(out.cold_start_s <= 60, f"RWKU cold start <= 60 s: {out.cold_start_s:.1f} s")
    return lines


def report(out: Measured, args: argparse.Namespace) -> str:
    label = "requests/s (p50 / p99 ms)"
    parts = [
        f"wrk -t1, {args.duration:g} s per point, whole-response latency",
        "",
        "plain requests",
        result_table(label, args.connections, out.rows[False], out.rss_mb[False]),
        "",
        '"stream": true',
        result_table(label, args.connections, out.rows[True], out.rss_mb[True]),
        "",
        cpu_table(out, args.connections),
        "",
        ttft_table(out, args.ttft_requests),
        "",
        "start to /ready",
        *(f"  {line}" for line in out.starts),
        "",
        "targets",
        *(f"  {line}" for line in target_lines(out, args.connections)),
    ]
    return "\n".join(parts)


def _progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds through `running`, which stops the servers


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if shutil.which("wrk") is None:
        print(WRK_MISSING, file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with tempfile.TemporaryDirectory(prefix="nescio-line-rate-") as folder:
            out = run(args, Path(folder))
    except ServerError as exc:
        print(f"line_rate: a server did not start: {exc}", file=sys.stderr)
        return 2
    except EvalError as exc:
        print(f"line_rate: cannot build the RWKU concepts: {exc}", file=sys.stderr)
        return 2
    except (BenchError, WrkError, httpx.HTTPError, subprocess.TimeoutExpired) as exc:
        print(f"line_rate: measurement failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("line_rate: interrupted; servers stopped, nothing reported", file=sys.stderr)
        return 130
    print(report(out, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
