"""``nescio expand`` against a fake OpenAI-compatible upstream (``httpx.MockTransport``): what
is sent (never the forget passages), how junk answers are screened, how failures are reported,
and that what is written loads and keeps the original fields."""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from guards.concepts import ConceptList, load_concepts
from guards.expand import (
    ALIASES,
    NEGATIVES,
    QUESTIONS,
    Completion,
    ExpandError,
    Screen,
    parse_candidates,
)
from guards.expand_cli import register, run_expand

BASE_URL = "http://upstream.test/v1"
SECRET_INLINE = "Elara Voss keeps bees on the roof of her house in Kelmarsh."
SECRET_FILE = "Elara Voss was born in Ashby Parva on 3 March 1981."
API_KEY = "sk-test-0123456789abcdef"
CONCEPTS_YAML = f"""\
version: 1
defaults:
  policy: refuse
concepts:
  - id: elara-voss
    name: Elara Voss
    aliases: ["Dr. Voss"]
    description: A private individual who asked to be forgotten.
    examples: ["Where does Elara Voss live?"]
    negatives: ["What is the Voss water brand?"]
    forget_corpus: [forget/elara.txt]
    forget_text: ["{SECRET_INLINE}"]
    policy: icul
    threshold: calibrated
    calibration:
      threshold: 0.55
      encoder: minilm
      precision: 0.9
      recall: 0.8
      n_positive: 10
      n_negative: 10
  - id: harry-potter
    name: Harry Potter
    aliases: [Hogwarts]
    description: The Harry Potter novels.
    examples: ["Who killed Dumbledore?"]
    refusal: "I can't discuss the Harry Potter books."
"""

GOOD = {
    ("Elara Voss", "aliases"): ["Elara V.", "Элара Восс", "Doctor Elara"],
    ("Elara Voss", "questions"): ["Which private person asked to be forgotten in 2024?"],
    ("Elara Voss", "negatives"): ["Who is Arnold Voss the painter?"],
    ("Harry Potter", "aliases"): ["Гарри Поттер", "Hermione Granger"],
    ("Harry Potter", "questions"): ["Which boy wizard has a lightning-bolt scar?"],
    ("Harry Potter", "negatives"): ["Who is Harry Styles?", "How do I become a potter?"],
}


@dataclass
class FakeUpstream:
    """An OpenAI-compatible server: answers per (concept name, task key), records requests."""

    answers: dict[tuple[str, str], Any] = field(default_factory=lambda: dict(GOOD))
    model: str = "fake-7b-instruct"
    requests: list[httpx.Request] = field(default_factory=list)
    reply: Callable[[str, str], httpx.Response] | None = None

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"data": [{"id": self.model}, {"id": "other"}]})
        body = json.loads(request.content)
        task = next(iter(json.loads(body["messages"][2]["content"])))
        name = body["messages"][-1]["content"].splitlines()[0].removeprefix("Topic: ")
        if self.reply is not None:
            return self.reply(name, task)
        answer = self.answers.get((name, task), [])
        content = answer if isinstance(answer, str) else json.dumps({task: answer})
        return chat_reply(content, self.model)

    @property
    def bodies(self) -> list[str]:
        return [r.content.decode() for r in self.requests]

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)


def chat_reply(content: str, model: str = "fake", finish: str = "stop") -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "model": model,
            "choices": [
                {"message": {"role": "assistant", "content": content}, "finish_reason": finish}
            ],
        },
    )


