"""Property-based fuzzing of the proxy: hostile-but-plausible requests, none may get a 5xx.

:func:`fuzz_cases` generates requests for ``/v1/chat/completions``, ``/v1/completions`` and the
admin API: bodies shaped like the real thing with random JSON in every field (wrong types, huge,
empty and odd Unicode strings, nested junk, random roles, content-part lists, tool junk), then
sometimes mangled on the wire (truncated, bytes that are not UTF-8, a lone surrogate escape,
``NaN``). The property is the issue's: client input never causes a 5xx, a dropped connection or
a hang. :func:`run_fuzz` sends N cases to a running proxy and tallies the answers; the unit test
``tests/unit/proxy/test_proxy_fuzz.py`` runs the same strategies in-process at CI size.

Text stays short except for a few fixed long strings that are over the guard's character limit
(rejected before any encoding): long text within the limits is slow to check on purpose, and is
the hostile-inputs section's business, not the fuzzer's.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from evals.hostile.channels import QUESTION

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
ROLES = ("user", "system", "developer", "assistant", "tool", "function", "ipython", "", "USER")
PART_TYPES = (
    "text",
    "input_text",
    "refusal",
    "image_url",
    "input_audio",
    "video_url",
    "file",
    "image_embeds",
    "weird",
    "",
)
ODD_STRINGS = (
    "", " ", "\x00", "\x1b[31m", "\u202e\u2066", "\ufeff", "\U0001d573\U0001d594\U0001d58c",
    "\U0001f9d9\u200d\u2642\ufe0f", "data: [DONE]\n\n", "{\"error\": 1}", "../../../../etc/passwd",
    "/etc/passwd", "\r\n\r\n", "Hogwarts", QUESTION, "x" * 150_000, "Hi. " * 40_000,
)  # fmt: skip
CORPUS_PATHS = (
    "/etc/passwd",
    "../../../../etc/hostname",
    "forget/elara_voss.txt",
    "",
    "~/.ssh/id_rsa",
    "/proc/self/environ",
    "file:///etc/passwd",
    "C:\\Windows\\win.ini",
)
MANGLES = ("none",) * 8 + ("truncate", "not_utf8", "surrogate", "nan", "junk")
SHOWN_FAILURES = 5
BODY_SHOWN = 300

text = st.one_of(
    st.text(max_size=24),
    st.text(st.characters(min_codepoint=0, max_codepoint=0x1F), max_size=8),
    st.text(st.characters(min_codepoint=0x10000, max_codepoint=0x10FFFF),
            max_size=6),
    st.sampled_from(ODD_STRINGS),
)  # fmt: skip
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    text,
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
    max_leaves=10,
)


def _some(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """The field's plausible value most of the time, any JSON value otherwise."""
    return st.one_of(strategy, strategy, json_values)


