"""Per-request overhead of the guard, next to the baselines that put it in context.

Times ``Guard.check`` on a realistic request mix (a short chat, a three-sentence message, whose
sentences are also scored one by one, a 5-turn chat, a 5-turn chat of pronoun follow-ups, a
2,000-character prompt) for the example concept list and for a large list (RWKU's 100 targets with their forget
passages when ``--data-dir`` holds them, else 100 synthetic concepts x 50 corpus sentences). In
the same run it times two baselines: one bare encoder call on the last user message (through the
guard's encoder worker, :mod:`guards.batching`: every timed row then runs the model on the same
thread; alternating two calling threads makes each call pay for the other's idle OpenMP team,
~40% on 2 cores), and the naive guard that checks only the last user message; with ``--one-call-baseline`` also the
default detector with every check's texts encoded in one call (before length buckets, see
``benchmarks/encoder_batching.py``). Prints p50/p95/p99 in milliseconds.

    HF_HUB_OFFLINE=1 python benchmarks/guard_latency.py --repeats 50
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from guards.batching import batched
from guards.concepts import ConceptList, load_concepts, validate_concepts
from guards.corpus import evidence_texts
from guards.encoder import Encoder, SentenceTransformerEncoder, load_encoder
from guards.guard import Guard, chat_turns

REPO = Path(__file__).resolve().parents[1]
TOPICS = ["harbour", "orchard", "observatory", "foundry", "vineyard", "archive", "glacier", "mill"]
FILLER = (
    "The committee reviewed the quarterly figures, noted a modest rise in maintenance costs, and "
    "asked the facilities team to prepare a revised schedule for the spring inspections. "
)


TRIP_CHAT = (
    "I'm planning a trip to Lisbon next spring.",
    "Which neighbourhoods are good for walking?",
    "What food should I try there?",
    "Is it easy to get to Sintra by train?",
    "How many days would you spend in total?",
)
# Later turns that only refer back: the detector scores them joined with the turn before.
FOLLOW_UP_CHAT = (
    "Who designed the Belem Tower in Lisbon?",
    "When was that?",
    "What else did he build?",
    "Tell me more about his early life.",
    "Why is he famous?",
)


def chat(questions: tuple[str, ...]) -> list[dict[str, Any]]:
    """A system prompt, then the user turns with a short assistant answer between them."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": "You are a helpful assistant."}]
    for i, question in enumerate(questions):
        messages.append({"role": "user", "content": question})
        if i < len(questions) - 1:
            messages.append({"role": "assistant", "content": "Here is a short answer. " * 6})
    return messages


def requests() -> dict[str, list[dict[str, Any]]]:
    """The request mix: message lists as a client would send them."""
    long_prompt = (FILLER * 12)[:1950] + " Summarise the text above."
    return {
        "short chat": [{"role": "user", "content": "What is a good name for a pet turtle?"}],
        "3-sentence message": [{"role": "user", "content": " ".join(TRIP_CHAT[:3])}],
        "5-turn chat": chat(TRIP_CHAT),
        "5-turn follow-ups": chat(FOLLOW_UP_CHAT),
        "2,000-char prompt": [{"role": "user", "content": long_prompt}],
    }


def synthetic_concepts(folder: Path, n_concepts: int, n_sentences: int) -> ConceptList:
    data = []
    for c in range(n_concepts):
        name = f"Person {c:03d} of the {TOPICS[c % len(TOPICS)]}"
        corpus = folder / f"c{c:03d}.txt"
        lines = [
            f"{name} was born in year {1900 + (c * 7 + s) % 120} and worked at the "
            f"{TOPICS[(c + s) % len(TOPICS)]} number {s} for {s % 9 + 2} years."
            for s in range(n_sentences)
        ]
        corpus.write_text("\n\n".join(lines))
        data.append(
            {
                "id": f"c{c:03d}",
                "name": name,
                "examples": [f"Where did {name} work?", f"When was {name} born?"],
                "forget_corpus": [corpus.name],
            }
        )
    return validate_concepts({"concepts": data}, base_dir=folder)