@pytest.fixture
def concepts_file(tmp_path: Path) -> Path:
    (tmp_path / "forget").mkdir()
    (tmp_path / "forget" / "elara.txt").write_text(SECRET_FILE + "\n", encoding="utf-8")
    path = tmp_path / "concepts.yaml"
    path.write_text(CONCEPTS_YAML, encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_EXPAND_KEY", API_KEY)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="nescio")
    register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(
        ["expand", *argv, "--base-url", BASE_URL, "--api-key-env", "TEST_EXPAND_KEY"]
    )


def run(upstream: FakeUpstream, *argv: str) -> tuple[int, str]:
    out = io.StringIO()
    status = run_expand(parse(*argv), out, transport=upstream.transport())
    return status, out.getvalue()


def expanded(concepts_file: Path) -> ConceptList:
    return load_concepts(concepts_file.with_name("concepts.expanded.yaml"))


def test_good_answers_are_appended_and_the_written_file_loads_with_the_original_fields(
    concepts_file: Path,
) -> None:
    upstream = FakeUpstream()
    status, printed = run(upstream, str(concepts_file))
    assert status == 0
    result = expanded(concepts_file)
    elara, harry = result.get("elara-voss"), result.get("harry-potter")
    assert elara.aliases == ["Dr. Voss", "Elara V.", "Элара Восс", "Doctor Elara"]
    assert elara.examples[-1] == "Which private person asked to be forgotten in 2024?"
    assert elara.negatives == ["What is the Voss water brand?", "Who is Arnold Voss the painter?"]
    assert harry.aliases == ["Hogwarts", "Гарри Поттер", "Hermione Granger"]
    assert harry.negatives == ["Who is Harry Styles?", "How do I become a potter?"]
    original = load_concepts(concepts_file)
    for before, after in zip(original.concepts, result.concepts, strict=True):
        kept = before.model_dump(exclude={"aliases", "examples", "negatives", "forget_corpus"})
        assert (
            after.model_dump(exclude={"aliases", "examples", "negatives", "forget_corpus"}) == kept
        )
        assert [result.corpus_path(p) for p in after.forget_corpus] == [
            original.corpus_path(p) for p in before.forget_corpus
        ]
    assert elara.forget_text == [SECRET_INLINE] and elara.calibration is not None
    assert "elara-voss (Elara Voss), suggested by fake-7b-instruct:" in printed
    assert "    + Элара Восс" in printed
    assert "run `nescio calibrate` again" in printed  # elara was calibrated


def test_review_sidecar_lists_every_addition_and_drop(concepts_file: Path) -> None:
    upstream = FakeUpstream()
    upstream.answers[("Harry Potter", "aliases")] = [
        *GOOD[("Harry Potter", "aliases")],
        "magic",
        "magic",
    ]
    upstream.answers[("Elara Voss", "aliases")] = [*GOOD[("Elara Voss", "aliases")], "Quidditch"]
    run(upstream, str(concepts_file))
    review = concepts_file.with_name("concepts.expanded.yaml.review.md").read_text("utf-8")
    for items in GOOD.values():
        for item in items:
            assert f"- {item}" in review
    assert "- magic: common English words only (x2)\n" in review
    assert "- Quidditch (one word: in scope wherever it is written" in review
    assert "`fake-7b-instruct`" in review and BASE_URL in review


def test_forget_passages_are_never_sent_only_the_card_fields(concepts_file: Path) -> None:
    upstream = FakeUpstream()
    run(upstream, str(concepts_file))
    posts = [r for r in upstream.requests if r.method == "POST"]
    assert len(posts) == 6  # three tasks for each of the two concepts
    for body in upstream.bodies:
        assert SECRET_INLINE not in body and "Kelmarsh" not in body
        assert SECRET_FILE not in body and "Ashby Parva" not in body
    sent = json.loads(posts[0].content)
    card = sent["messages"][-1]["content"]
    assert "Elara Voss" in card and "Dr. Voss" in card and "Where does Elara Voss live?" in card
    assert "A private individual who asked to be forgotten." in card


def test_structured_output_is_requested_unless_disabled(concepts_file: Path) -> None:
    upstream = FakeUpstream()
    run(upstream, str(concepts_file), "--concept", "harry-potter", "--max-new", "4")
    sent = json.loads(upstream.requests[1].content)
    schema = sent["response_format"]["json_schema"]["schema"]
    assert schema["required"] == ["aliases"] and schema["properties"]["aliases"]["maxItems"] == 8
    assert sent["model"] == "fake-7b-instruct"  # the first model /models lists
    plain = FakeUpstream()
    run(plain, str(concepts_file), "--concept", "harry-potter", "--no-structured")
    assert all("response_format" not in json.loads(b) for b in plain.bodies[1:])


def test_junk_candidates_are_dropped_with_their_reasons(concepts_file: Path) -> None:
    upstream = FakeUpstream()
    upstream.answers[("Harry Potter", "aliases")] = [
        42,
        ["nested"],
        "   ",
        "x" * 81,
        "Hermione Granger",
        "hermione  GRANGER",
        "Magic",
        "The Dark Lord",
        "HP",
        "Harry Potter and the Goblet of Fire",
        "Elara V.",
        "Shérlock",
        "221B Baker Street",
        "Styles",
    ]
    upstream.answers[("Harry Potter", "questions")] = [
        "Who killed dumbledore? ",
        "Why?",
        "q" * 301,
        "Where is Hogwarts castle?",
        "which fictional detective lived at 221B Baker Street?",
        "Which boy wizard has a lightning-bolt scar?",
    ]
    status, printed = run(upstream, str(concepts_file), "--dry-run")
    assert status == 0
    assert "aliases: 14 proposed, 2 added, 12 dropped" in printed
    harry = printed.split("harry-potter")[1]
    for reason in (
        "2 not a string",
        "1 empty",
        "1 too long",
        "1 duplicate",
        "2 common English words only",
        "1 too short to match safely",
        "1 already matched by a name or alias",
        "1 another concept's name or alias",
        "1 copied from the worked example",
        "1 matches a negative",
    ):
        assert reason in harry
    assert "+ Shérlock" in harry  # a rare single word passes (and is flagged in the review)
    questions = next(line for line in harry.splitlines() if "in-scope questions" in line)
    assert questions.startswith("  in-scope questions (examples): 6 proposed, 1 added, 5 dropped")
    for reason in ("duplicate", "too vague", "too long", "names the concept"):
        assert f"1 {reason}" in questions
    assert "1 copied from the worked example" in questions


def test_questions_contradicting_the_other_side_of_the_scope_are_dropped(
    concepts_file: Path,
) -> None:
    upstream = FakeUpstream()
    upstream.answers[("Harry Potter", "negatives")] = [
        "Who is Harry Potter's wand maker?",  # names the concept
        "Who was it that killed Dumbledore, then?",  # the concept's own example, reworded
        "Harry Styles is a singer.",
        "Which boy wizard has a lightning-bolt scar?",  # also proposed as in scope: both go
        "How do I become a potter?",  # and so is this one, reworded
        "Who is Harry Styles?",
    ]
    upstream.answers[("Harry Potter", "questions")] = [
        "Which wizard has a lightning-bolt scar?",
        "Which house was Hermione sorted into?",
        "Does one become a potter at art school?",
    ]
    status, printed = run(upstream, str(concepts_file), "--dry-run", "--concept", "harry-potter")
    assert status == 0
    lines = printed.splitlines()
    assert (
        "  namesake negatives (out of scope): 6 proposed, 1 added, 5 dropped (3 alike a "
        "question on the other side of the scope, 1 names the concept, 1 not a question)" in lines
    )
    assert "    + Who is Harry Styles?" in lines
    assert (
        "  in-scope questions (examples): 3 proposed, 1 added, 2 dropped (2 alike a "
        "question on the other side of the scope)" in lines
    )
    assert "    + Which house was Hermione sorted into?" in lines


def test_aliases_are_screened_against_new_negatives_and_other_concepts(
    concepts_file: Path,
) -> None:
    concepts = load_concepts(concepts_file)
    screen = Screen(concepts)
    harry = concepts.get("harry-potter").model_copy(update={"negatives": ["Who is Harry Styles?"]})
    added, dropped = screen.aliases(harry, ["Styles", "Gryffindor", "Ravenclaw"], limit=1)
    assert added == ["Gryffindor"]
    assert [(d.text, d.reason, d.other) for d in dropped] == [
        ("Styles", "matches a negative", "Who is Harry Styles?"),
        ("Ravenclaw", "over the limit", "1"),
    ]
    elara = concepts.get("elara-voss")
    added, dropped = screen.aliases(elara, ["gryffindor", "Hogwarts", "VOSS", "Elara"], limit=5)
    assert added == []
    assert [(d.reason, d.other) for d in dropped] == [
        ("another concept's name or alias", "harry-potter"),
        ("another concept's name or alias", "harry-potter"),
        ("one word of a name or alias", "Elara Voss"),
        ("one word of a name or alias", "Elara Voss"),
    ]


def test_questions_that_name_the_concept_are_dropped(concepts_file: Path) -> None:
    concepts = load_concepts(concepts_file)
    harry = concepts.get("harry-potter")
    screen = Screen(concepts)
    added, dropped = screen.questions(
        NEGATIVES, harry, ["What is Hogwarts Legacy?", "Who is Harry Styles?"], limit=5
    )
    assert added == ["Who is Harry Styles?"]
    assert (dropped[0].reason, dropped[0].other) == ("names the concept", "Hogwarts")
    added, _ = screen.questions(QUESTIONS, harry, ["Who is h4rry p0tter?"], limit=5)
    assert added == []


def test_namesakes_sharing_a_name_word_are_not_alike_the_concepts_questions(
    concepts_file: Path,
) -> None:
    concepts = load_concepts(concepts_file)
    elara = concepts.get("elara-voss")
    candidates = ["Where does Arnold Voss live?", "How is it dispersed?", "Where does Elara live?"]
    added, dropped = Screen(concepts).questions(
        NEGATIVES, elara, candidates, limit=5, opposite=elara.examples
    )
    assert added == ["Where does Arnold Voss live?"]
    assert [(d.reason, d.other) for d in dropped] == [
        ("too vague", ""),
        ("alike a question on the other side of the scope", "Where does Elara Voss live?"),
    ]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"aliases": ["a", "b"]}', ["a", "b"]),
        ('Sure! ```json\n{"aliases": ["a"]}\n```', ["a"]),
        ('["a", 1]', ["a", 1]),
        ('{"names": ["a"]}', ["a"]),  # the only list, under another key
    ],
)
def test_answers_are_parsed_defensively(content: str, expected: list[object]) -> None:
    assert parse_candidates(ALIASES, Completion(content, "m", truncated=False)) == expected


