"""What grouping one check's texts by length saves, next to encoding them in one call.

For every request of the guard-latency mix (``benchmarks/guard_latency.py``) it takes the texts
the detector encodes in one check (whole turns, joined turns, sentences of multi-sentence
turns: :func:`guards.detector.segments_of`) and times, in the same run, the encoder as shipped
(:func:`guards.encoder.length_buckets`: calls grouped by token length) against one call for all
of them (every text padded to the longest). It also prints the largest difference between the
two ways' vectors, which should be float noise. Prints p50/p99 in milliseconds.

    HF_HUB_OFFLINE=1 python benchmarks/encoder_batching.py --repeats 30
"""

from __future__ import annotations

import argparse
import os
import sys
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from guard_latency import percentiles, requests

from guards.detector import segments_of
from guards.encoder import SentenceTransformerEncoder, length_buckets
from guards.guard import chat_turns


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per cell")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    bucketed = SentenceTransformerEncoder(bucketed=True)
    one_call = SentenceTransformerEncoder(bucketed=False)
    print(f"{'request':<20} {'texts':>5} {'calls':>5} {'way':<16} {'p50':>8} {'p99':>8} max|diff|")
    for name, messages in requests().items():
        texts = [s.text for s in segments_of(chat_turns(messages))]
        calls = len(length_buckets(bucketed.token_counts(texts))) if len(texts) > 1 else 1
        diff = float(np.abs(bucketed.encode(texts) - one_call.encode(texts)).max())
        for way, encoder in (("one call", one_call), ("length buckets", bucketed)):
            p50, _, p99, _ = percentiles(partial(encoder.encode, texts), args.repeats)
            print(
                f"{name:<20} {len(texts):>5} {calls:>5} {way:<16} {p50:>8.1f} {p99:>8.1f} {diff:.1e}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
