"""A learned second stage: per-concept evidence features combined by logistic regression.

The first-generation detector compared one number (the best cosine similarity) with a
threshold. That cannot tell "names the target" from "mentions the target's film", nor weigh a
near-name match against corpus similarity. Here each (conversation, concept) pair becomes a
small feature vector (:data:`FEATURES`) and a logistic model turns it into a probability.
A full name or alias is not a feature: it is decisive on its own (the detector sets p = 1), so
the model only learns the hard part, conversations that never name the concept.

The name features come from :mod:`guards.names`: a bare name word ("Bieber was born ...") and a
name word inside another name ("Dakota Johnson" for Don Johnson) pull in opposite directions,
and each is also crossed with corpus similarity.

The shipped :data:`DEFAULT_SCORER` was fitted by ``python -m evals.detection.fit_scorer`` on
RWKU targets 1-50 only (forget probes positive; neighbour and utility probes negative; rows that
name the target left out, see above), so numbers reported on targets 51-100 are out-of-sample.
It was fitted on people; refit it for other kinds of concept (topics, works).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from guards.errors import GuardError

FEATURES = (
    "name_bare",
    "name_embedded",
    "sim_name",
    "sim_corpus",
    "sim_top3",
    "sim_negative",
    "name_bare_x_sim_corpus",
    "name_embedded_x_sim_corpus",
)
Matrix = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class LogisticScorer:
    """``p = sigmoid(weights . features + bias)``; in scope when ``p >= threshold``.

    ``encoder`` names the encoder whose similarities the weights were fitted on ("" when not
    recorded, as in scorer files written before it was): similarities of another encoder have
    another scale, so :meth:`check_encoder` refuses the pairing (the learned detector calls it
    when its list holds a concept the scorer decides, i.e. one not ``match: centroid``).
    """

    weights: tuple[float, ...]
    bias: float
    threshold: float = 0.5
    fitted_on: str = ""
    encoder: str = ""

    def __post_init__(self) -> None:
        if len(self.weights) != len(FEATURES):
            raise GuardError(f"scorer needs {len(FEATURES)} weights ({', '.join(FEATURES)})")
        if not 0.0 < self.threshold < 1.0:
            raise GuardError("scorer threshold must be a probability strictly between 0 and 1")

    def check_encoder(self, encoder: str) -> None:
        """Raise :class:`GuardError` unless this scorer was fitted on ``encoder``'s similarities."""
        if self.encoder and self.encoder != encoder:
            raise GuardError(
                f"the learned scorer was fitted on {self.encoder!r} similarities, this guard "
                f"encodes with {encoder!r}: refit it (python -m evals.detection.fit_scorer "
                f"--encoder {encoder}) and use that file (NESCIO_SCORER_PATH, or --scorer)"
            )

    def probabilities(self, features: Matrix) -> Matrix:
        """One probability per row of ``features`` (shape ``(n, len(FEATURES))``)."""
        logits = features @ np.asarray(self.weights) + self.bias
        probabilities: Matrix = 1.0 / (1.0 + np.exp(-np.clip(logits, -50.0, 50.0)))
        return probabilities

    def to_json(self) -> str:
        return json.dumps(
            {
                "features": list(FEATURES),
                "weights": list(self.weights),
                "bias": self.bias,
                "threshold": self.threshold,
                "fitted_on": self.fitted_on,
                "encoder": self.encoder,
            },
            indent=2,
        )

    @classmethod
    def load(cls, path: Path) -> LogisticScorer:
        """Read a scorer written by :meth:`to_json`; the feature list must match this version."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data["features"] != list(FEATURES):
                raise GuardError(f"{path}: scorer features {data['features']} != {FEATURES}")
            return cls(
                tuple(float(w) for w in data["weights"]),
                float(data["bias"]),
                float(data["threshold"]),
                str(data.get("fitted_on", "")),
                str(data.get("encoder", "")),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise GuardError(f"cannot read scorer {path}: {exc}") from exc


def fit_logistic(
    features: Matrix, labels: NDArray[np.bool_], *, l2: float = 1e-3, iterations: int = 50
) -> tuple[tuple[float, ...], float]:
    """L2-regularised logistic regression by Newton's method; classes weighted to balance.

    Returns ``(weights, bias)``. Balancing keeps the rare class from being ignored when
    negatives (neighbour + utility probes) outnumber positives many times over.
    """
    n, d = features.shape
    if n == 0 or labels.all() or not labels.any():
        raise GuardError("fitting needs both in-scope and out-of-scope examples")
    x = np.hstack([features, np.ones((n, 1))])
    y = labels.astype(np.float64)
    sample = np.where(labels, 0.5 / labels.mean(), 0.5 / (1.0 - labels.mean()))
    beta = np.zeros(d + 1)
    penalty = np.eye(d + 1) * l2 * n
    penalty[d, d] = 0.0
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ beta, -50.0, 50.0)))
        gradient = x.T @ (sample * (p - y)) + penalty @ beta
        hessian = (x * (sample * p * (1 - p))[:, None]).T @ x + penalty
        step = np.linalg.solve(hessian, gradient)
        beta -= step
        if float(np.abs(step).max()) < 1e-8:
            break
    return tuple(float(b) for b in beta[:d]), float(beta[d])


DEFAULT_SCORER = LogisticScorer(
    weights=(1.0459, -0.3832, 1.0432, 3.3119, 5.1961, 0.0000, 0.4231, 0.0571),
    bias=-5.1775,
    threshold=0.91,
    fitted_on="RWKU targets 1-50, all 50 guarded at once; threshold for <=3% neighbour FPR",
    encoder="minilm",
)
