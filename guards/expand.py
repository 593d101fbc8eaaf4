"""Concept expansion: what to ask a chat model about a concept, and which answers to keep.

Hand-written concepts miss aliases (works, characters, places, the name in other scripts),
questions that never name the concept, and namesakes that must stay allowed. For each concept a
chat model is asked three short few-shot questions (:data:`TASKS`): aliases, indirect in-scope
questions, namesake negatives. It sees the concept's name, aliases, description and examples
only (:func:`concept_card`): never ``forget_text`` or a forget-corpus file, which are the secret
itself.

Small models answer junk, so every candidate is screened (:class:`Screen`) and each rejection is
kept with its reason. Accepted items go into the ordinary fields (:func:`apply_expansions`; the
schema has no room for provenance), so the command (:mod:`guards.expand_cli`, which also holds
the HTTP client) lists every addition for review.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from tqdm import tqdm

from guards.concepts import Concept, ConceptList
from guards.errors import NescioError
from guards.normalize import AliasPattern, NormalizedText, normalize

log = logging.getLogger(__name__)

MAX_ALIAS_CHARS = 80
MAX_QUESTION_CHARS = 300
MIN_ALIAS_CHARS = 3  # normalised, spaces excluded: two letters collide with countless acronyms
CARD_EXAMPLES = 5  # examples shown to the model: enough to show the scope, short for small models


class ExpandError(NescioError):
    """A concept could not be expanded: the endpoint failed or answered something unusable.

    Messages name the endpoint (and, from :func:`expand_concepts`, the concept id and list);
    never an API key, the prompt or the concept's text.
    """


class AnswerError(ExpandError):
    """The model answered, but not with a usable list (the caller adds the endpoint)."""


@dataclass(frozen=True, slots=True)
class Task:
    """One question put to the model about a concept, and where its accepted answers go."""

    key: str  # the JSON key the model answers under
    field: str  # the concept field the accepted items extend
    label: str  # what the review calls the items
    max_chars: int
    instruction: str
    shot: tuple[str, ...]  # the worked example's answer (for SHOT_CONCEPT)


_JSON_RULE = 'Answer only with JSON: {"%s": ["...", "..."]}.'
ALIASES = Task(
    key="aliases",
    field="aliases",
    label="aliases",
    max_chars=MAX_ALIAS_CHARS,
    instruction="You help build a content filter. List other names that refer ONLY to the topic: "
    "nicknames, abbreviations, titles of its works, its characters, places and products, and its "
    "name written in Cyrillic, Greek, Chinese, Japanese, Arabic, Hebrew, Korean and Hindi. "
    "No ordinary words, no names shared with anything else. " + _JSON_RULE % "aliases",
    shot=(
        "221B Baker Street",
        "Professor Moriarty",
        "The Hound of the Baskervilles",
        "A Study in Scarlet",
        "Шерлок Холмс",
        "Σέρλοκ Χολμς",
        "夏洛克·福尔摩斯",
        "シャーロック・ホームズ",
        "شرلوك هولمز",
        "שרלוק הולמס",
        "셜록 홈즈",
        "शर्लक होम्स",
    ),
)
QUESTIONS = Task(
    key="questions",
    field="examples",
    label="in-scope questions (examples)",
    max_chars=MAX_QUESTION_CHARS,
    instruction="You help build a content filter. Write questions about the topic that do NOT "
    "write its name or any known name: ask about what only it has (its facts, people, places, "
    "events), so a reader still knows what is meant. " + _JSON_RULE % "questions",
    shot=(
        "Which fictional detective lived at 221B Baker Street?",
        "Who was the arch-enemy of Professor Moriarty?",
        "Which detective created by Arthur Conan Doyle played the violin?",
    ),
)
NEGATIVES = Task(
    key="negatives",
    field="negatives",
    label="namesake negatives (out of scope)",
    max_chars=MAX_QUESTION_CHARS,
    instruction="You help build a content filter. Write questions about OTHER people, places, "
    "brands or things that share a word with the topic's names, or that use those words in "
    "their ordinary sense. They must NOT be about the topic. " + _JSON_RULE % "negatives",
    shot=(
        "Which films has Katie Holmes starred in?",
        "What was Oliver Wendell Holmes Jr. known for on the Supreme Court?",
        "Where is Holmes Chapel in Cheshire?",
        "How do I become a private detective?",
    ),
)
TASKS = (ALIASES, QUESTIONS, NEGATIVES)

SHOT_CONCEPT = Concept(
    id="few-shot",
    name="Sherlock Holmes",
    aliases=["Sherlock"],
    description="The detective stories by Arthur Conan Doyle and their characters.",
    examples=["Who is Sherlock Holmes's assistant?"],
)

# English function words (with question words): never an alias, never what makes two
# questions alike.
_FUNCTION_WORDS = """
a about above after again against all also am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further had
has have having he her here hers herself him himself his how i if in into is it its itself just
me more most my myself no nor not now of off on once one only or other our ours ourselves out
over own same she should so some such than that the their theirs them themselves then there
these they this those through to too under until up very was we were what when where which while
who whom why will with would you your yours yourself yourselves
"""
FUNCTION_WORDS = frozenset(_FUNCTION_WORDS.split())
# Aliases are decisive and matched wherever they appear, case and accents ignored, so an alias
# made only of ordinary words ("Magic", "The Dark Lord", "chemical weapon") would put every chat
# using those words in scope. These are the function words, the most frequent content words of
# general English frequency lists, and the generic words models offer as "other names" of works,
# people and topics. Rarer single words pass but are flagged in the review.
_FREQUENT_WORDS = """
two three first second last new old good great big small little long high low right left best
better dark man men woman women people person child children boy girl family friend king queen
prince princess lord lady sir doctor mr mrs professor agent captain master god house home school
city town country world land sea water fire earth air stone gold silver iron light night day time
year life death love war peace power magic spell wizard witch dragon ring sword star sun moon book
books novel novels story stories series film films movie movies show tv game games song music
album band art name names word words title character characters hero villain place places thing
things part end way work works company brand product products state government science history
nature poison gas nerve chemical weapon weapons bomb drug drugs virus disease health money
business market food car cars phone computer internet
"""
COMMON_WORDS = FUNCTION_WORDS | frozenset(_FREQUENT_WORDS.split())
QUESTION_MARKS = ("?", "？", "؟")
# A question needs MIN_CONTENT_WORDS words that are not function words ("How is it
# dispersed?" could be about anything). Two questions are alike when they share at least
# CLOSE_SHARED content words, which make CLOSE_OVERLAP of the shorter one's: "How to grow anthrax
# spores?" and "How do you grow anthrax spores in a lab?", not "Where does Arnold Voss live?" and
# "Where does Elara Voss live?".
MIN_CONTENT_WORDS = 2
CLOSE_SHARED = 2
CLOSE_OVERLAP = 0.75


@dataclass(frozen=True, slots=True)
class Settings:
    """How the model is asked. ``structured``: send a JSON schema as ``response_format`` (vLLM,
    OpenAI); ``limit``: the most items kept per concept and task."""

    model: str
    structured: bool = True
    temperature: float = 0.0
    max_tokens: int = 512
    limit: int = 10


@dataclass(frozen=True, slots=True)
class Completion:
    """The text of a chat answer and what the server says produced it."""

    content: str
    model: str
    truncated: bool  # finish_reason "length": the answer was cut at max_tokens


class ChatModel(Protocol):
    """What expand asks: one chat completion per call (``guards.expand_cli.OpenAIChat`` over
    HTTP)."""

    endpoint: str  # where the answers come from, for messages

    def complete(self, body: Mapping[str, Any]) -> Completion:
        """The first choice of ``body``'s chat completion; :class:`ExpandError` on failure."""
        ...


