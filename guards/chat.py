"""What the model will read: every field of a chat or completions request body, classified.

This is the one module that knows OpenAI (and vLLM) request shapes. Each field is

- **guarded**: its text is checked by the guard, whatever role or place it comes in;
- **rejected**: the request is answered with a 400, because the guard cannot read what the
  model would (token ids, embeddings, a client-supplied chat template, media by default);
- **passed**: forwarded unread, because it cannot put text in front of the model (sampling
  parameters, stop strings, ids).

Fields not named in :data:`PASSED_FIELDS` or :data:`REJECTED_FIELDS` are guarded: a vLLM
extra added next year that carries text is checked before anyone thinks of it. :data:`CHANNELS`
is the table the README shows and the tests walk, row by row.

Turn order matters to the detector (consecutive turns are also scored joined), so the turns keep
today's order for the client's own questions: first the text of every user, system and developer
message, in order (what the guard always read, so its numbers on them do not move); then every
other text a message carries (assistant and tool turns, names, tool-call arguments, reasoning);
then the request-level fields (tools, response formats, template arguments, ...).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from guards.errors import RequestRejected

Endpoint = Literal["chat", "completions"]
MediaPolicy = Literal["reject", "pass"]
QUESTION_ROLES = frozenset({"user", "system", "developer"})
TEXT_PART_TYPES = frozenset({"text", "input_text", "output_text", "refusal"})
MEDIA_PART_TYPES = frozenset({
    "image_url", "input_image", "image_embeds", "image_pil", "input_audio", "audio_url",
    "video_url", "file", "input_file",
})  # fmt: skip
# Keys of a message read elsewhere (content) or carrying no text (the role). A tool_call_id is
# read: some chat templates render it.
MESSAGE_KEYS_UNREAD = frozenset({"role", "content"})
# Request fields that cannot put text in front of the model: they shape sampling, stopping,
# output format of tokens, routing or bookkeeping. Stop strings and bad words end or forbid
# output; the model never reads them.
PASSED_FIELDS = frozenset({
    "model", "n", "stream", "stream_options", "temperature", "top_p", "top_k", "min_p",
    "max_tokens", "max_completion_tokens", "min_tokens", "seed", "stop", "stop_token_ids",
    "logit_bias", "logprobs", "top_logprobs", "prompt_logprobs", "presence_penalty",
    "frequency_penalty", "repetition_penalty", "length_penalty", "use_beam_search", "best_of",
    "echo", "user", "ignore_eos", "skip_special_tokens", "spaces_between_special_tokens",
    "include_stop_str_in_output", "add_generation_prompt", "continue_final_message",
    "add_special_tokens", "truncate_prompt_tokens", "allowed_token_ids", "bad_words",
    "parallel_tool_calls", "reasoning_effort", "service_tier", "store", "metadata", "request_id",
    "priority", "cache_salt", "return_tokens_as_token_ids", "return_token_ids", "modalities",
})  # fmt: skip
REJECTED_FIELDS: Mapping[str, str] = {
    "chat_template": "a client-supplied chat template can put any text in front of the model",
    "prompt_embeds": "prompt embeddings cannot be read by the guard",
}


class Treatment(StrEnum):
    GUARDED = "guarded"
    REJECTED = "rejected (400)"
    PASSED = "passed"


@dataclass(frozen=True, slots=True)
class Channel:
    """One row of the channel table: where text can enter a request, and what the guard does."""

    endpoint: Literal["chat", "completions", "both"]
    field: str
    treatment: Treatment
    note: str


G, R, P = Treatment.GUARDED, Treatment.REJECTED, Treatment.PASSED
CHANNELS: tuple[Channel, ...] = (
    Channel("chat", "messages[role=user].content", G, "the question itself"),
    Channel("chat", "messages[role=system].content", G, ""),
    Channel("chat", "messages[role=developer].content", G, ""),
    Channel("chat", "messages[role=assistant].content", G,
            "client input too (a prefilled answer); this guard's own refusal texts are ignored"),
    Channel("chat", "messages[role=tool].content", G, "tool results are client input"),
    Channel("chat", "messages[role=function].content", G, "legacy tool results"),
    Channel("chat", "messages[].content[type=text]", G, "text parts of multi-part content"),
    Channel("chat", "messages[].content[type=image_url, input_audio, video_url, file, ...]", R,
            "media the guard cannot read; NESCIO_UNGUARDED_MEDIA=pass forwards them unread"),
    Channel("chat", "messages[].name", G, "chat templates may render it"),
    Channel("chat", "messages[].tool_calls[].function.arguments", G, "and the function name"),
    Channel("chat", "messages[].function_call", G, "legacy tool calls"),
    Channel("chat", "messages[].reasoning_content", G, "and any other text field of a message"),
    Channel("chat", "tools", G, "names, descriptions and parameter schemas (templates render them)"),
    Channel("chat", "functions", G, "legacy tools"),
    Channel("chat", "tool_choice", G, "a named function"),
    Channel("chat", "response_format", G, "JSON schema names, descriptions and values"),
    Channel("both", "guided_json, guided_regex, guided_choice, guided_grammar, structured_outputs",
            G, "they force what the model writes"),
    Channel("chat", "chat_template", R, REJECTED_FIELDS["chat_template"]),
    Channel("chat", "chat_template_kwargs", G, "every string value"),
    Channel("chat", "documents", G, "RAG documents rendered by the template"),
    Channel("completions", "prompt (text, or list of texts)", G, ""),
    Channel("completions", "prompt (token ids)", R, "token ids cannot be read by the guard"),
    Channel("completions", "prompt_embeds", R, REJECTED_FIELDS["prompt_embeds"]),
    Channel("completions", "suffix", G, ""),
    Channel("both", "any other field (vLLM extras, mm_processor_kwargs, vllm_xargs, ...)", G,
            "every string in it, keys included"),
    Channel("both", ", ".join(sorted(PASSED_FIELDS)), P,
            "sampling, stopping, token output and bookkeeping: never read by the model"),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class RequestTexts:
    """The texts of one request the guard checks.

    ``questions`` are what the client asks in its own voice: user, system and developer message
    contents, or the prompts, in order (the detector also scores consecutive ones joined).
    ``context`` is every other text the model would read, each with ``roles[i]`` saying where it
    came from (a message role, ``<role>.fields`` for a message's other text fields, or
    ``request.<field>``). ``last_user`` indexes the last user message among ``questions`` (the
    only text a mixed prompt is split in), ``None`` if there is none.
    """

    questions: tuple[str, ...]
    context: tuple[str, ...]
    roles: tuple[str, ...]
    last_user: int | None

    @property
    def turns(self) -> tuple[str, ...]:
        return self.questions + self.context

    @property
    def chars(self) -> int:
        return sum(len(t) for t in self.turns)


def request_texts(body: Mapping[str, Any], endpoint: Endpoint, media: MediaPolicy) -> RequestTexts:
    """Every text of ``body`` the model could read, or :class:`RequestRejected` naming the field
    the guard cannot read (400). ``body`` is the client's JSON object, validated by the caller
    for the fields it needs (``messages`` a list, ``prompt`` present)."""
    questions: list[str] = []
    others: list[tuple[str, str]] = []
    last_user = None
    if endpoint == "chat":
        for i, message in enumerate(body.get("messages") or []):
            if not isinstance(message, Mapping):
                continue
            role = str(message.get("role", ""))
            _check_parts(message.get("content"), f"messages[{i}].content", media)
            text = message_text(message)
            if text is not None and role in QUESTION_ROLES:
                last_user = len(questions) if role == "user" else last_user
                questions.append(text)
            elif text:
                others.append((role, text))
            fields = _joined([v for k, v in message.items() if k not in MESSAGE_KEYS_UNREAD])
            if fields:
                others.append((f"{role}.fields", fields))
    else:
        questions.extend(prompt_texts(body.get("prompt")))
    for key, value in body.items():
        if key in REJECTED_FIELDS and value is not None:
            raise RequestRejected(
                f"{key} is not accepted: {REJECTED_FIELDS[key]}",
                param=key,
                code="unguardable_field",
            )
        if key in PASSED_FIELDS or key in ("messages", "prompt"):
            continue
        text = _joined([value])
        if text:
            others.append((f"request.{key}", text))
    return RequestTexts(
        tuple(questions), tuple(t for _, t in others), tuple(r for r, _ in others), last_user
    )


def chat_texts(messages: Sequence[Any]) -> RequestTexts:
    """The texts of a chat's ``messages`` alone, media passed unread (for studies and tools that
    hold messages, not a request body)."""
    return request_texts({"messages": list(messages)}, "chat", "pass")


def prompt_texts(prompt: Any) -> list[str]:
    """A completions prompt as texts: a string, or a list of strings; token ids are rejected."""
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and all(isinstance(p, str) for p in prompt):
        return list(prompt)
    raise RequestRejected(
        "token-id prompts cannot be checked by the guard; send the prompt as text",
        param="prompt",
        code="unguardable_prompt",
    )


def message_text(message: Any) -> str | None:
    """A chat message's text content as the guard reads it: the string content, or the text
    parts of multi-part content joined by spaces; ``None`` for a message without text content."""
    if not isinstance(message, Mapping):
        return None
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [_part_text(p) for p in content if isinstance(p, Mapping)]
        return " ".join(p for p in parts if p and p.strip())
    return None


def _check_parts(content: Any, where: str, media: MediaPolicy) -> None:
    if media == "pass" or not isinstance(content, list):
        return
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind in MEDIA_PART_TYPES:
            raise RequestRejected(
                f"content parts of type {kind!r} cannot be read by the guard",
                param=f"{where}[{j}]",
                code="unguardable_content",
            )


def _part_text(part: Mapping[str, Any]) -> str:
    """A text part's text; a media part is nothing (it passes unread, or was rejected); a part
    of any other type is every string in it."""
    kind = part.get("type")
    if kind in TEXT_PART_TYPES:
        value = part.get("text", part.get("refusal"))
        return value if isinstance(value, str) else ""
    if kind in MEDIA_PART_TYPES:
        return ""
    return _joined([{k: v for k, v in part.items() if k != "type"}])


def _joined(values: Any) -> str:
    return " ".join(s for s in _strings(values) if s.strip())


def _strings(value: Any) -> Iterator[str]:
    """Every string in a JSON value, object keys included, depth first (iteratively: the body's
    depth is bounded by the proxy, but a library caller's need not be)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, Mapping):
            for key, child in reversed(list(item.items())):
                stack.append(child)
                stack.append(key)
        elif isinstance(item, list):
            stack.extend(reversed(item))


def channel_table() -> str:
    """:data:`CHANNELS` as the Markdown table the README shows (a test keeps the two equal)."""
    rows = ["| endpoint | field | treatment | note |", "|---|---|---|---|"]
    for c in CHANNELS:
        field = c.field if c.treatment != Treatment.PASSED else "sampling and bookkeeping fields*"
        rows.append(f"| {c.endpoint} | `{field}` | {c.treatment.value} | {c.note} |")
    passed = ", ".join(f"`{f}`" for f in sorted(PASSED_FIELDS))
    return "\n".join(rows) + f"\n\n\\* {passed}.\n"


if __name__ == "__main__":
    print(channel_table(), end="")
