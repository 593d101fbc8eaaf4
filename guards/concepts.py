"""Forbidden-concept lists: the YAML schema, its validation, and loading with precise errors.

A concept list is data, not code. Each concept says what is forbidden (name, aliases, a short
description, in-scope example prompts, optional forget-corpus files or inline forget passages),
what to do when a conversation falls in its scope (the policy) and how sure the detector must be
(the threshold, fixed or fitted by ``nescio calibrate``). A file that does not validate raises
:class:`~guards.errors.ConceptFileError` naming the file, line and field.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from guards.errors import ConceptFileError

DEFAULT_REFUSAL = "I'm sorry, but I can't help with that topic."
DEFAULT_THRESHOLD = 0.6
_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class Policy(StrEnum):
    """What the proxy does with a conversation inside a concept's scope."""

    REFUSE = "refuse"
    ICUL = "icul"
    INSTRUCT = "instruct"


class Calibration(BaseModel):
    """What ``nescio calibrate`` fitted for one concept, and how well it held up on held-out data."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold: float = Field(ge=-1.0, le=1.0)
    encoder: str
    precision: float = Field(ge=0.0, le=1.0)
    recall: float = Field(ge=0.0, le=1.0)
    n_positive: int = Field(ge=0)
    n_negative: int = Field(ge=0)
    split: str = "held-out"
    fitted_at: datetime | None = None


class Direction(BaseModel):
    """A fitted scoring direction of a ``match: centroid`` concept (see :mod:`guards.direction`).

    It replaces the plain centroid: a unit vector in the encoder's space, so scores stay cosines
    in [-1, 1]. ``encoder`` is the encoder it was fitted with (a guard with another encoder
    refuses to use it); ``n_background`` the number of out-of-scope texts it was whitened on.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    encoder: str
    n_background: int = Field(ge=1)
    shrinkage: float = Field(ge=0.0, le=1.0)
    vector: list[float] = Field(min_length=1)
    fitted_at: datetime | None = None

    @field_validator("vector")
    @classmethod
    def _unit_vector(cls, values: list[float]) -> list[float]:
        if not all(math.isfinite(v) for v in values):
            raise ValueError("entries must be finite numbers")
        if abs(math.sqrt(sum(v * v for v in values)) - 1.0) > 1e-3:
            raise ValueError("must be a unit vector (as written by calibration)")
        return values


