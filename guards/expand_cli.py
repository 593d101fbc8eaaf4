"""``nescio expand``: suggest aliases, indirect questions and namesake negatives for a concept list.

For each concept an OpenAI-compatible chat model is asked three short few-shot questions:
other names that only ever mean this concept (works, characters, places, products, the name in
Cyrillic, Greek, Chinese, Japanese, Arabic, Hebrew, Korean and Hindi); questions about it that
never write its name; and questions about namesakes (other people or things sharing a name word,
the words in their ordinary sense) that must stay out of scope. The model sees each concept's
name, aliases, description and examples, never its forget_text or forget-corpus files.

Every candidate is screened (length, duplicates, copies of the prompt's example; aliases made of
common English words, a single word of the concept's name, another concept's alias, one that
matches a negative; questions that are not questions, name the concept, or contradict one on
the other side of the scope); survivors are appended to aliases / examples / negatives,
everything else is counted with its reason. A small model suggests little that survives:
review the sidecar <out>.review.md and delete bad additions before using the list."""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from guards.expand import (
    ALIASES,
    Completion,
    Dropped,
    ExpandError,
    Expansion,
    Settings,
    Task,
    apply_expansions,
    expand_concepts,
    shorten,
)
from guards.normalize import normalize

if TYPE_CHECKING:
    import httpx

