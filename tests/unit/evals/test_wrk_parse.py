"""wrk for the line-rate benchmark: the result line its Lua script prints is parsed from a captured
run, the script builds the same request bodies the Python clients send, and cells and tables
render as the issue writes them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from evals.hostile.wrk import (
    QUESTIONS,
    WrkError,
    WrkResult,
    chat_body,
    format_cell,
    format_ms,
    lua_script,
    lua_string,
    numbered_question,
    parse_output,
    render_table,
    result_table,
    wrk_command,
)

# wrk 4.1.0 (Debian), -t1 -c2 -d1s --latency, against the echo upstream on loopback.
CAPTURED = """\
Running 1s test @ http://127.0.0.1:56605/v1/chat/completions
  1 threads and 2 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   510.78us  300.47us   6.85ms   99.20%
    Req/Sec     4.01k   120.57     4.09k    90.00%
  Latency Distribution
     50%  483.00us
     75%  506.00us
     90%  552.00us
     99%  704.00us
  3993 requests in 1.00s, 2.04MB read
Requests/sec:   3987.49
Transfer/sec:      2.04MB
NESCIO_WRK {"requests":3993,"duration_us":1001383,"p50_us":483,"p99_us":704,"max_us":6847,"connect":0,"read":0,"write":0,"status":0,"timeout":0}
"""

# The same shape with errors, as wrk prints them when a server is overloaded.
WITH_ERRORS = """\
  1190 requests in 10.01s, 1.10MB read
  Socket errors: connect 0, read 2, write 0, timeout 13
  Non-2xx or 3xx responses: 4
Requests/sec:    118.90
NESCIO_WRK {"requests":1190,"duration_us":10008000,"p50_us":424000,"p99_us":1671000,"max_us":1900000,"connect":0,"read":2,"write":0,"status":4,"timeout":13}
"""


def test_parses_the_result_line_of_a_captured_run() -> None:
    result = parse_output(CAPTURED)
    assert result == WrkResult(
        requests=3993,
        duration_s=1.001383,
        p50_ms=0.483,
        p99_ms=0.704,
        http_errors=0,
        socket_errors=0,
    )
    assert result.rate == pytest.approx(3987.5, abs=0.1)
    assert format_cell(result) == "3,987 (0.5 / 0.7)"


def test_errors_are_counted_and_shown_in_the_cell() -> None:
    result = parse_output(WITH_ERRORS)
    assert (result.http_errors, result.socket_errors) == (4, 15)
    assert format_cell(result) == "119 (424 / 1,671), 4 HTTP errors, 15 socket errors"


@pytest.mark.parametrize(
    "output",
    [CAPTURED.replace("NESCIO_WRK", "OTHER"), 'NESCIO_WRK {"requests": 1}', "NESCIO_WRK {"],
)
def test_a_missing_or_malformed_result_line_raises(output: str) -> None:
    with pytest.raises(WrkError):
        parse_output(output)


def test_milliseconds_keep_a_decimal_below_100() -> None:
    assert [format_ms(v) for v in (0.34, 29.66, 99.94, 100.4, 1671.2)] == [
        "0.3",
        "29.7",
        "99.9",
        "100",
        "1,671",
    ]


def test_lua_strings_escape_quotes_backslashes_and_utf8() -> None:
    assert lua_string('a "b" \\ é') == '"a \\034b\\034 \\092 \\195\\169"'


def _lua_local(script: str, name: str) -> str:
    match = re.search(rf'^local {name} = "(.*)"$', script, re.MULTILINE)
    assert match is not None
    return re.sub(r"\\(\d{3})", lambda m: chr(int(m.group(1))), match.group(1))


@pytest.mark.parametrize("stream", [False, True])
def test_the_script_sends_the_bodies_the_python_clients_send(stream: bool) -> None:
    script = lua_script(stream=stream)
    head, tail = _lua_local(script, "head"), _lua_local(script, "tail")
    questions = re.findall(r'"([^"]*)"', script.split("local questions = ")[1].splitlines()[0])
    assert questions == list(QUESTIONS)
    # Lua's questions[n % #questions + 1] is QUESTIONS[n % len] in Python.
    for n in (1, 7, 8, 17):
        body = head + questions[n % len(questions)] + f" ({n})" + tail
        assert json.loads(body) == chat_body(numbered_question(n), stream=stream)
    assert 'wrk.headers["Content-Type"] = "application/json"' in script


def test_wrk_command_runs_one_thread_with_latency() -> None:
    command = wrk_command(
        Path("/tmp/s.lua"),
        "http://127.0.0.1:1/v1/chat/completions",
        connections=16,
        duration=10,
        timeout=10,
    )
    assert command[:6] == ["wrk", "-t1", "-c16", "-d10s", "--timeout=10s", "--latency"]
    assert command[-3:] == ["-s", "/tmp/s.lua", "http://127.0.0.1:1/v1/chat/completions"]


def test_tables_are_padded_markdown_with_a_dash_for_missing_cells() -> None:
    table = render_table(["a", "bb"], [["long cell", "x"], ["y"]])
    assert table.splitlines() == [
        "| a         | bb |",
        "|-----------|----|",
        "| long cell | x  |",
        "| y         | —  |",
    ]
    cell = parse_output(CAPTURED)
    text = result_table("req/s", [1, 16], {"direct": {1: cell}}, {"direct": 30.4})
    assert text.splitlines()[0].startswith("| req/s  | 1 connection      | 16 connections |")
    assert (
        text.splitlines()[2] == "| direct | 3,987 (0.5 / 0.7) | —              | 30 MB            |"
    )