class Concept(BaseModel):
    """One forbidden concept. ``examples`` are in-scope prompts; ``negatives`` are hard out-of-scope ones.

    ``forget_corpus`` files (plain text, or JSONL with a ``text`` field) are resolved relative to
    the concept file; ``forget_text`` holds such passages inline. Their sentences feed the index
    but are never shown to anyone: they are the forbidden facts themselves.

    A concept that came from an untrusted source (the admin API, see ``validate_concepts``'s
    ``confined``) is confined: its forget-corpus files resolve only inside the corpus folder it
    was validated against, wherever the list it joins keeps its own files. That folder is private
    state, never read from input and never dumped.

    ``match`` says how the embedding detector measures similarity. ``nearest`` (default): to the
    closest single piece of evidence, discounted by the hard negatives; right for a person or a
    work, where one corpus sentence can pin a question down. ``centroid``: to the mean of the
    name, description and examples, negatives ignored; right for a broad topic described by
    examples (hazardous domains), where the nearest example is noise and the common direction
    generalises. Aliases are decisive either way. A centroid concept may carry a fitted
    ``direction`` (written by calibration) that replaces the plain mean.
    """

    model_config = ConfigDict(extra="forbid")

    id: str
    name: str = Field(min_length=1)
    aliases: list[str] = Field(default_factory=list)
    description: str = ""
    examples: list[str] = Field(default_factory=list)
    negatives: list[str] = Field(default_factory=list)
    forget_corpus: list[Path] = Field(default_factory=list)
    forget_text: list[str] = Field(default_factory=list)
    match: Literal["nearest", "centroid"] = "nearest"
    policy: Policy | None = None
    threshold: float | Literal["calibrated"] | None = None
    refusal: str | None = None
    calibration: Calibration | None = None
    direction: Direction | None = None
    _confined: bool = PrivateAttr(default=False)
    _corpus_root: Path | None = PrivateAttr(default=None)

    @field_validator("id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        if not _ID_PATTERN.match(value):
            raise ValueError("must be 1-128 letters, digits, '_', '.', '-' and start alnum")
        return value

    @field_validator("aliases", "examples", "negatives", "forget_text")
    @classmethod
    def _no_blank_strings(cls, values: list[str]) -> list[str]:
        if any(not v.strip() for v in values):
            raise ValueError("entries must be non-empty strings")
        return values

    @field_validator("threshold")
    @classmethod
    def _threshold_range(cls, value: float | str | None) -> float | str | None:
        if isinstance(value, float) and not -1.0 <= value <= 1.0:
            raise ValueError("must be between -1 and 1 (cosine similarity) or 'calibrated'")
        return value

    @model_validator(mode="after")
    def _direction_needs_centroid(self) -> Concept:
        if self.direction is not None and self.match != "centroid":
            raise ValueError("'direction' is only used with 'match: centroid'")
        return self

    @property
    def surface_forms(self) -> list[str]:
        """The name and every alias: the strings alias matching looks for."""
        return [self.name, *self.aliases]


class Defaults(BaseModel):
    """List-wide defaults that a concept inherits unless it sets its own."""

    model_config = ConfigDict(extra="forbid")

    policy: Policy = Policy.REFUSE
    threshold: float = Field(default=DEFAULT_THRESHOLD, ge=-1.0, le=1.0)
    refusal: str = DEFAULT_REFUSAL


class ConceptList(BaseModel):
    """A whole concept file. Ids are unique; order is preserved for display only."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    defaults: Defaults = Field(default_factory=Defaults)
    concepts: list[Concept] = Field(default_factory=list)
    base_dir: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _unique_ids(self) -> ConceptList:
        seen: set[str] = set()
        for concept in self.concepts:
            if concept.id in seen:
                raise ValueError(f"duplicate concept id {concept.id!r}")
            seen.add(concept.id)
        return self

    def get(self, concept_id: str) -> Concept:
        for concept in self.concepts:
            if concept.id == concept_id:
                return concept
        raise KeyError(concept_id)

    def subset(self, ids: Sequence[str]) -> ConceptList:
        """The same list (defaults, corpus folder) holding only ``ids``, in that order."""
        return ConceptList(
            defaults=self.defaults, concepts=[self.get(cid) for cid in ids], base_dir=self.base_dir
        )

    def policy_of(self, concept: Concept) -> Policy:
        return concept.policy or self.defaults.policy

    def refusal_of(self, concept: Concept) -> str:
        return concept.refusal or self.defaults.refusal

    def threshold_of(self, concept: Concept) -> float:
        """The threshold in force: explicit value, else the fitted one, else the list default."""
        if isinstance(concept.threshold, float):
            return concept.threshold
        if concept.calibration is not None:
            return concept.calibration.threshold
        return self.defaults.threshold

    def corpus_path(self, path: Path) -> Path:
        """Where a trusted (file-loaded) concept's forget-corpus file is: relative to the list's file."""
        return path if path.is_absolute() or self.base_dir is None else self.base_dir / path

    def corpus_file(self, concept: Concept, path: Path) -> Path:
        """Where ``path``, one of ``concept``'s forget-corpus files, is: for a confined concept
        inside its corpus folder (else a ConceptFileError), otherwise as ``corpus_path`` says.

        Confinement is checked here on every read, not only at validation, so a link in the
        corpus folder changed since then cannot point a rebuild outside it.
        """
        if concept._confined:
            return _confine(concept._corpus_root, path)
        return self.corpus_path(path)

    def content_hash(self) -> str:
        """A digest of everything that shapes the index: concepts (inline forget passages
        included) and forget-corpus file bytes."""
        digest = hashlib.sha256(self.model_dump_json(exclude={"base_dir"}).encode())
        for concept in self.concepts:
            for path in concept.forget_corpus:
                resolved = self.corpus_file(concept, path)
                digest.update(resolved.read_bytes() if resolved.exists() else b"<missing>")
        return digest.hexdigest()

    def public_dump(self) -> dict[str, Any]:
        """The list as JSON for an HTTP client (the admin API): inline forget passages are
        replaced by ``forget_text_count``, so they never leave the process; forget-corpus paths
        are shown as given. Sent back unchanged, a concept with inline passages is rejected
        (unknown field) rather than silently stripped of them."""
        data = self.model_dump(mode="json", exclude={"base_dir"}, exclude_none=True)
        for concept in data["concepts"]:
            count = len(concept.pop("forget_text"))
            if count:
                concept["forget_text_count"] = count
        return data

    def to_yaml(self) -> str:
        data = self.model_dump(mode="json", exclude={"base_dir"}, exclude_none=True)
        for concept in data["concepts"]:
            if "direction" in concept:  # hundreds of numbers: wrapped lines, not one per line
                concept["direction"]["vector"] = _FlowList(concept["direction"]["vector"])
        return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


class _FlowList(list[float]):
    """A list written in YAML flow style (``[a, b, ...]``)."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(
    _FlowList, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data, True)
)


def load_concepts(path: str | Path) -> ConceptList:
    """Read and validate a concept file; forget-corpus paths resolve relative to it."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConceptFileError(file, f"cannot read file: {exc.strerror}") from exc
    return parse_concepts(text, source=file, base_dir=file.resolve().parent)


def parse_concepts(
    text: str, *, source: str | Path = "<concepts>", base_dir: Path | None = None
) -> ConceptList:
    """Validate concept-list YAML (or JSON, a YAML subset) text; errors carry line and field."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConceptFileError(source, f"invalid YAML: {problem}", line=line) from exc
    return validate_concepts(data, source=source, base_dir=base_dir, root=root)


