"""The ``nescio`` command: ``serve`` here, the other subcommands plugged in by their packages."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from guards.errors import NescioError

# Each module exposes register(subparsers); heavy imports happen inside the command handlers.
COMMAND_MODULES = (
    "guards.cli",
    "guards.compile_cli",
    "guards.expand_cli",
    "evals.cli",
    "evals.baselines.cli",
)

EPILOG = """examples:
  nescio serve --concepts examples/concepts.yaml --upstream-url http://127.0.0.1:8001
  nescio calibrate examples/concepts.yaml --dry-run
  nescio expand examples/concepts.yaml --dry-run
  nescio eval detect --benchmark rwku --targets 1-10
  nescio unlearn --method npo --model MODEL_DIR --out OUT_DIR

Every serve option can also come from a NESCIO_<OPTION> environment variable
(e.g. NESCIO_UPSTREAM_URL, NESCIO_API_KEYS='["k1"]', NESCIO_ADMIN_KEY) or a YAML file (--config)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nescio",
        description="Black-box LLM unlearning: a guard proxy for OpenAI-compatible servers, and its evaluator.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _register_serve(subparsers)
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(subparsers)
    return parser


def _register_serve(subparsers: Any) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="run the guard proxy in front of an OpenAI-compatible upstream (vLLM)",
        description="Run the OpenAI-compatible guard proxy. Clients point their base URL at "
        "http://HOST:PORT/v1 instead of the upstream's.",
    )
    serve.add_argument("--concepts", type=Path, help="concept list YAML (NESCIO_CONCEPTS_PATH)")
    serve.add_argument("--upstream-url", help="upstream base URL without /v1 (NESCIO_UPSTREAM_URL)")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to bind (default 8080)")
    serve.add_argument("--config", type=Path, help="YAML settings file (any NESCIO_* field)")
    serve.add_argument("--cache-dir", type=Path, help="where FAISS indexes are cached")
    serve.add_argument(
        "--no-decision-header",
        action="store_true",
        help="do not reveal decisions in X-Nescio-Decision",
    )
    serve.add_argument(
        "--fail-open", action="store_true", help="forward unguarded if the guard fails"
    )
    serve.add_argument(
        "--workers",
        type=int,
        help="worker processes (NESCIO_WORKERS, default 1); each builds its own guard, admin "
        "API changes reach all of them (README, 'Workers')",
    )
    serve.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from proxy.app import create_app
    from proxy.settings import ProxySettings
    from proxy.workers import shared_folders, worker_environment

    overrides = {
        "concepts_path": args.concepts,
        "upstream_url": args.upstream_url,
        "host": args.host,
        "port": args.port,
        "config": args.config,
        "cache_dir": args.cache_dir,
        "decision_header": False if args.no_decision_header else None,
        "fail_open": True if args.fail_open else None,
        "workers": args.workers,
    }
    given = {k: v for k, v in overrides.items() if v is not None}
    settings = ProxySettings(**given)
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "http": "httptools",  # C parser: ~30% less CPU per relayed request than h11 (README)
        "log_config": log_config(getattr(args, "verbose", False)),
        "access_log": False,  # proxy.observe logs one line per request, with the decision
        # After SIGTERM, in-flight requests get shutdown_grace seconds, then are cut (a
        # Kubernetes pod gets 30 s before SIGKILL); the guard's work per request ends by its
        # deadline.
        "timeout_graceful_shutdown": max(1, round(settings.shutdown_grace)),
    }
    if settings.workers == 1:
        uvicorn.run(create_app(settings), **options)
        return 0
    # Workers are fresh processes (spawned) that rebuild the settings from the environment:
    # the flags go there too, with the folders the workers share.
    with shared_folders(settings) as folders:
        os.environ.update(worker_environment(given) | folders)
        uvicorn.run("proxy.workers:worker_app", factory=True, workers=settings.workers, **options)
    return 0


def log_config(verbose: bool) -> dict[str, Any]:
    """One format for the proxy's and uvicorn's lines, with the process id (several workers
    write to one stream); httpx's per-request INFO lines off."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "line": {"format": "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"}
        },
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "line",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": "DEBUG" if verbose else "INFO"},
        "loggers": {
            "httpx": {"level": "WARNING"},
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # httpx logs every request at INFO: the proxy's access log and the evaluator's progress bars
    # already say what matters, once.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        result: int = args.handler(args)
    except NescioError as exc:
        print(f"nescio: error: {exc}", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":
    sys.exit(main())