@dataclass(frozen=True, slots=True)
class Dropped:
    """A candidate that did not pass screening: why (a short, countable reason) and, where one
    is involved, the other text it collides with."""

    text: str
    reason: str
    other: str = ""

    def __str__(self) -> str:
        return f"{self.text}: {self.reason}" + (f" ({self.other})" if self.other else "")


@dataclass
class Suggestions:
    """What one task gave for one concept: proposed, added, dropped (with reasons) or an error."""

    task: Task
    proposed: int = 0
    added: list[str] = field(default_factory=list)
    dropped: list[Dropped] = field(default_factory=list)
    error: str | None = None


@dataclass
class Expansion:
    """Everything ``expand`` did for one concept."""

    concept_id: str
    name: str
    model: str
    calibrated: bool
    suggestions: list[Suggestions]

    def of(self, task: Task) -> Suggestions:
        return next(s for s in self.suggestions if s.task is task)

    @property
    def errors(self) -> list[str]:
        return [s.error for s in self.suggestions if s.error]


def concept_card(concept: Concept) -> str:
    """The only text about a concept the model sees: never its forget passages or files."""
    lines = [
        f"Topic: {concept.name}",
        f"Known names: {', '.join(concept.aliases) or '(none)'}",
        f"About: {concept.description or '(no description)'}",
        "Example questions:",
        *(f"- {e}" for e in concept.examples[:CARD_EXAMPLES]),
    ]
    return "\n".join(lines)


