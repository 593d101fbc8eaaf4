"""Soak the proxy: concurrent clients against a real ``nescio serve`` in front of a zero-latency
echo upstream, with the upstream restarted once half way. Run::

    .venv/bin/python benchmarks/soak.py                                # the full soak: 64 clients, 10 min
    .venv/bin/python benchmarks/soak.py --duration 60 --clients 16     # a short check
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from evals.hostile.servers import ServerError
from evals.hostile.soak import SoakConfig, format_summary, run_soak, summarize

REPO = Path(__file__).resolve().parents[1]

DESCRIPTION = """\
Soak the Nescio proxy. Starts the echo upstream (evals.hostile.echo_upstream) and a real
`nescio serve` on 127.0.0.1, then runs CLIENTS concurrent clients (one shared httpx pool) for
DURATION seconds, each looping over a fixed mix: chat allowed, chat allowed streamed, chat
refused, chat refused streamed, and a /v1/completions prompt. Half way through, the upstream is
stopped, left down for --restart-pause seconds and started again at the same address.

Every request is judged: allowed answers must echo the prompt (the upstream answered), refused
ones must carry `X-Nescio-Decision: refuse; ...` and must not (the upstream never saw them), and
streams must end with `data: [DONE]`. A failure is expected only when it is a 502/504 (or a
stream ending in an error event) in flight between the upstream's stop and one second after it
is ready again; everything else is unexpected. The proxy's RSS is read (psutil) after the warm-up,
every --sample-interval seconds and at the end.

Targets (exit code 1 when one is missed): the soak ran to the end; no unexpected errors; every
error answered 502/504; RSS at the end within --rss-tolerance of the start.

This is a soak (correctness and memory), not a throughput test: a Python load generator
saturates near 300 req/s on two cores, and the proxy's guard (a MiniLM encoding per request, on
CPU) served 25-40 req/s on two shared cores in our runs, so req/s here measure this machine."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="exit codes: 0 all targets met, 1 a target missed, 2 a server did not start, "
        "130 interrupted (Ctrl-C or SIGTERM)",
    )
    parser.add_argument(
        "--duration", type=float, default=600.0, help="seconds of load after warm-up (default 600)"
    )
    parser.add_argument(
        "--clients", type=int, default=64, help="concurrent clients and pool size (default 64)"
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=500,
        help="requests sent at full concurrency before the first RSS reading; not counted "
        "(default 500, so every client has run the mix before the baseline)",
    )
    parser.add_argument(
        "--concepts",
        type=Path,
        default=REPO / "examples" / "concepts.yaml",
        help="concept list served (default examples/concepts.yaml, which refuses Harry Potter)",
    )
    parser.add_argument(
        "--restart-pause",
        type=float,
        default=2.0,
        help="seconds the upstream stays down at the restart (default 2)",
    )
    parser.add_argument(
        "--sample-interval",
        type=float,
        default=10.0,
        help="seconds between RSS readings (default 10)",
    )
    parser.add_argument(
        "--rss-tolerance",
        type=float,
        default=0.10,
        help="largest relative RSS change, start to end, that counts as flat (default 0.10)",
    )
    parser.add_argument(
        "--log-dir", type=Path, help="where the servers' logs go (default: a new temporary folder)"
    )
    parser.add_argument("--out", type=Path, help="write the raw numbers as JSON here")
    return parser


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds through the launchers' `with`, which stop the servers


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = SoakConfig(
        concepts=args.concepts,
        duration=args.duration,
        clients=args.clients,
        warmup=args.warmup,
        restart_pause=args.restart_pause,
        sample_interval=args.sample_interval,
        rss_tolerance=args.rss_tolerance,
        log_dir=args.log_dir,
    )
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        run = run_soak(config)
    except ServerError as exc:
        print(f"soak: a server did not start: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("soak: interrupted; servers stopped, nothing reported", file=sys.stderr)
        return 130
    summary = summarize(run)
    print(format_summary(summary))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=1) + "\n")
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