parts = _some(st.fixed_dictionaries(
    {"type": st.sampled_from(PART_TYPES)},
    optional={"text": _some(text), "refusal": text, "image_url": _some(st.fixed_dictionaries(
        {"url": st.sampled_from(["data:image/png;base64,AAAA", "http://127.0.0.1:1/x", ""])})),
        "input_audio": json_values},
))  # fmt: skip
tool_calls = st.lists(
    _some(
        st.fixed_dictionaries(
            {
                "type": st.just("function"),
                "function": _some(
                    st.fixed_dictionaries(
                        {"name": _some(text)}, optional={"arguments": _some(text)}
                    )
                ),
            },
            optional={"id": _some(text)},
        )
    ),
    max_size=2,
)
messages = st.fixed_dictionaries(
    {"role": _some(st.sampled_from(ROLES))},
    optional={
        "content": st.one_of(text, st.none(), st.lists(parts, max_size=3), json_values),
        "name": _some(text),
        "tool_calls": _some(tool_calls),
        "tool_call_id": _some(text),
        "function_call": json_values,
        "reasoning_content": _some(text),
    },
)
tools = st.lists(
    _some(
        st.fixed_dictionaries(
            {
                "type": st.just("function"),
                "function": _some(
                    st.fixed_dictionaries(
                        {"name": _some(text)},
                        optional={"description": _some(text), "parameters": json_values},
                    )
                ),
            }
        )
    ),
    max_size=2,
)
response_formats = _some(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["json_schema", "json_object", "text", "regex", ""])},
        optional={
            "json_schema": _some(
                st.fixed_dictionaries(
                    {"name": _some(text)}, optional={"schema": json_values, "strict": json_values}
                )
            )
        },
    )
)
COMMON: dict[str, st.SearchStrategy[Any]] = {
    "model": _some(st.sampled_from(["echo", "", "m" * 300])),
    "stream": _some(st.booleans()),
    "stream_options": _some(
        st.fixed_dictionaries({}, optional={"include_usage": _some(st.booleans())})
    ),
    "n": _some(st.integers(min_value=-3, max_value=200)),
    "max_tokens": _some(st.integers(min_value=-1, max_value=10**9)),
    "temperature": _some(st.floats(min_value=-1, max_value=3)),
    "stop": _some(st.lists(text, max_size=3)),
    "user": _some(text),
    "logit_bias": json_values,
    "seed": json_values,
}
chat_bodies = st.fixed_dictionaries(
    {"messages": st.one_of(st.lists(messages, min_size=1, max_size=5),
                           st.lists(messages, min_size=1, max_size=5), json_values)},
    optional={
        **COMMON,
        "tools": _some(tools),
        "functions": json_values,
        "tool_choice": _some(st.sampled_from(["auto", "none", "required"])),
        "response_format": response_formats,
        "chat_template": _some(text),
        "chat_template_kwargs": _some(st.dictionaries(text, json_values, max_size=3)),
        "documents": json_values,
        "guided_json": json_values,
        "guided_choice": _some(st.lists(text, max_size=3)),
    },
)  # fmt: skip
token_ids = st.lists(st.integers(min_value=-5, max_value=2**40), max_size=6)
completion_bodies = st.fixed_dictionaries(
    {"prompt": st.one_of(text, st.lists(text, max_size=4), token_ids,
                         st.lists(token_ids, max_size=3), json_values)},
    optional={**COMMON, "suffix": _some(text), "echo": _some(st.booleans()),
              "logprobs": _some(st.integers(min_value=-1, max_value=30)),
              "prompt_embeds": _some(text), "guided_regex": _some(text)},
)  # fmt: skip
concepts = st.fixed_dictionaries(
    {"id": _some(st.sampled_from(["fuzz-concept", "harry-potter", "", "UPPER case"])),
     "name": _some(text)},
    optional={"aliases": _some(st.lists(text, max_size=3)),
              "examples": _some(st.lists(text, max_size=3)),
              "forget_corpus": _some(st.lists(st.sampled_from(CORPUS_PATHS) | text, max_size=2)),
              "forget_passages": _some(st.lists(text, max_size=2)),
              "policy": _some(st.sampled_from(["refuse", "icul", "instruct", "allow", ""])),
              "threshold": json_values, "refusal": _some(text)},
)  # fmt: skip
concept_lists = st.fixed_dictionaries(
    {"concepts": _some(st.lists(concepts, max_size=2))},
    optional={"version": _some(st.just(1)), "defaults": json_values},
)


@dataclass(frozen=True)
class FuzzCase:
    """One request on the wire: method, path (query string included), raw body, headers."""

    method: str
    path: str
    content: bytes
    headers: dict[str, str]

    def shown(self) -> str:
        body = self.content[:BODY_SHOWN].decode("utf-8", "backslashreplace")
        more = f"... ({len(self.content)} bytes)" if len(self.content) > BODY_SHOWN else ""
        return f"{self.method} {self.path} {body}{more}"


@st.composite
def wire_bytes(draw: st.DrawFn, bodies: st.SearchStrategy[Any]) -> bytes:
    """A body as JSON bytes, sometimes mangled: cut short, with bytes that are not UTF-8, with a
    lone surrogate escape, with ``NaN``, or replaced by junk bytes."""
    body = draw(bodies)
    raw = json.dumps(body, ensure_ascii=draw(st.booleans())).encode()
    mangle = draw(st.sampled_from(MANGLES))
    at = draw(st.integers(min_value=0, max_value=len(raw)))
    if mangle == "truncate":
        return raw[:at]
    if mangle == "not_utf8":
        return (
            raw[:at]
            + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80\x80"]))
            + raw[at:]
        )
    if mangle == "surrogate":
        return raw.replace(b'"', b'"\\ud800', 1) if b'"' in raw else raw
    if mangle == "nan" and raw.endswith(b"}") and len(raw) > 2:
        return raw[:-1] + b',"temperature":NaN}'
    if mangle == "junk":
        return draw(st.binary(max_size=64))
    return raw