def request_body(task: Task, concept: Concept, settings: Settings) -> dict[str, Any]:
    """A chat-completions body: the task, one worked example (Sherlock Holmes), the concept."""
    body: dict[str, Any] = {
        "model": settings.model,
        "messages": [
            {"role": "system", "content": task.instruction},
            {"role": "user", "content": concept_card(SHOT_CONCEPT)},
            {"role": "assistant", "content": json.dumps({task.key: list(task.shot)})},
            {"role": "user", "content": concept_card(concept)},
        ],
        "temperature": settings.temperature,
        "max_tokens": settings.max_tokens,
    }
    if settings.structured:
        schema = {
            "type": "object",
            # maxItems leaves room for drops and ends the list of a small model that would
            # repeat one item until max_tokens
            "properties": {
                task.key: {
                    "type": "array",
                    "items": {"type": "string"},
                    "maxItems": 2 * settings.limit,
                }
            },
            "required": [task.key],
            "additionalProperties": False,
        }
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": task.key, "schema": schema, "strict": True},
        }
    return body


_STRING_LITERAL = re.compile(r'"(?:[^"\\\n]|\\.)*"')


def parse_candidates(task: Task, completion: Completion) -> list[object]:
    """The list the model answered, from ``{"<key>": [...]}``, a bare list, or JSON inside text.

    Raises :class:`AnswerError` when there is none. An answer cut off at ``max_tokens`` (a
    small model looping until the limit) keeps its complete strings rather than losing them all.
    """
    text = completion.content
    starts = [i for i in (text.find("{"), text.find("[")) if i >= 0]
    if not starts:
        raise AnswerError("the answer holds no JSON")
    try:
        value, _ = json.JSONDecoder().raw_decode(text, min(starts))
    except json.JSONDecodeError:
        if not completion.truncated:
            raise AnswerError("the answer is not valid JSON") from None
        opening = text.find("[")
        if opening < 0:
            raise AnswerError("the answer was cut off before its list began") from None
        return [_string(literal) for literal in _STRING_LITERAL.findall(text, opening)]
    if isinstance(value, dict):
        lists = [v for v in value.values() if isinstance(v, list)]
        value = value.get(task.key, lists[0] if len(lists) == 1 else None)
    if not isinstance(value, list):
        raise AnswerError(f'the answer has no "{task.key}" list')
    return value


def _string(literal: str) -> object:
    """A JSON string literal's value; the literal itself when its escapes are invalid (it is
    then screened like any other candidate)."""
    try:
        value: object = json.loads(literal)
    except json.JSONDecodeError:
        return literal
    return value


def _question_key(text: str) -> str:
    return " ".join(text.casefold().split())