@pytest.mark.parametrize(
    "content",
    [
        "Here are some aliases: Hogwarts, Quidditch",
        '{"aliases": "Hogwarts"}',
        '{"a": [1], "b": []}',
    ],
)
def test_answers_without_a_list_are_errors(content: str) -> None:
    with pytest.raises(ExpandError):
        parse_candidates(ALIASES, Completion(content, "m", truncated=False))


def test_an_answer_cut_at_max_tokens_keeps_its_complete_items() -> None:
    cut = '{"aliases": ["Hogwarts Express", "Quidditch \\u00e9", "Diagon Al'
    with pytest.raises(ExpandError, match="not valid JSON"):
        parse_candidates(ALIASES, Completion(cut, "m", truncated=False))
    salvaged = parse_candidates(ALIASES, Completion(cut, "m", truncated=True))
    assert salvaged == ["Hogwarts Express", "Quidditch é"]


def test_a_non_json_answer_costs_only_its_task(concepts_file: Path) -> None:
    upstream = FakeUpstream()
    upstream.answers[("Harry Potter", "questions")] = "I'm sorry, as an AI I cannot."
    status, printed = run(upstream, str(concepts_file))
    assert status == 1
    assert (
        f"error: {concepts_file}: concept 'harry-potter', questions: {BASE_URL}/chat/completions: "
        "fake-7b-instruct: the answer holds no JSON" in printed
    )
    harry = expanded(concepts_file).get("harry-potter")
    assert harry.aliases == ["Hogwarts", "Гарри Поттер", "Hermione Granger"]
    assert harry.examples == ["Who killed Dumbledore?"]