KINDS = ("chat",) * 4 + ("completions",) * 3 + ("admin",) * 2


@st.composite
def fuzz_cases(draw: st.DrawFn, admin_key: str = "", kinds: tuple[str, ...] = KINDS) -> FuzzCase:
    """A request to the chat, completions or admin endpoints, drawn from ``kinds`` (by default
    admin about a fifth of the time, its key right most of the time when ``admin_key`` is
    given)."""
    kind = draw(st.sampled_from(kinds))
    headers = {"content-type": draw(st.sampled_from(["application/json"] * 4 + ["text/plain", ""]))}
    if kind == "admin":
        method, path = draw(
            st.sampled_from(
                [
                    ("GET", "/admin/concepts"),
                    ("PUT", "/admin/concepts"),
                    ("POST", "/admin/concepts"),
                    ("DELETE", "/admin/concepts/{id}"),
                    ("POST", "/admin/reload"),
                ]
            )
        )
        # Ids are at most 128 characters; past a few thousand a URL is refused by the client
        # itself (httpx: "URL too long") before any server could answer it.
        path = path.replace("{id}", quote(draw(text)[:1000], safe="") or "x")
        body = wire_bytes(concept_lists if method == "PUT" else _some(concepts))
        key = draw(st.sampled_from([admin_key] * 5 + ["wrong", ""]))
        if key:
            headers["authorization"] = f"Bearer {key}"
        return FuzzCase(method, path, draw(body), headers)
    path = CHAT if kind == "chat" else COMPLETIONS
    path += draw(st.sampled_from(["", "", "", "?stream=true", "?x=%ff"]))
    return FuzzCase(
        "POST",
        path,
        draw(wire_bytes(chat_bodies if kind == "chat" else completion_bodies)),
        headers,
    )


@dataclass
class FuzzTally:
    """What the fuzzer saw: cases tried, answers by status, 5xx answers, transport errors
    (connection dropped, timeout), and the first few failing cases."""

    tried: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: int = 0
    errors: int = 0
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def record(self, case: FuzzCase, status: int | None, problem: str) -> None:
        self.tried += 1
        if status is not None:
            self.statuses[status] += 1
        if status is not None and status >= 500:
            self.server_errors += 1
        elif status is None:
            self.errors += 1
        else:
            return
        if len(self.failures) < SHOWN_FAILURES:
            self.failures.append(f"{status or problem}: {case.shown()}")

    @property
    def passed(self) -> bool:
        return self.tried > 0 and self.server_errors == 0 and self.errors == 0

    def summary(self) -> str:
        by_status = ", ".join(f"{s}: {n}" for s, n in sorted(self.statuses.items()))
        return (
            f"tried {self.tried}, 5xx {self.server_errors}, errors {self.errors} "
            f"in {self.seconds:.0f}s ({by_status})"
        )


def run_fuzz(
    base_url: str,
    cases: int,
    *,
    admin_key: str = "",
    random_seed: int = 0,
    timeout: float = 30.0,
    time_limit: float = 1800.0,
) -> FuzzTally:
    """Send up to ``cases`` generated requests (fewer if ``time_limit`` seconds pass first), each
    cut off after ``timeout`` seconds in all, and tally them. No shrinking and no example database: every case is sent once, and a failure is
    recorded, not raised, so the count of failures is the measurement."""
    tally = FuzzTally()
    began = time.monotonic()
    with httpx.Client(base_url=base_url, timeout=timeout, trust_env=False) as client:

        @seed(random_seed)
        @settings(
            max_examples=cases,
            database=None,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(fuzz_cases(admin_key))
        def send(case: FuzzCase) -> None:
            if time.monotonic() - began > time_limit:
                return
            status, problem = _send(client, case, timeout)
            tally.record(case, status, problem)

        send()
    tally.seconds = time.monotonic() - began
    return tally


def _send(client: httpx.Client, case: FuzzCase, limit: float) -> tuple[int | None, str]:
    """The status of one case, or None and why: a transport error, or an answer (a stream
    included) still arriving after ``limit`` seconds, which counts as a hang."""
    began = time.monotonic()
    try:
        with client.stream(case.method, case.path, content=case.content, headers=case.headers) as r:
            for _ in r.iter_bytes():
                if time.monotonic() - began > limit:
                    return None, f"answer still arriving after {limit:.0f}s"
            return r.status_code, ""
    except httpx.HTTPError as exc:
        return None, type(exc).__name__
