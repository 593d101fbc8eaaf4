"""The contract every unlearning method implements, and the typed registry of methods."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import torch
from pydantic import BaseModel, ConfigDict, ValidationError

from evals.baselines.data import QAExample
from evals.baselines.errors import BaselineError, UnknownMethodError
from evals.baselines.formatting import TokenBatch


@dataclass(frozen=True)
class Batch:
    """One training step's data: the `main` batch (the forget set when unlearning, the training
    set when fine-tuning) and, for methods that keep utility, a retain batch."""

    main: TokenBatch
    retain: TokenBatch | None = None

    def retain_or_raise(self) -> TokenBatch:
        if self.retain is None:
            raise BaselineError("this method needs a retain set (--retain)")
        return self.retain


class MethodParams(BaseModel):
    """Hyper-parameters of a method; unknown keys are rejected so typos fail loudly."""

    model_config = ConfigDict(extra="forbid", frozen=True)


P = TypeVar("P", bound=MethodParams)


class UnlearningMethod(ABC, Generic[P]):
    """An unlearning objective: only the loss; the shared loop does the training.

    `needs_reference` methods receive a frozen copy of the starting model; `needs_retain`
    methods receive a retain batch on every step. `prepare_forget` may rewrite the forget
    examples once before training (refusal tuning swaps in "I don't know" answers).
    """

    name: ClassVar[str]
    Params: ClassVar[type[MethodParams]] = MethodParams
    needs_reference: ClassVar[bool] = False
    needs_retain: ClassVar[bool] = False

    def __init__(self, params: P, reference: Any | None = None) -> None:
        if self.needs_reference and reference is None:
            raise BaselineError(f"method '{self.name}' needs a frozen reference model")
        self.params = params
        self.reference = reference

    def prepare_forget(
        self, examples: list[QAExample], *, data_dir: Path | None, seed: int
    ) -> list[QAExample]:
        """Return the forget examples to train on; the default keeps them unchanged."""
        return examples

    @abstractmethod
    def loss(self, model: Any, batch: Batch) -> torch.Tensor:
        """The scalar to minimise for this step; lowering it must make the model forget."""


METHODS: dict[str, type[UnlearningMethod[Any]]] = {}
M = TypeVar("M", bound=type[UnlearningMethod[Any]])


def register(cls: M) -> M:
    """Class decorator adding a method to `METHODS` under its `name`."""
    if cls.name in METHODS:
        raise BaselineError(f"unlearning method '{cls.name}' registered twice")
    METHODS[cls.name] = cls
    return cls


def create_method(
    name: str, params: Mapping[str, object] | None = None, reference: Any | None = None
) -> UnlearningMethod[Any]:
    """Instantiate a registered method with validated hyper-parameters."""
    cls = METHODS.get(name)
    if cls is None:
        raise UnknownMethodError(f"unknown method {name!r}; choose from {sorted(METHODS)}")
    try:
        typed = cls.Params(**dict(params or {}))
    except ValidationError as exc:
        raise BaselineError(f"bad parameters for method '{name}': {exc}") from exc
    return cls(typed, reference)
