"""``nescio eval ...``: probe sets, concepts from benchmarks, detection-only runs, API runs, reports.

Each handler imports what it needs when it runs, so ``nescio --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys

from evals.cli_commands import (
    add_concepts_command,
    add_detect_command,
    add_probes_command,
    add_report_command,
    add_run_command,
)

EPILOG = """examples:
  nescio eval probes rwku:forget_level3 --targets 1 --show 3
  nescio eval concepts --from rwku --targets 1-100 --out rwku/concepts.yaml
  nescio eval detect --benchmark rwku --targets 1-100 --out runs/detect-rwku
  nescio eval detect --concepts my.yaml --probes my_probes.jsonl --out runs/detect-mine
  nescio eval run --system raw=http://127.0.0.1:8001 --system proxy=http://127.0.0.1:8080 \\
      --probes rwku:forget_level2 --targets 1-5 --out runs/rwku-small
  nescio eval report runs/rwku-small

Benchmark data is read from --data-dir, else $NESCIO_DATA_DIR, else ../shared/data."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``eval`` command group to the ``nescio`` parser."""
    parser = subparsers.add_parser(
        "eval",
        help="evaluate forgetting and utility: probe sets, detection, API runs, reports",
        description="Measure how well a system forgets (and what it keeps) through the "
        "OpenAI API, and how well the guard detects forbidden concepts in-process.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="eval_command", required=True, metavar="EVAL_COMMAND")
    add_probes_command(commands)
    add_concepts_command(commands)
    add_detect_command(commands)
    add_run_command(commands)
    add_report_command(commands)


def main(argv: list[str] | None = None) -> int:
    """Run ``nescio eval`` alone (``python -m evals.cli ...``), e.g. before the CLI is wired."""
    from guards.errors import NescioError

    root = argparse.ArgumentParser(prog="nescio")
    register(root.add_subparsers(dest="command", required=True))
    args = root.parse_args(["eval", *(sys.argv[1:] if argv is None else argv)])
    try:
        result: int = args.handler(args)
    except NescioError as exc:
        print(f"nescio: error: {exc}")
        return 2
    return result


if __name__ == "__main__":
    raise SystemExit(main())
