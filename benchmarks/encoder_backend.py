"""The encoder's backends side by side: torch (sentence-transformers) and ONNX Runtime.

In one run, on the same texts, interleaved in blocks of 5 calls so a noisy machine slows both
alike:

* milliseconds per ``encode`` call (wall p50 / p90, and the process's CPU time p50) for one short
  text, a 5-turn chat's turns, 20 sentences, one 2,000-character text;
* the cost model behind :func:`guards.encoder.length_buckets`: a least-squares fit of call time
  to ``per call + per padded token x tokens`` over a grid of batch shapes, and the overhead in
  tokens it implies (``CALL_OVERHEAD_TOKENS`` / ``ONNX_CALL_OVERHEAD_TOKENS``);
* sentences per second encoding RWKU forget-passage sentences in chunks of 256, as
  :func:`guards.guard.build_index` does (skipped with a message when ``--data-dir`` lacks RWKU);
* agreement: cosine between the two backends' vectors for every text above.

``--threads 1,2`` adds one ONNX row per intra-op thread count.

    HF_HUB_OFFLINE=1 python benchmarks/encoder_backend.py --repeats 30 --threads 1,2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from guards.corpus import split_sentences
from guards.encoder import Encoder, SentenceTransformerEncoder
from guards.onnx_encoder import OnnxEncoder, default_threads

REPO = Path(__file__).resolve().parents[1]
SHORT = ["Can you recommend a good pasta recipe for a weeknight dinner?"]
CHAT = [
    "I'm planning a trip to Lisbon next spring.",
    "Which neighbourhoods are good for walking?",
    "What food should I try there?",
    "Is it easy to get to Sintra by train?",
    "How many days would you spend in total?",
]
FILLER = (
    "The committee reviewed the quarterly figures, noted a modest rise in maintenance costs, and "
    "asked the facilities team to prepare a revised schedule for the spring inspections. "
)
LONG = [(FILLER * 12)[:2000]]
SENTENCES = [
    " ".join(FILLER.split()[: 6 + (i * 7) % 23]) + f" (item {i})."  # 8 to 30 words
    for i in range(20)
]
# Calls are interleaved in blocks of BLOCK per backend: right after a torch call its OpenMP
# threads spin for a while, and an ONNX call made then competes with them for the two cores.
BLOCK = 5
CASES = {
    "1 short text": SHORT,
    "5 texts (chat turns)": CHAT,
    "20 sentences": SENTENCES,
    "1 text, 2,000 chars": LONG,
}


def timed(call: Callable[[], object]) -> tuple[float, float]:
    """Wall and CPU milliseconds of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    call()
    return (time.perf_counter() - wall) * 1e3, (time.process_time() - cpu) * 1e3


