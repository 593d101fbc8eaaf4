"""The sentence encoder on ONNX Runtime: the torch model's vectors at a fraction of the cost per call.

A call through sentence-transformers on torch costs ~12 ms before the first token on 2 CPU cores
(Python module dispatch, ~200 small operators, OpenMP wake-ups); the guard makes one to a few
calls per request. Here the model is exported once with ``torch.onnx`` (mean pooling and L2
normalisation inside the graph) and run by one ``InferenceSession`` fed by the ``tokenizers``
fast tokenizer: one native call per batch. (ONNX Runtime's transformer optimizer, which fuses
attention, layer norms and GELUs, made calls 5-12% slower on this 2-core AMD EPYC, measured side
by side, so the graph is left to the session's own optimisations.)

The export is cached on disk (:func:`cache_root`) next to a ``meta.json`` recording the source
model's files, the export version and the torch vectors of a few probe texts. Every load encodes
the probes again and compares: a missing, stale, corrupt or disagreeing export is rebuilt (with a
log line saying why), and an export that does not reproduce torch's vectors is refused, so a
calibrated threshold never meets a vector of another scale. Export needs torch, sentence-
transformers and ``onnx``; loading an existing export needs only onnxruntime and tokenizers.

    python -m guards.onnx_encoder            # export ahead of time (an image build, an install)
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from guards.encoder import (
    DEFAULT_ENCODER,
    FairLock,
    Vectors,
    bundled_minilm,
    length_buckets,
)
from guards.errors import GuardError

log = logging.getLogger(__name__)

# Bump when the exported graph or meta.json changes shape: older exports are then rebuilt.
EXPORT_VERSION = 2
# What one more call costs on this backend, in padded tokens (``benchmarks/encoder_backend.py``,
# 2 cores: ~0.6 ms per call vs ~0.15 ms per token with 2 threads on a quiet machine, ~4 tokens;
# 10-20 tokens under load; torch: ~9.4 ms vs ~0.2 ms, ~46 tokens). Only the grouping of one
# check's texts depends on it, never the vectors.
ONNX_CALL_OVERHEAD_TOKENS = 8
# Up to this many texts a call is cut by length_buckets (a check's texts); past it (an index
# build) texts are sorted by length and cut every ``batch_size``: 16 encoded ~10% more sentences
# per second than 32 and ~50% more than 128 (less padding, smaller working set).
BUCKETED_UP_TO = 64
MIN_AGREEMENT = 0.9999  # cosine between this backend's vector and torch's, per probe text
# Probe texts, checked at export against torch and at every load against the stored vectors:
# short and long, padded in one batch with each other, accents, other scripts, odd whitespace.
PROBES = (
    "Who wrote Carrie?",
    "  Can you recommend a good pasta recipe for a weeknight dinner?  ",
    "Héllo wörld: naïve café, 日本語のテキスト, русский текст.",
    "What is the capital of Peru, and what happens to Ned Stark in the first season? " * 12,
    "",
)
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")  # what an exportable model may take


def cache_root() -> Path:
    """Where exports live: ``NESCIO_ENCODER_CACHE``, else ``$XDG_CACHE_HOME/nescio/encoders``
    (``~/.cache/nescio/encoders``)."""
    explicit = os.environ.get("NESCIO_ENCODER_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "nescio" / "encoders"


def default_threads() -> int:
    """ONNX Runtime intra-op threads: ``NESCIO_ENCODER_THREADS``, else one per core, at most 4
    (MiniLM gains nothing past that)."""
    explicit = os.environ.get("NESCIO_ENCODER_THREADS", "").strip()
    if explicit:
        if not explicit.isdigit() or int(explicit) < 1:
            raise GuardError(f"NESCIO_ENCODER_THREADS={explicit!r}: expected a positive integer")
        return int(explicit)
    return max(1, min(4, os.cpu_count() or 1))


class OnnxEncoder:
    """A sentence-transformers model exported to ONNX and run on ONNX Runtime's CPU provider.

    Same contract and same vectors as :class:`guards.encoder.SentenceTransformerEncoder` (cosine
    ≥ 0.9999 per text, checked at every load); calls are served one at a time in arrival order
    (:class:`~guards.encoder.FairLock`), each on ``threads`` intra-op threads.
    """

    def __init__(
        self,
        model: str = DEFAULT_ENCODER,
        *,
        cache_dir: Path | None = None,
        threads: int | None = None,
        batch_size: int = 16,
        bucketed: bool = True,
    ) -> None:
        self.name = model
        self._threads = threads or default_threads()
        self.folder = export_folder(model, cache_dir)
        self._session, self._tokenizer, meta = _load_or_export(model, self.folder, self._threads)
        self.dim = int(meta["dim"])
        self._pad_id = int(meta["pad_id"])
        self._batch_size = batch_size
        self._bucketed = bucketed
        self._lock = FairLock()

    def encode(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            ids = [e.ids for e in self._tokenizer.encode_batch(list(texts))]
            if self._bucketed and 1 < len(ids) <= BUCKETED_UP_TO:
                groups = length_buckets([len(row) for row in ids], ONNX_CALL_OVERHEAD_TOKENS)
            else:
                order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
                groups = [
                    order[i : i + self._batch_size] for i in range(0, len(order), self._batch_size)
                ]
            if len(groups) == 1:
                return self._run(ids)
            out = np.empty((len(ids), self.dim), dtype=np.float32)
            for group in groups:
                out[group] = self._run([ids[i] for i in group])
            return out

    def token_counts(self, texts: list[str]) -> list[int]:
        """Tokens per text as the model sees it (special tokens included, truncated)."""
        return [len(e.ids) for e in self._tokenizer.encode_batch(texts)]

    def _run(self, rows: list[list[int]]) -> Vectors:
        return _run(self._session, rows, self._pad_id)


def _run(session: Any, rows: list[list[int]], pad_id: int) -> Vectors:
    """One forward pass: token rows padded to the longest, unit vectors out."""
    longest = max(len(row) for row in rows)
    input_ids = np.full((len(rows), longest), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), longest), dtype=np.int64)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    (vectors,) = session.run(None, {"input_ids": input_ids, "attention_mask": mask})
    return np.ascontiguousarray(vectors, dtype=np.float32)


def export_folder(model: str, cache_dir: Path | None = None) -> Path:
    """The cache folder of ``model``'s export; its name changes when the source files change."""
    source = Path(bundled_minilm() if model == DEFAULT_ENCODER else model)
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.is_file())
        stamp = [
            (str(p.relative_to(source)), p.stat().st_size, p.stat().st_mtime_ns) for p in files
        ]
    else:  # a hub name: the export is keyed on the name alone
        stamp = []
    key = json.dumps([EXPORT_VERSION, model, str(source), stamp])
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in model)[-60:]
    return (cache_dir or cache_root()) / f"{slug}-{digest}"