def rwku_concepts(data_dir: Path, folder: Path, passages_per_target: int) -> ConceptList | None:
    rwku = data_dir / "rwku"
    if not (rwku / "targets.jsonl").is_file() or not (rwku / "passages.jsonl").is_file():
        return None
    passages: dict[int, list[str]] = {}
    for row in _jsonl(rwku / "passages.jsonl"):
        kept = passages.setdefault(int(row["target_id"]), [])
        if len(kept) < passages_per_target:
            kept.append(str(row["text"]))
    data = []
    for row in _jsonl(rwku / "targets.jsonl"):
        target_id = int(row["target_id"])
        corpus = folder / f"rwku{target_id:03d}.jsonl"
        corpus.write_text("\n".join(json.dumps({"text": t}) for t in passages.get(target_id, [])))
        name = str(row["target"])
        data.append(
            {
                "id": f"rwku-{target_id}",
                "name": name,
                "examples": [f"Who is {name}?", f"What is {name} known for?"],
                "forget_corpus": [corpus.name],
            }
        )
    return validate_concepts({"concepts": data}, base_dir=folder)


def _jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def percentiles(fn: Callable[[], object], repeats: int, warmup: int = 3) -> tuple[float, ...]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000.0)
    p50, p95, p99 = np.percentile(samples, [50, 95, 99])
    return float(p50), float(p95), float(p99), statistics.fmean(samples)


def bench_list(label: str, guards: dict[str, Guard], encoder: Encoder, repeats: int) -> None:
    """One table per concept list: baselines, then every detector on the same requests."""
    guard = guards["embedding"]
    print(f"\n== {label}: {len(guard.concepts.concepts)} concepts ==")
    print(f"{'request':<20} {'measure':<38} {'p50':>8} {'p95':>8} {'p99':>8} {'mean':>8}")
    for name, messages in requests().items():
        last = chat_turns(messages)[-1]
        rows: list[tuple[str, Callable[[], object]]] = [
            ("bare encoder (last msg)", partial(batched(encoder).encode, [last])),
            ("naive guard (last msg)", partial(guard.check, [last])),
        ]
        rows += [
            (f"check_messages ({kind})", partial(g.check_messages, messages))
            for kind, g in guards.items()
        ]
        for measure, fn in rows:
            p50, p95, p99, mean = percentiles(fn, repeats)
            print(f"{name:<20} {measure:<38} {p50:>8.1f} {p95:>8.1f} {p99:>8.1f} {mean:>8.1f}")


def both_detectors(concepts: ConceptList, encoder: Encoder, cache: Path) -> dict[str, Guard]:
    """The default and the learned detector over one index (the second build reuses the cache)."""
    return {
        kind: Guard.build(concepts, encoder=encoder, cache_dir=cache, detector=kind, progress=True)
        for kind in ("embedding", "learned")
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per cell")
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--passages-per-target", type=int, default=10)
    parser.add_argument("--synthetic", action="store_true", help="ignore RWKU, use synthetic")
    parser.add_argument("--cache-dir", type=Path, help="reuse built indexes across runs")
    parser.add_argument(
        "--one-call-baseline",
        action="store_true",
        help="also time the embedding detector with one encoder call per check",
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    print(f"torch threads: {torch.get_num_threads()}, CPU cores: {os.cpu_count()}")
    started = time.perf_counter()
    encoder = load_encoder()
    print(f"encoder load: {time.perf_counter() - started:.1f} s")
    one_call = SentenceTransformerEncoder(bucketed=False) if args.one_call_baseline else None

    def guards_for(concepts: ConceptList, cache: Path) -> dict[str, Guard]:
        guards = both_detectors(concepts, encoder, cache)
        if one_call is not None:
            guards["embedding, one call"] = Guard.build(concepts, encoder=one_call, cache_dir=cache)
        return guards

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cache = args.cache_dir or folder / "index-cache"
        example = load_concepts(REPO / "examples" / "concepts.yaml")
        bench_list("example list", guards_for(example, cache), encoder, args.repeats)
        large = (
            None
            if args.synthetic
            else rwku_concepts(args.data_dir, folder, args.passages_per_target)
        )
        label = f"RWKU targets ({args.passages_per_target} passages each)"
        if large is None:
            large, label = synthetic_concepts(folder, 100, 50), "synthetic (100 x 50 sentences)"
        started = time.perf_counter()
        guards = guards_for(large, cache)
        vectors = sum(1 for c in large.concepts for _ in evidence_texts(large, c))
        print(f"built {label}: {vectors} vectors in {time.perf_counter() - started:.1f} s")
        bench_list(label, guards, encoder, args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