def per_call(encoders: dict[str, Encoder], texts: list[str], repeats: int) -> dict[str, str]:
    walls: dict[str, list[float]] = {name: [] for name in encoders}
    cpus: dict[str, list[float]] = {name: [] for name in encoders}
    for encoder in encoders.values():
        encoder.encode(texts)
    for _ in range(max(1, repeats // BLOCK)):
        for name, encoder in encoders.items():
            for _ in range(BLOCK):
                wall, cpu = timed(lambda e=encoder: e.encode(texts))  # type: ignore[misc]
                walls[name].append(wall)
                cpus[name].append(cpu)
    cells = {}
    for name in encoders:
        w = sorted(walls[name])
        p90 = w[min(len(w) - 1, int(0.9 * len(w)))]
        cells[name] = (
            f"{statistics.median(w):6.1f} /{p90:6.1f} ({statistics.median(cpus[name]):5.1f})"
        )
    return cells


def fit_costs(encoders: dict[str, Encoder], repeats: int) -> dict[str, tuple[float, float]]:
    """Per-call and per-padded-token milliseconds: least squares over the median wall time of
    each of a grid of batch shapes (medians, so a stall of the machine does not tilt the fit)."""
    words = FILLER.split() * 20
    shapes = [(n, w) for n in (1, 4, 16) for w in (4, 24, 90)]
    points: dict[str, list[tuple[int, float]]] = {name: [] for name in encoders}
    for n, w in shapes:
        texts = [" ".join(words[i : i + w]) for i in range(n)]
        tokens = n * max(_token_counts(encoders, texts))
        times: dict[str, list[float]] = {name: [] for name in encoders}
        for _ in range(max(1, repeats // BLOCK // 2)):
            for name, encoder in encoders.items():
                for _ in range(BLOCK):
                    times[name].append(timed(lambda e=encoder, t=texts: e.encode(t))[0])  # type: ignore[misc]
        for name in encoders:
            points[name].append((tokens, statistics.median(times[name])))
    fits = {}
    for name, rows in points.items():
        x = np.array([[1.0, t] for t, _ in rows])
        y = np.array([ms for _, ms in rows])
        (call, token), *_ = np.linalg.lstsq(x, y, rcond=None)
        fits[name] = (float(call), float(token))
    return fits


def _token_counts(encoders: dict[str, Encoder], texts: list[str]) -> list[int]:
    for encoder in encoders.values():
        if isinstance(encoder, OnnxEncoder | SentenceTransformerEncoder):
            return encoder.token_counts(texts)
    return [len(t.split()) for t in texts]


def rwku_sentences(data_dir: Path, count: int) -> list[str] | None:
    passages = data_dir / "rwku" / "passages.jsonl"
    if not passages.is_file():
        return None
    sentences: list[str] = []
    with passages.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                sentences.extend(s for s in split_sentences(json.loads(line)["text"]) if s)
            if len(sentences) >= count:
                break
    return sentences[:count]


def bulk(encoder: Encoder, texts: Sequence[str], chunk: int = 256) -> tuple[float, np.ndarray]:
    started = time.perf_counter()
    vectors = np.concatenate(
        [encoder.encode(texts[i : i + chunk]) for i in range(0, len(texts), chunk)]
    )
    return len(texts) / (time.perf_counter() - started), vectors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per cell")
    parser.add_argument("--threads", default="", help="extra ONNX rows, e.g. 1,2")
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--bulk", type=int, default=5000, help="RWKU sentences to encode (0: skip)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    started = time.perf_counter()
    torch_encoder = SentenceTransformerEncoder()
    torch_load = time.perf_counter() - started
    started = time.perf_counter()
    onnx_encoder = OnnxEncoder()
    onnx_load = time.perf_counter() - started
    encoders: dict[str, Encoder] = {
        "torch": torch_encoder,
        f"onnx ({default_threads()} threads)": onnx_encoder,
    }
    for threads in sorted({int(t) for t in args.threads.split(",") if t.strip()}):
        if threads != default_threads():
            encoders[f"onnx ({threads} threads)"] = OnnxEncoder(threads=threads)
    import torch

    print(
        f"CPU cores: {os.cpu_count()}, torch threads: {torch.get_num_threads()}, load: torch "
        f"{torch_load:.1f} s, onnx {onnx_load:.1f} s (export cached in {onnx_encoder.folder})"
    )
    print(
        f"\nms per call: wall p50 / p90 (CPU p50), {args.repeats} calls each, interleaved by {BLOCK}"
    )
    names = list(encoders)
    print(f"{'texts':<22}" + "".join(f"{name:>28}" for name in names))
    agreement: list[float] = []
    for case, texts in CASES.items():
        cells = per_call(encoders, texts, args.repeats)
        print(f"{case:<22}" + "".join(f"{cells[name]:>28}" for name in names))
        agreement.extend((torch_encoder.encode(texts) * onnx_encoder.encode(texts)).sum(axis=1))

    print("\ncost model (ms = per call + per token x padded tokens, least squares):")
    for name, (call, token) in fit_costs(encoders, args.repeats).items():
        print(
            f"  {name:<20} {call:6.2f} ms per call, {token:.4f} ms per token: overhead ~{call / token:.0f} tokens"
        )

    sentences = rwku_sentences(args.data_dir, args.bulk) if args.bulk else None
    if sentences is None:
        print(f"\nbulk: skipped (no RWKU passages under {args.data_dir / 'rwku'}, or --bulk 0)")
    else:
        print(f"\nbulk: {len(sentences)} RWKU sentences in chunks of 256 (as an index build)")
        vectors = {}
        for name, encoder in encoders.items():
            rate, vectors[name] = bulk(encoder, sentences)
            print(f"  {name:<20} {rate:7.1f} sentences/s")
        agreement.extend((vectors["torch"] * vectors[names[1]]).sum(axis=1))
    cosines = np.array(agreement)
    print(
        f"\nagreement torch vs onnx over {len(cosines)} texts: cosine min {cosines.min():.7f}, "
        f"mean {cosines.mean():.7f}, max |1-cos| {np.abs(1 - cosines).max():.1e}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
