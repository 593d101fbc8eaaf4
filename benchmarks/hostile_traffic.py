"""Hostile traffic against a real ``nescio serve``: the channel table, hostile inputs, fuzzing and
(optionally) the soak, each case printed with its status. Run::

    .venv/bin/python benchmarks/hostile_traffic.py                     # channels, inputs, fuzz
    .venv/bin/python benchmarks/hostile_traffic.py --sections channels # one section
    .venv/bin/python benchmarks/hostile_traffic.py --soak              # and the 10-minute soak
"""

from __future__ import annotations

import argparse
import secrets
import signal
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from types import FrameType

from evals.hostile.channels import CaseResult, run_channels
from evals.hostile.faulty_upstream import faulty_server
from evals.hostile.fuzz import run_fuzz
from evals.hostile.inputs import Targets, run_inputs
from evals.hostile.servers import EchoUpstream, ProxyServer, ServerError
from evals.hostile.soak import SoakConfig, format_summary, run_soak, summarize
from proxy.settings import ProxySettings

REPO = Path(__file__).resolve().parents[1]
SECTIONS = ("channels", "inputs", "fuzz")

DESCRIPTION = """\
Attack the Nescio proxy black-box, as an attacker and a careless client would. Starts the echo
upstream (its answer is the body it received, so an answer shows whether a text reached the
model) and a real `nescio serve` with --concepts (default examples/concepts.yaml, which refuses
Harry Potter; the forbidden question is "Who is the headmaster of Hogwarts?"), on 127.0.0.1,
with a random NESCIO_ADMIN_KEY and no NESCIO_CORPUS_DIR. Sections:

  channels  every row of guards.chat.CHANNELS, the channel table, with a request carrying the
            question in exactly that field: guarded rows must be refused and never echoed,
            rejected rows answered 400 in OpenAI's error shape, passed rows forwarded (200).
            A row without a carrier fails. Also path variants (query string, trailing slash,
            case) must not reach the model. ~40 requests, a few seconds.
  inputs    hostile inputs: a 5 MB message (413), 3 MB of text (400), 20,000 turns (400),
            JSON 100,000 deep (400), lone surrogates, bad UTF-8, malformed JSON and wrong types
            (4xx), admin forget_corpus naming server files (400); /health, /ready and a small
            chat answered while a 45,000-character check runs; a second proxy in front of a
            faulty upstream (evals.hostile.faulty_upstream) whose streams drop, carry a
            malformed event or end without [DONE] (the client's stream must end with an error
            event and [DONE]); a refused json_schema request (message.refusal); SIGTERM with
            requests in flight (exit within 30 s). About a minute, plus a second proxy start.
  fuzz      --fuzz-cases generated requests (chat, completions, admin API; hypothesis) sent
            one by one; a 5xx or a dropped connection is a failure. About 30 ms per case.
  soak      (--soak only) benchmarks/soak.py's soak with its defaults: 64 clients for 600 s,
            upstream restarted half way; its own servers. Over 10 minutes.

Every case prints: section, case, expected, got (status, decision header, seconds), PASS/FAIL
and a detail; each section ends with a summary line. Starting the proxy loads the encoder
(~10-20 s on CPU)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="exit codes: 0 every case passed, 1 a case failed, 2 a server did not start",
    )
    parser.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"comma-separated sections to run, of {', '.join(SECTIONS)} (default: all three; "
        "'' with --soak runs the soak alone)",
    )
    parser.add_argument("--soak", action="store_true", help="also run the soak (over 10 minutes)")
    parser.add_argument(
        "--fuzz-cases", type=int, default=2000, help="fuzz requests to send (default 2000)"
    )
    parser.add_argument(
        "--fuzz-seed", type=int, default=0, help="seed of the fuzz cases (default 0)"
    )
    parser.add_argument(
        "--concepts",
        type=Path,
        default=REPO / "examples" / "concepts.yaml",
        help="concept list served (default examples/concepts.yaml)",
    )
    parser.add_argument("--log-dir", type=Path, help="where server logs go (default: temp files)")
    return parser


def _print_section(name: str, results: Sequence[CaseResult], extra: str = "") -> bool:
    for result in results:
        print(result.row(), flush=True)
    failed = sum(not r.passed for r in results)
    line = f"== {name}: {len(results) - failed} passed, {failed} failed"
    print(line + (f"; {extra}" if extra else ""), flush=True)
    return failed == 0


def _log(log_dir: Path | None, name: str) -> Path | None:
    return None if log_dir is None else log_dir / f"{name}.log"


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds through the `with` blocks, which stop the servers


def run(args: argparse.Namespace) -> bool:
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown sections: {', '.join(sorted(unknown))}")
    key = secrets.token_urlsafe(16)
    env = {"NESCIO_ADMIN_KEY": key}
    ok = True
    header = f"{'section':<9} {'case':<44} {'expected':<34} {'got':<40} {'seconds':>8}  verdict"
    with ExitStack() as stack:
        if sections:
            echo = stack.enter_context(EchoUpstream(log_path=_log(args.log_dir, "echo")))
            proxy = stack.enter_context(
                ProxyServer(args.concepts, echo.url, env=env, log_path=_log(args.log_dir, "proxy"))
            )
            print(f"proxy {proxy.url} (log {proxy.log_path}), echo upstream {echo.url}")
            print(header, flush=True)
        if "channels" in sections:
            ok &= _print_section("channels", run_channels(proxy.url))
        if "inputs" in sections:
            faulty = stack.enter_context(faulty_server())
            faulty_proxy = ProxyServer(
                args.concepts, faulty.url, env=env, log_path=_log(args.log_dir, "proxy-faulty")
            )
            stack.enter_context(faulty_proxy)
            deadline = ProxySettings.model_fields["guard_deadline"].default
            targets = Targets(proxy.url, key, guard_deadline=deadline, faulty=faulty_proxy)
            ok &= _print_section("inputs", run_inputs(targets))
        if "fuzz" in sections:
            tally = run_fuzz(proxy.url, args.fuzz_cases, admin_key=key, random_seed=args.fuzz_seed)
            for failure in tally.failures:
                print(f"fuzz      failing case: {failure}")
            result = CaseResult(
                "fuzz",
                f"{tally.tried} generated requests",
                "no 5xx, no drop",
                None,
                "",
                tally.seconds,
                tally.passed,
                tally.summary(),
            )
            ok &= _print_section("fuzz", [result], tally.summary())
    if args.soak:
        soak = summarize(run_soak(SoakConfig(concepts=args.concepts, log_dir=args.log_dir)))
        print(format_summary(soak), flush=True)
        result = CaseResult(
            "soak",
            "64 clients, 600 s, upstream restart",
            "every target met",
            None,
            "",
            0.0,
            bool(soak["passed"]),
        )
        ok &= _print_section("soak", [result])
    return ok


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        ok = run(args)
    except ServerError as exc:
        print(f"hostile_traffic: a server did not start: {exc}", file=sys.stderr)
        return 2
    print("ALL PASS" if ok else "SOME CASES FAILED", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