@dataclass
class _Loaded:
    session: Any
    tokenizer: Any
    meta: dict[str, Any]


def _load_or_export(model: str, folder: Path, threads: int) -> tuple[Any, Any, dict[str, Any]]:
    found = _check(folder, threads)
    if not isinstance(found, _Loaded):
        found = _export_and_load(model, folder, threads)
    return found.session, found.tokenizer, found.meta


def _export_and_load(model: str, folder: Path, threads: int) -> _Loaded:
    started = time.perf_counter()
    try:
        with _export_lock(folder):  # worker processes starting together export once
            found = _check(folder, threads)
            if isinstance(found, _Loaded):
                return found
            log.info("encoder %s: building the ONNX export in %s (%s)", model, folder, found)
            export(model, folder)
    except OSError as exc:  # a read-only cache: export for this process only
        scratch = Path(tempfile.mkdtemp(prefix="nescio-onnx-"))
        log.warning(
            "encoder %s: cannot write %s (%s: %s); exporting to %s for this process only "
            "(set NESCIO_ENCODER_CACHE to a writable folder, or export ahead of time)",
            model,
            folder,
            type(exc).__name__,
            exc,
            scratch,
        )
        folder = scratch / folder.name
        export(model, folder)
    loaded = _check(folder, threads)
    if not isinstance(loaded, _Loaded):
        raise GuardError(f"encoder {model!r}: the fresh ONNX export does not load ({loaded})")
    log.info("encoder %s: ONNX export ready in %.1f s", model, time.perf_counter() - started)
    return loaded


@contextmanager
def _export_lock(folder: Path) -> Iterator[None]:
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _check(folder: Path, threads: int) -> _Loaded | str:
    """The loaded export in ``folder``, or why it cannot be used."""
    meta_file = folder / "meta.json"
    if not meta_file.is_file():
        return "no export yet"
    try:
        meta = json.loads(meta_file.read_text())
        if meta.get("version") != EXPORT_VERSION:
            return f"export version {meta.get('version')}, want {EXPORT_VERSION}"
        session = _session(folder / "model.onnx", threads)
        tokenizer = _tokenizer(folder / "tokenizer.json")
        expected = np.asarray(meta["probes"], dtype=np.float32)
    except Exception as exc:  # onnxruntime and tokenizers raise their own types for bad files
        return f"unreadable export: {type(exc).__name__}: {exc}"[:300]
    loaded = _Loaded(session, tokenizer, meta)
    got = _probe_vectors(loaded)
    if got.shape != expected.shape:
        return f"probe vectors of shape {got.shape}, stored {expected.shape}"
    worst = float((got * expected).sum(axis=1).min())
    if not worst >= MIN_AGREEMENT:
        return f"probe vectors disagree with the stored ones (cosine {worst:.6f})"
    return loaded