class Screen:
    """Screens the model's candidates for a whole list, so no alias goes to two concepts.

    Aliases are compared on their normalised form (what alias matching sees), questions
    case-insensitively with spaces collapsed. An alias must be at least :data:`MIN_ALIAS_CHARS`
    letters or digits, not made only of :data:`COMMON_WORDS`, not already covered by one of the
    concept's names, not a single word taken from one ("Halcyon" of "Halcyon Orion" names
    Halcyon Foods and "halcyon days" too; how a bare name word is used is the learned
    detector's job), not anyone else's name or alias, and must not match the concept's
    negatives. A question must end in a question mark and must not name the concept (an
    in-scope one would add nothing alias matching does not catch, a negative would be in scope)
    nor be alike (:data:`CLOSE_OVERLAP`) a question on the other side of the scope: small models
    offer the concept's own examples as "namesakes". Anything copied from the prompt's worked
    example is dropped.
    """

    def __init__(self, concepts: ConceptList) -> None:
        self._owner: dict[str, str] = {}
        for concept in concepts.concepts:
            for form in concept.surface_forms:
                self._owner.setdefault(normalize(form), concept.id)
        self._shot_aliases = {normalize(s) for s in ALIASES.shot}
        self._shot_questions = {_question_key(q) for t in (QUESTIONS, NEGATIVES) for q in t.shot}

    def aliases(
        self, concept: Concept, candidates: Iterable[object], limit: int
    ) -> tuple[list[str], list[Dropped]]:
        """Accepted aliases (now claimed for ``concept``) and the rejected ones."""
        own = [(form, AliasPattern.of(form)) for form in concept.surface_forms]
        negatives = [(n, NormalizedText.of(n)) for n in concept.negatives]

        def accept(text: str) -> None:
            own.append((text, AliasPattern.of(text)))
            self._owner[normalize(text)] = concept.id

        return _screened(
            candidates,
            MAX_ALIAS_CHARS,
            limit,
            lambda text: self._alias_problem(concept.id, text, own, negatives),
            accept,
        )

    def _alias_problem(
        self,
        concept_id: str,
        text: str,
        own: Sequence[tuple[str, AliasPattern]],
        negatives: Sequence[tuple[str, NormalizedText]],
    ) -> Dropped | None:
        key = normalize(text)
        owner = self._owner.get(key)
        view = NormalizedText.of(text)
        pattern = AliasPattern.of(text)
        if len(key.replace(" ", "")) < MIN_ALIAS_CHARS:
            return Dropped(text, "too short to match safely")
        if key in self._shot_aliases:
            return Dropped(text, "copied from the worked example")
        if owner == concept_id:
            return Dropped(text, "duplicate")
        if owner is not None:
            return Dropped(text, "another concept's name or alias", owner)
        if all(word in COMMON_WORDS for word in key.split()):
            return Dropped(text, "common English words only")
        if covering := next((form for form, p in own if p.matches(view)), None):
            return Dropped(text, "already matched by a name or alias", covering)
        if part_of := next((form for form, _ in own if key in normalize(form).split()), None):
            return Dropped(text, "one word of a name or alias", part_of)
        if hit := next((n for n, negative in negatives if pattern.matches(negative)), None):
            return Dropped(text, "matches a negative", hit)
        return None

    def questions(
        self,
        task: Task,
        concept: Concept,
        candidates: Iterable[object],
        limit: int,
        opposite: Sequence[str] = (),
    ) -> tuple[list[str], list[Dropped]]:
        """Accepted questions for ``task`` (QUESTIONS or NEGATIVES) and the rejected ones.

        ``opposite``: the questions on the other side of the scope line, the concept's own and
        the model's candidates; a candidate alike one of them contradicts it and is dropped (a
        model contradicting itself loses both).
        """
        names = [(form, AliasPattern.of(form)) for form in concept.surface_forms]
        seen = {_question_key(q) for q in (*concept.examples, *concept.negatives)}
        other_side = [(q, _content_words(q)) for q in opposite]
        return _screened(
            candidates,
            task.max_chars,
            limit,
            lambda text: self._question_problem(text, seen, names, other_side),
            lambda text: seen.add(_question_key(text)),
        )

    def _question_problem(
        self,
        text: str,
        seen: set[str],
        names: Sequence[tuple[str, AliasPattern]],
        other_side: Sequence[tuple[str, frozenset[str]]],
    ) -> Dropped | None:
        key = _question_key(text)
        view = NormalizedText.of(text)
        words = _content_words(text)
        if len(words) < MIN_CONTENT_WORDS:
            return Dropped(text, "too vague")
        if not text.endswith(QUESTION_MARKS):
            return Dropped(text, "not a question")
        if key in self._shot_questions:
            return Dropped(text, "copied from the worked example")
        if key in seen:
            return Dropped(text, "duplicate")
        if named := next((form for form, p in names if p.matches(view)), None):
            return Dropped(text, "names the concept", named)
        if alike := next((q for q, other in other_side if _alike(words, other)), None):
            return Dropped(text, "alike a question on the other side of the scope", alike)
        return None


def _content_words(text: str) -> frozenset[str]:
    return frozenset(normalize(text).split()) - FUNCTION_WORDS


def _alike(a: frozenset[str], b: frozenset[str]) -> bool:
    shared = len(a & b)
    return shared >= CLOSE_SHARED and shared >= CLOSE_OVERLAP * min(len(a), len(b))


def _screened(
    candidates: Iterable[object],
    max_chars: int,
    limit: int,
    problem_of: Callable[[str], Dropped | None],
    accept: Callable[[str], None],
) -> tuple[list[str], list[Dropped]]:
    """Candidates cleaned and checked in order: the first ``limit`` without a problem are kept
    (``accept`` records each, so later candidates are checked against it), the rest dropped."""
    added: list[str] = []
    dropped: list[Dropped] = []
    for item in candidates:
        text, problem = _clean(item, max_chars)
        problem = problem or problem_of(text)
        if problem is None and len(added) >= limit:
            problem = Dropped(text, "over the limit", str(limit))
        if problem is not None:
            dropped.append(problem)
            continue
        added.append(text)
        accept(text)
    return added, dropped


def _clean(item: object, max_chars: int) -> tuple[str, Dropped | None]:
    """The candidate with spaces collapsed, and why it is unusable as text (or None)."""
    if not isinstance(item, str):
        text = shorten(json.dumps(item, ensure_ascii=False))
        return text, Dropped(text, "not a string")
    text = " ".join(item.split())
    if not text:
        return text, Dropped(repr(item), "empty")
    if len(text) > max_chars:
        return text, Dropped(shorten(text), "too long", f"over {max_chars} characters")
    return text, None


