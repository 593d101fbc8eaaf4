"""wrk, the HTTP load generator, as the line-rate benchmark drives it: the Lua script that sends
short chat requests and reports wrk's numbers as one JSON line, the parser for that line, and
the table the numbers are printed in.

wrk's own text report rounds (``1.67ms``, ``2.73k``) and changes wording between versions, so the
script's ``done`` hook writes the exact counts and microsecond percentiles after it, on a line
starting with :data:`MARKER`; the text report is left as it is, for a human reading a log.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MARKER = "NESCIO_WRK "
CHAT_PATH = "/v1/chat/completions"
_SLOT = "\x00question\x00"

# General-knowledge questions that name no person, place of fiction or hazard, so no concept
# list in this repository (examples/concepts.yaml, RWKU's 100 people) has them in scope.
QUESTIONS = (
    "What is the capital of France?",
    "How many legs does a spider have?",
    "What is the boiling point of water at sea level?",
    "Which planet is closest to the sun?",
    "How many days are there in a leap year?",
    "What gas do plants absorb from the air?",
    "What is the largest ocean on Earth?",
    "How many sides does a hexagon have?",
)

_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%s{"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,'
    .. '"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}\\n',
    MARKER, summary.requests, summary.duration, latency:percentile(50),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


class WrkError(RuntimeError):
    """wrk's output carried no result line (it failed, or the script did not run)."""


@dataclass(frozen=True)
class WrkResult:
    """One wrk run: completed responses (any status), how long it ran, whole-response latency
    percentiles, responses with status >= 400 (wrk's ``errors.status``) and socket errors
    (connect, read, write and timeouts; a timed-out request is not in the percentiles)."""

    requests: int
    duration_s: float
    p50_ms: float
    p99_ms: float
    http_errors: int
    socket_errors: int

    @property
    def rate(self) -> float:
        """Completed responses per second, as wrk's ``Requests/sec`` counts them."""
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0


def chat_body(question: str, *, stream: bool) -> dict[str, Any]:
    """The request every benchmark client sends: one short user turn to the echo model."""
    return {
        "model": "echo",
        "messages": [{"role": "user", "content": question}],
        "max_tokens": 16,
        "stream": stream,
    }


def numbered_question(n: int) -> str:
    """The n-th request's text: the questions in turn, each with its number, so no two bodies
    are equal and a cache of decisions or encodings cannot answer for the guard."""
    return f"{QUESTIONS[n % len(QUESTIONS)]} ({n})"


def lua_string(text: str) -> str:
    """A Lua string literal for ``text``: printable ASCII as is, every other byte (quotes,
    backslashes, UTF-8) as a decimal escape, which every Lua version reads the same way."""
    out = []
    for byte in text.encode():
        char = chr(byte)
        out.append(char if 32 <= byte < 127 and char not in '"\\' else f"\\{byte:03d}")
    return '"' + "".join(out) + '"'


def lua_script(*, stream: bool) -> str:
    """A wrk script that POSTs :func:`chat_body` with :func:`numbered_question`'s text (its
    counter starts at 1 with each wrk run) and prints the result line when wrk is done."""
    head, tail = json.dumps(chat_body(_SLOT, stream=stream)).split(json.dumps(_SLOT)[1:-1])
    questions = ", ".join(lua_string(json.dumps(q)[1:-1]) for q in QUESTIONS)
    return f"""\
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local MARKER = {lua_string(MARKER)}
local questions = {{{questions}}}
local head = {lua_string(head)}
local tail = {lua_string(tail)}
local n = 0
request = function()
  n = n + 1
  local body = head .. questions[n % #questions + 1] .. " (" .. n .. ")" .. tail
  return wrk.format(nil, nil, nil, body)
end
{_DONE}"""


def wrk_command(
    script: Path, url: str, *, connections: int, duration: float, timeout: float
) -> list[str]:
    """One thread, ``connections`` open connections, ``duration`` seconds against ``url``; a
    request slower than ``timeout`` seconds counts as a socket error."""
    return [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        f"--timeout={max(1, round(timeout))}s",
        "--latency",
        "-s",
        str(script),
        url,
    ]


def parse_output(stdout: str) -> WrkResult:
    """The result line of a wrk run with :func:`lua_script`; raises :class:`WrkError` when it
    is missing or malformed."""
    line = next((ln for ln in stdout.splitlines() if ln.startswith(MARKER)), None)
    if line is None:
        raise WrkError(f"no {MARKER.strip()} line in wrk's output:\n{stdout[-2000:]}")
    try:
        raw = json.loads(line[len(MARKER) :])
        socket_errors = sum(int(raw[k]) for k in ("connect", "read", "write", "timeout"))
        return WrkResult(
            requests=int(raw["requests"]),
            duration_s=int(raw["duration_us"]) / 1e6,
            p50_ms=int(raw["p50_us"]) / 1e3,
            p99_ms=int(raw["p99_us"]) / 1e3,
            http_errors=int(raw["status"]),
            socket_errors=socket_errors,
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise WrkError(f"malformed wrk result line {line!r}: {exc}") from exc


def format_ms(value: float) -> str:
    """``0.3``, ``29.7``, ``424``, ``1,671``: a decimal below 100 ms, whole numbers above."""
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def format_cell(result: WrkResult) -> str:
    """``2,726 (0.3 / 1.7)``: req/s (p50 / p99 ms), then any errors."""
    cell = f"{result.rate:,.0f} ({format_ms(result.p50_ms)} / {format_ms(result.p99_ms)})"
    if result.http_errors:
        cell += f", {result.http_errors:,} HTTP errors"
    if result.socket_errors:
        cell += f", {result.socket_errors:,} socket errors"
    return cell


def connections_header(connections: int) -> str:
    return f"{connections} connection" + ("" if connections == 1 else "s")


def render_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table with padded columns, readable in a terminal and pasteable in an issue;
    rows shorter than the header are padded with ``—``."""
    full = [list(header)] + [list(r) + ["—"] * (len(header) - len(r)) for r in rows]
    widths = [max(len(r[i]) for r in full) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(full[0]), rule, *(line(r) for r in full[1:])])


def result_table(
    label: str,
    connections: Sequence[int],
    rows: Mapping[str, Mapping[int, WrkResult]],
    rss_mb: Mapping[str, float],
) -> str:
    """The line-rate table: one row per target, one column per connection count, and the
    server's resident memory after the row's last run (``—`` where not measured)."""
    header = [label, *(connections_header(c) for c in connections), "server RSS after"]
    body = [
        [
            name,
            *(format_cell(cells[c]) if c in cells else "—" for c in connections),
            f"{rss_mb[name]:,.0f} MB" if name in rss_mb else "—",
        ]
        for name, cells in rows.items()
    ]
    return render_table(header, body)