def _probe_vectors(loaded: _Loaded) -> Vectors:
    rows = [e.ids for e in loaded.tokenizer.encode_batch(list(PROBES))]
    return _run(loaded.session, rows, int(loaded.meta["pad_id"]))


def _session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle threads sleep instead of spinning: the proxy's event loop shares these cores.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _tokenizer(path: Path) -> Any:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()  # rows are padded per call, to the longest of that call
    return tokenizer


def export(model: str, folder: Path) -> None:
    """Export ``model`` to ``folder`` (replacing what is there) and check it against torch.

    Raises :class:`GuardError` when the model cannot be exported or its export does not give
    torch's vectors, and ``OSError`` when ``folder`` cannot be written.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        _export_into(model, work)
        loaded = _check(work, default_threads())
        if not isinstance(loaded, _Loaded):
            raise GuardError(f"encoder {model!r}: ONNX export rejected: {loaded}")
        work.chmod(0o755)  # mkdtemp makes it private; an image built as root serves another user
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(work, folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _export_into(model: str, work: Path) -> dict[str, Any]:
    """Write model.onnx, tokenizer.json and meta.json into ``work``."""
    if model == DEFAULT_ENCODER:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import torch
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise GuardError(
            f"exporting {model!r} to ONNX needs torch and sentence-transformers"
        ) from exc
    source = bundled_minilm() if model == DEFAULT_ENCODER else model
    try:
        st: Any = SentenceTransformer(
            source, device="cpu", model_kwargs={"attn_implementation": "eager"}
        )
    except Exception as exc:  # the library raises many types (OSError, ValueError, HF errors)
        raise GuardError(f"cannot load encoder {model!r}: {type(exc).__name__}") from exc
    st.eval()
    preprocess = getattr(st, "preprocess", None) or st.tokenize  # renamed in v6
    features = {k for k, v in preprocess(["probe"]).items() if isinstance(v, torch.Tensor)}
    if not {"input_ids", "attention_mask"} <= features <= {*_INPUTS}:
        raise GuardError(f"encoder {model!r}: inputs {sorted(features)} are not supported on ONNX")
    backend = getattr(st.tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise GuardError(f"encoder {model!r} has no fast tokenizer; use the torch backend")
    graph = _graph(st, "token_type_ids" in features)
    sample = preprocess(["a probe sentence", "a longer probe sentence, padded with the other"])
    plain = work / "exported.onnx"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes on shape arithmetic; checked by the probes
        expected = st.encode(
            list(PROBES), normalize_embeddings=True, convert_to_numpy=True, batch_size=64
        )
        torch.onnx.export(
            graph,
            (sample["input_ids"], sample["attention_mask"]),
            str(plain),
            input_names=["input_ids", "attention_mask"],
            output_names=["sentence_embedding"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "tokens"},
                "attention_mask": {0: "batch", 1: "tokens"},
                "sentence_embedding": {0: "batch"},
            },
            opset_version=17,
            dynamo=False,
        )
    limit = st.get_max_seq_length()
    backend.no_padding()
    if limit is not None:
        backend.enable_truncation(max_length=int(limit))
    else:
        backend.no_truncation()
    backend.save(str(work / "tokenizer.json"))
    meta: dict[str, Any] = {
        "version": EXPORT_VERSION,
        "model": model,
        "dim": int(expected.shape[1]),
        "pad_id": int(st.tokenizer.pad_token_id or 0),
        "max_seq_length": limit,
        "probes": np.asarray(expected, dtype=np.float32).tolist(),
    }
    (work / "meta.json").write_text(json.dumps(meta))
    os.replace(plain, work / "model.onnx")
    return meta


def _graph(st: Any, token_types: bool) -> Any:
    """sentence-transformers' modules (transformer, pooling, normalise) as one traceable module
    of ``(input_ids, attention_mask)``; token types, where the model takes them, are zeros (one
    text per row)."""
    import torch

    class Graph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.st = st

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
            features = {"input_ids": input_ids, "attention_mask": attention_mask}
            if token_types:
                features["token_type_ids"] = torch.zeros_like(input_ids)
            vectors = self.st(features)["sentence_embedding"]
            return torch.nn.functional.normalize(vectors, p=2.0, dim=1)

    return Graph().eval()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Export the guard's encoder to ONNX ahead of time."
    )
    parser.add_argument("--encoder", default=DEFAULT_ENCODER, help="model name or path")
    parser.add_argument("--cache-dir", type=Path, help="default: NESCIO_ENCODER_CACHE or ~/.cache")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    encoder = OnnxEncoder(args.encoder, cache_dir=args.cache_dir)
    print(encoder.folder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