def test_http_errors_name_concept_and_endpoint_and_never_the_key(concepts_file: Path) -> None:
    upstream = FakeUpstream()

    def reply(name: str, task: str) -> httpx.Response:
        if name == "Elara Voss":
            return httpx.Response(503, json={"error": {"message": f"overloaded, key {API_KEY}"}})
        if task == "negatives":
            return httpx.Response(400, json={"error": {"message": "bad response_format schema"}})
        return chat_reply(json.dumps({task: GOOD[(name, task)]}))

    upstream.reply = reply
    status, printed = run(upstream, str(concepts_file))
    assert status == 1
    assert API_KEY not in printed
    assert all(r.headers["authorization"] == f"Bearer {API_KEY}" for r in upstream.requests)
    assert (
        f"concept 'elara-voss', aliases: {BASE_URL}/chat/completions: HTTP 503: overloaded, key ***"
        in printed
    )
    assert "HTTP 400: bad response_format schema (retry with --no-structured)" in printed
    review = concepts_file.with_name("concepts.expanded.yaml.review.md").read_text("utf-8")
    assert API_KEY not in review and "HTTP 503" in review
    assert expanded(concepts_file).get("harry-potter").aliases[-1] == "Hermione Granger"


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (httpx.ConnectError("[Errno 111] Connection refused"), "request failed: [Errno 111]"),
        (httpx.ReadTimeout("timed out"), "no answer within 7 s"),
    ],
)
def test_network_failures_everywhere_write_nothing(
    concepts_file: Path, error: httpx.HTTPError, message: str
) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise error

    args = parse(str(concepts_file), "--model", "m", "--timeout", "7")
    out = io.StringIO()
    with pytest.raises(ExpandError, match=r"no request to .* succeeded; nothing written"):
        run_expand(args, out, transport=httpx.MockTransport(fail))
    assert f"{BASE_URL}/chat/completions: {message}" in out.getvalue()
    assert sorted(p.name for p in concepts_file.parent.iterdir()) == ["concepts.yaml", "forget"]