def validate_concepts(
    data: Any,
    *,
    source: str | Path = "<concepts>",
    base_dir: Path | None = None,
    root: yaml.Node | None = None,
    confined: bool = False,
) -> ConceptList:
    """Validate already-parsed data (e.g. a JSON admin request); ``root`` adds line numbers.

    ``confined`` is for data from an untrusted source (the admin API): naming a forget-corpus
    file must not become a way to read the host's files. Each path must then be relative and
    resolve, symlinks followed, to a file inside ``base_dir``; with no ``base_dir`` no file is
    accepted (``forget_text`` carries passages inline). Unconfined paths are the operator's own
    configuration and resolve relative to ``base_dir`` (the concept file's folder) or as given.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConceptFileError(source, "top level must be a mapping with a 'concepts' list", line=1)
    _check_unique_ids(data, source, root)
    try:
        concepts = ConceptList.model_validate({**data, "base_dir": base_dir})
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(first["loc"])
        raise ConceptFileError(
            source,
            first["msg"],
            line=_line_of(root, loc),
            field=_field_name(data, loc),
        ) from exc
    if confined:
        for concept in concepts.concepts:
            concept._confined = True
            concept._corpus_root = base_dir.resolve() if base_dir is not None else None
    _check_corpus_files(concepts, source, root)
    return concepts


def _check_unique_ids(data: dict[str, Any], source: str | Path, root: yaml.Node | None) -> None:
    """Duplicate ids, reported at the second occurrence (the model validator cannot say where)."""
    items = data.get("concepts")
    seen: set[str] = set()
    for i, item in enumerate(items if isinstance(items, list) else []):
        concept_id = item.get("id") if isinstance(item, dict) else None
        if isinstance(concept_id, str) and concept_id in seen:
            raise ConceptFileError(
                source,
                f"duplicate concept id {concept_id!r}",
                line=_line_of(root, ("concepts", i, "id")),
                field=f"concepts[{concept_id}].id",
            )
        if isinstance(concept_id, str):
            seen.add(concept_id)


def _check_corpus_files(concepts: ConceptList, source: str | Path, root: yaml.Node | None) -> None:
    for i, concept in enumerate(concepts.concepts):
        for j, path in enumerate(concept.forget_corpus):
            try:
                found = concepts.corpus_file(concept, path).is_file()
                reason = f"forget-corpus file not found: {path}"
            except ConceptFileError as exc:
                found, reason = False, exc.reason
            if not found:
                raise ConceptFileError(
                    source,
                    reason,
                    line=_line_of(root, ("concepts", i, "forget_corpus", j)),
                    field=f"concepts[{concept.id}].forget_corpus[{j}]",
                )


def _confine(folder: Path | None, path: Path) -> Path:
    """``path`` resolved inside ``folder`` (already resolved), or a ConceptFileError saying why not.

    Containment is decided before existence, so the answer never tells whether a file outside
    the folder exists; messages carry the path as given, never what is in a file.
    """
    if folder is None:
        reason = "no corpus folder is configured for files; send the passages in 'forget_text'"
        raise ConceptFileError(path, reason)
    if path.is_absolute():
        raise ConceptFileError(path, "must be a path relative to the corpus folder")
    try:
        resolved = (folder / path).resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # NUL byte, symlink loop
        raise ConceptFileError(path, "is not a usable path in the corpus folder") from exc
    if not resolved.is_relative_to(folder):
        raise ConceptFileError(path, "resolves outside the corpus folder")
    return resolved


def _field_name(data: dict[str, Any], loc: tuple[Any, ...]) -> str:
    """Render a pydantic location as ``concepts[<id>].field`` so users find it at a glance."""
    parts: list[str] = []
    node: Any = data
    for key in loc:
        if not isinstance(node, dict | list):
            break  # the rest of the location names union members, not fields
        if isinstance(key, int):
            label = str(key)
            if isinstance(node, list) and key < len(node) and isinstance(node[key], dict):
                label = str(node[key].get("id", key))
            parts[-1:] = [f"{parts[-1] if parts else ''}[{label}]"]
        else:
            parts.append(str(key))
        node = _child(node, key)
    return ".".join(parts)


def _child(node: Any, key: Any) -> Any:
    if isinstance(node, dict):
        return node.get(key)
    if isinstance(node, list) and isinstance(key, int) and key < len(node):
        return node[key]
    return None


def _line_of(root: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the deepest YAML node along ``loc`` that exists."""
    node = root
    line = None if root is None else root.start_mark.line + 1
    for key in loc:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.value == key:
                    line = key_node.start_mark.line + 1
                    child = value_node
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            child = node.value[key]
            line = child.start_mark.line + 1
        if child is None:
            break
        node = child
    return line