DEFAULT_BASE_URL = "http://127.0.0.1:8001/v1"  # the local stack's vLLM (deploy/local/run.sh)
ERROR_BODY_CHARS = 200
DESCRIPTION = __doc__.split("\n\n", 1)[1] if __doc__ else ""
EPILOG = """\
examples:
  nescio expand examples/concepts.yaml --dry-run            # the local vLLM, its only model
  nescio expand concepts.yaml --concept harry-potter --out hp.yaml
  OPENAI_API_KEY=... nescio expand concepts.yaml \\
      --base-url http://vllm.example:8000/v1 --model qwen2.5-7b-instruct
  nescio expand concepts.yaml --base-url https://api.openai.com/v1 --model gpt-4o-mini

writes <input stem>.expanded.yaml beside the input (or --out, or the input with --in-place) and
<out>.review.md listing every addition and every dropped candidate with its reason. Exit status
1 when some requests failed (their concepts keep what the other requests gave), 2 when nothing
could be asked. Writing goes through the schema, so YAML comments are not kept."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``expand`` to the ``nescio`` command."""
    parser = subparsers.add_parser(
        "expand",
        help="ask a chat model for missing aliases, indirect questions and namesake negatives",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("concepts", type=Path, help="concept list YAML to expand")
    parser.add_argument(
        "--concept",
        action="append",
        default=[],
        metavar="ID",
        help="expand only this concept (repeatable; default all)",
    )
    parser.add_argument(
        "--base-url",
        default=DEFAULT_BASE_URL,
        help=f"OpenAI-compatible API base, with /v1 (default {DEFAULT_BASE_URL})",
    )
    parser.add_argument("--model", help="model id to ask (default: the first one the server lists)")
    parser.add_argument(
        "--api-key-env",
        default="OPENAI_API_KEY",
        metavar="VAR",
        help="environment variable holding the API key (default OPENAI_API_KEY; unset: no key)",
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds per request (default 120)"
    )
    parser.add_argument(
        "--max-new",
        type=int,
        default=10,
        metavar="N",
        help="keep at most N new items per concept and field (default 10)",
    )
    parser.add_argument(
        "--max-tokens", type=int, default=512, help="answer length per request (default 512)"
    )
    parser.add_argument(
        "--temperature", type=float, default=0.0, help="sampling temperature (default 0)"
    )
    parser.add_argument(
        "--no-structured",
        dest="structured",
        action="store_false",
        help="do not send a JSON schema as response_format (for servers that reject it)",
    )
    target = parser.add_mutually_exclusive_group()
    target.add_argument(
        "--out", type=Path, help="where to write (default <input stem>.expanded.yaml beside it)"
    )
    target.add_argument("--in-place", action="store_true", help="overwrite the input concept file")
    parser.add_argument(
        "--dry-run", action="store_true", help="print the suggestions, write nothing"
    )
    parser.set_defaults(handler=run_expand)


def run_expand(
    args: argparse.Namespace,
    out: TextIO | None = None,
    *,
    transport: httpx.BaseTransport | None = None,
) -> int:
    """Handler of ``nescio expand``; returns the exit status (prints to ``out``, default
    standard output as it is when called). ``transport`` replaces the network (tests)."""
    from guards.cli import write_concepts
    from guards.concepts import load_concepts

    out = out or sys.stdout
    concepts = load_concepts(args.concepts)
    target = args.concepts if args.in_place else args.out or _default_out(args.concepts)
    if not args.in_place and target.resolve() == args.concepts.resolve():
        raise ExpandError(f"{target} is the input file; pass --in-place to overwrite it")
    if not args.dry_run and not target.parent.is_dir():
        raise ExpandError(f"{target.parent} is not a folder; create it or choose another --out")
    if args.max_new < 1:
        raise ExpandError("--max-new must be at least 1")
    with OpenAIChat(
        args.base_url,
        api_key=os.environ.get(args.api_key_env) or None,
        timeout=args.timeout,
        transport=transport,
    ) as chat:
        model = args.model or next(iter(chat.models()), None)
        if model is None:
            raise ExpandError(f"{chat.base_url}/models lists no model; pass --model")
        settings = Settings(
            model=model,
            structured=args.structured,
            temperature=args.temperature,
            max_tokens=args.max_tokens,
            limit=args.max_new,
        )
        expansions = expand_concepts(
            concepts, chat, settings, only=args.concept, source=str(args.concepts), progress=True
        )
    print(summary(expansions), file=out)
    failed = [e for e in expansions if e.errors]
    if expansions and all(s.error for e in expansions for s in e.suggestions):
        raise ExpandError(f"no request to {args.base_url} succeeded; nothing written")
    if args.dry_run:
        print("dry run: nothing written", file=out)
    else:
        write_concepts(apply_expansions(concepts, expansions), target, args.concepts)
        review = Path(f"{target}.review.md")
        review.write_text(
            review_markdown(
                expansions, source=args.concepts, target=target, endpoint=chat.base_url
            ),
            encoding="utf-8",
        )
        print(f"wrote {target} and {review}: review the additions before use", file=out)
    if failed:
        print(f"{len(failed)} concept(s) had failed requests; see the errors above", file=out)
        return 1
    return 0


def _default_out(source: Path) -> Path:
    return source.with_name(f"{source.stem}.expanded.yaml")


class OpenAIChat:
    """Chat completions from any OpenAI-compatible server (vLLM, OpenAI, llama.cpp, ...).

    Every failure (connection, timeout, HTTP status, a body that is not a chat completion) is an
    :class:`ExpandError` naming the endpoint; the API key is sent as a bearer token and scrubbed
    from anything the server echoes back. ``transport`` replaces the network (tests).
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        import httpx

        self.base_url = base_url.rstrip("/")
        self.endpoint = f"{self.base_url}/chat/completions"
        self.timeout = timeout
        self._key = api_key
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout, transport=transport
        )

    def __enter__(self) -> OpenAIChat:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._http.close()

    def models(self) -> list[str]:
        """The ids ``GET /models`` lists, in the server's order."""
        data = self._call("GET", "/models")
        entries = data.get("data") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise ExpandError(f"{self.base_url}/models: the answer lists no models")
        return [e["id"] for e in entries if isinstance(e, dict) and isinstance(e.get("id"), str)]

    def complete(self, body: Mapping[str, Any]) -> Completion:
        """``POST /chat/completions``; the first choice's text."""
        data = self._call("POST", "/chat/completions", body)
        try:
            choice = data["choices"][0]
            content = choice["message"]["content"]
            if not isinstance(content, str):
                raise TypeError
        except (KeyError, IndexError, TypeError):
            raise ExpandError(f"{self.endpoint}: the answer is not a chat completion") from None
        model = data.get("model")
        return Completion(
            content=content,
            model=model if isinstance(model, str) else str(body.get("model")),
            truncated=choice.get("finish_reason") == "length",
        )

    def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        import httpx

        endpoint = f"{self.base_url}{path}"
        try:
            response = self._http.request(method, path, json=body)
        except httpx.TimeoutException:
            raise ExpandError(f"{endpoint}: no answer within {self.timeout:g} s") from None
        except httpx.HTTPError as exc:
            reason = self._scrub(str(exc)) or type(exc).__name__
            raise ExpandError(f"{endpoint}: request failed: {reason}") from None
        if response.status_code >= 400:
            raise ExpandError(f"{endpoint}: HTTP {response.status_code}: {self._detail(response)}")
        try:
            return response.json()
        except ValueError:
            raise ExpandError(f"{endpoint}: the server's answer is not JSON") from None

    def _detail(self, response: httpx.Response) -> str:
        """The server's error message, shortened, key scrubbed, with a hint for usual mistakes."""
        try:
            error = response.json().get("error")
            message = error.get("message") if isinstance(error, dict) else error
        except (ValueError, AttributeError):
            message = None
        text = self._scrub(str(message or response.text or response.reason_phrase))
        text = shorten(" ".join(text.split()), ERROR_BODY_CHARS)
        if response.status_code == 404 and not self.base_url.endswith("/v1"):
            text += " (does --base-url need to end in /v1?)"
        elif response.status_code in (400, 422) and "response_format" in text:
            text += " (retry with --no-structured)"
        return text

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text


def drop_counts(dropped: Iterable[Dropped]) -> dict[str, int]:
    """How many candidates were dropped for each reason, most frequent first."""
    return dict(Counter(item.reason for item in dropped).most_common())


def summary(expansions: Sequence[Expansion]) -> str:
    """What the console shows: per concept, the model, each addition, drops by reason, errors."""
    lines = []
    for expansion in expansions:
        lines.append(f"{expansion.concept_id} ({expansion.name}), suggested by {expansion.model}:")
        for s in expansion.suggestions:
            reasons = ", ".join(f"{n} {r}" for r, n in drop_counts(s.dropped).items())
            lines.append(
                f"  {s.task.label}: {s.proposed} proposed, {len(s.added)} added, "
                f"{len(s.dropped)} dropped" + (f" ({reasons})" if reasons else "")
            )
            lines.extend(f"    + {text}" for text in s.added)
        lines.extend(f"  error: {error}" for error in expansion.errors)
        if expansion.calibrated and any(s.added for s in expansion.suggestions):
            lines.append("  calibrated before: run `nescio calibrate` again after review")
    return "\n".join(lines)


def review_markdown(
    expansions: Sequence[Expansion], *, source: Path, target: Path, endpoint: str
) -> str:
    """The sidecar an author reviews: every addition, every drop with its reason (repeats
    counted once), every error."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# `nescio expand` suggestions for {target.name}",
        "",
        f"Source `{source}`, model(s) at {endpoint}, {stamp}.",
        "",
        "Every item listed as added is now in the concept file. Delete the wrong ones there",
        "before using it: an alias is decisive (every chat that writes it is in scope, and",
        "answers are scanned for it), an example widens the scope, a negative narrows it.",
    ]
    for expansion in expansions:
        lines += ["", f"## {expansion.concept_id}: {expansion.name}", ""]
        lines.append(f"Suggested by `{expansion.model}`.")
        if expansion.calibrated:
            lines.append("Calibrated before: run `nescio calibrate` again once reviewed.")
        for s in expansion.suggestions:
            lines += ["", f"### {s.task.label}: {len(s.added)} added", ""]
            lines += [f"- {_single_word_note(s.task, text)}" for text in s.added] or ["(none)"]
            if s.dropped:
                lines += ["", f"Dropped {len(s.dropped)}:", ""]
                repeats = Counter(str(d) for d in s.dropped)
                lines += [f"- {d}" + (f" (x{n})" if n > 1 else "") for d, n in repeats.items()]
            if s.error:
                lines += ["", f"Error: {s.error}"]
    return "\n".join(lines) + "\n"


def _single_word_note(task: Task, text: str) -> str:
    if task is ALIASES and len(normalize(text).split()) == 1:
        return f"{text} (one word: in scope wherever it is written; is it only ever this concept?)"
    return text