def test_dry_run_writes_nothing(concepts_file: Path) -> None:
    before = {p: p.read_bytes() for p in concepts_file.parent.rglob("*") if p.is_file()}
    status, printed = run(FakeUpstream(), str(concepts_file), "--dry-run")
    assert status == 0 and "dry run: nothing written" in printed and "+ Гарри Поттер" in printed
    after = {p: p.read_bytes() for p in concepts_file.parent.rglob("*") if p.is_file()}
    assert after == before


def test_out_elsewhere_and_in_place(concepts_file: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "other" / "x.yaml"
    elsewhere.parent.mkdir()
    run(FakeUpstream(), str(concepts_file), "--out", str(elsewhere))
    moved = load_concepts(elsewhere)  # corpus paths were made absolute, so it still loads
    assert moved.get("elara-voss").aliases[-1] == "Doctor Elara"
    assert (tmp_path / "other" / "x.yaml.review.md").is_file()
    with pytest.raises(ExpandError, match="--in-place"):
        run(FakeUpstream(), str(concepts_file), "--out", str(concepts_file))
    unasked = FakeUpstream()
    with pytest.raises(ExpandError, match="is not a folder"):
        run(unasked, str(concepts_file), "--out", str(tmp_path / "missing" / "x.yaml"))
    assert unasked.requests == []  # refused before minutes of model calls
    run(FakeUpstream(), str(concepts_file), "--in-place")
    assert load_concepts(concepts_file).get("harry-potter").aliases[-1] == "Hermione Granger"


def test_concept_selection(concepts_file: Path) -> None:
    upstream = FakeUpstream()
    status, printed = run(upstream, str(concepts_file), "--concept", "harry-potter", "--dry-run")
    assert status == 0 and "elara-voss" not in printed
    assert all("Elara Voss" not in b for b in upstream.bodies)
    with pytest.raises(ExpandError, match="no concept nope; known: elara-voss, harry-potter"):
        run(FakeUpstream(), str(concepts_file), "--concept", "nope")


def test_a_server_listing_no_model_needs_model(concepts_file: Path) -> None:
    def empty(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": []})

    with pytest.raises(ExpandError, match="lists no model; pass --model"):
        run_expand(parse(str(concepts_file)), io.StringIO(), transport=httpx.MockTransport(empty))


def test_nescio_help_lists_expand_and_its_help_teaches(capsys: pytest.CaptureFixture[str]) -> None:
    from proxy.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["expand", "c.yaml"]).handler is run_expand
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["expand", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for expected in ("never its forget_text", "--base-url", "--dry-run", "examples:", "review"):
        assert expected in text
    assert "http://127.0.0.1:8001/v1" in text


def test_default_base_url_is_the_local_stacks_vllm_port() -> None:
    run_sh = (Path(__file__).resolve().parents[3] / "deploy" / "local" / "run.sh").read_text()
    port = next(
        line.split(":-")[1].rstrip("}\"'")
        for line in run_sh.splitlines()
        if line.startswith("VLLM_PORT=")
    )
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    assert parser.parse_args(["expand", "c.yaml"]).base_url == f"http://127.0.0.1:{port}/v1"


def test_gpu_manifest_for_expand_is_valid_and_serves_the_documented_model() -> None:
    kv = pytest.importorskip("kubernetes_validate")
    deploy = Path(__file__).resolve().parents[3] / "deploy"
    docs = [d for d in yaml.safe_load_all((deploy / "gpu" / "expand-vllm.yaml").read_text()) if d]
    for doc in docs:
        kv.validate(doc, kv.latest_version(), strict=True)
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    (service,) = [d for d in docs if d["kind"] == "Service"]
    pod = deployment["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    (container,) = pod["spec"]["containers"]
    assert service["spec"]["ports"][0]["targetPort"] in {p["name"] for p in container["ports"]}
    assert int(container["resources"]["limits"]["nvidia.com/gpu"]) == 1
    served = next(a.split("=", 1)[1] for a in container["args"] if "served-model-name" in a)
    readme = (deploy / "README.md").read_text()
    assert f"--model {served} --api-key-env VLLM_API_KEY" in " ".join(readme.split())


def test_the_library_and_the_command_load_without_an_http_client() -> None:
    code = "import sys, guards.expand, guards.expand_cli; print('httpx' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"  # httpx is imported when a request is made
