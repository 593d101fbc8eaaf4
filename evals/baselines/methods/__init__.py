"""Unlearning methods: each module defines one loss and registers itself by name.

Importing this package registers every built-in method in `METHODS`.
"""

from evals.baselines.methods import (  # noqa: F401  (imported for registration)
    grad_ascent,
    grad_diff,
    idk,
    npo,
    rmu,
    simnpo,
)
from evals.baselines.methods.base import METHODS, Batch, UnlearningMethod, create_method

__all__ = ["METHODS", "Batch", "UnlearningMethod", "create_method"]