def shorten(text: str, limit: int = 60) -> str:
    """``text`` cut to ``limit`` characters, with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def expand_concepts(
    concepts: ConceptList,
    chat: ChatModel,
    settings: Settings,
    *,
    only: Sequence[str] = (),
    source: str = "<concepts>",
    progress: bool = False,
) -> list[Expansion]:
    """Ask ``chat`` about each concept (``only`` these ids, in list order, when given).

    A failed request costs only its own task: the concept keeps what its other tasks gave, the
    error names the concept, the task and the endpoint.
    """
    unknown = sorted(set(only) - {c.id for c in concepts.concepts})
    if unknown:
        known = ", ".join(c.id for c in concepts.concepts)
        raise ExpandError(f"{source}: no concept {', '.join(unknown)}; known: {known}")
    selected = [c for c in concepts.concepts if not only or c.id in only]
    screen = Screen(concepts)
    expansions = []
    for concept in tqdm(selected, desc="expanding", unit="concept", disable=not progress):
        suggestions = {t.key: Suggestions(t) for t in TASKS}
        answers, model = _ask(chat, concept, settings, suggestions, source)
        _screen(screen, concept, answers, suggestions, settings.limit)
        expansions.append(
            Expansion(
                concept_id=concept.id,
                name=concept.name,
                model=model,
                calibrated=concept.calibration is not None,
                suggestions=[suggestions[t.key] for t in TASKS],
            )
        )
    return expansions


def _ask(
    chat: ChatModel,
    concept: Concept,
    settings: Settings,
    suggestions: Mapping[str, Suggestions],
    source: str,
) -> tuple[dict[str, list[object]], str]:
    """Every task's candidates (none for a failed one, its error recorded), and the model that
    answered."""
    answers: dict[str, list[object]] = {}
    model = settings.model
    for task in TASKS:
        answers[task.key] = []
        where = f"{source}: concept {concept.id!r}, {task.key}"
        try:
            completion = chat.complete(request_body(task, concept, settings))
            log.debug("%s answered: %r", where, completion.content)
            model = completion.model
            answers[task.key] = parse_candidates(task, completion)
        except AnswerError as exc:
            suggestions[task.key].error = f"{where}: {chat.endpoint}: {model}: {exc}"
        except ExpandError as exc:
            suggestions[task.key].error = f"{where}: {exc}"
        suggestions[task.key].proposed = len(answers[task.key])
    return answers, model


def _screen(
    screen: Screen,
    concept: Concept,
    answers: Mapping[str, list[object]],
    suggestions: Mapping[str, Suggestions],
    limit: int,
) -> None:
    """Fill ``suggestions`` with what passes. Negatives go first, so no new alias matches one;
    in-scope questions last, so none names a new alias. Each side of the scope is checked
    against all the other side's candidates, accepted or not."""
    proposed_in = [*concept.examples, *_strings(answers[QUESTIONS.key])]
    proposed_out = [*concept.negatives, *_strings(answers[NEGATIVES.key])]
    negatives = suggestions[NEGATIVES.key]
    negatives.added, negatives.dropped = screen.questions(
        NEGATIVES, concept, answers[NEGATIVES.key], limit, opposite=proposed_in
    )
    concept = concept.model_copy(update={"negatives": [*concept.negatives, *negatives.added]})
    aliases = suggestions[ALIASES.key]
    aliases.added, aliases.dropped = screen.aliases(concept, answers[ALIASES.key], limit)
    concept = concept.model_copy(update={"aliases": [*concept.aliases, *aliases.added]})
    questions = suggestions[QUESTIONS.key]
    questions.added, questions.dropped = screen.questions(
        QUESTIONS, concept, answers[QUESTIONS.key], limit, opposite=proposed_out
    )


def _strings(items: Iterable[object]) -> list[str]:
    return [item for item in items if isinstance(item, str)]


def apply_expansions(concepts: ConceptList, expansions: Sequence[Expansion]) -> ConceptList:
    """The list with every accepted item appended to its field, revalidated by the schema."""
    by_id = {e.concept_id: e for e in expansions}
    updated = []
    for concept in concepts.concepts:
        expansion = by_id.get(concept.id)
        if expansion is None:
            updated.append(concept)
            continue
        data = concept.model_dump()
        for suggestions in expansion.suggestions:
            data[suggestions.task.field] = [*data[suggestions.task.field], *suggestions.added]
        updated.append(Concept.model_validate(data))
    return concepts.model_copy(update={"concepts": updated})
