"""How fast detection-only evaluation checks probes: plain ``Guard.check`` vs pre-encoded.

    HF_HUB_OFFLINE=1 python benchmarks/detect_throughput.py --targets 1-10 --n 300

Builds a guard over RWKU targets (index cached), then checks the same level-2 and neighbour
probes twice: once the way the proxy does (each check encodes its own text), once with every
text encoded up front in batches (the path ``nescio eval detect`` takes). Prints ms per probe,
wall and CPU seconds; numbers depend on the machine and its load, which is printed too.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from evals.concept_sources import rwku as rwku_concepts
from evals.concept_sources import write_concepts
from evals.loaders import load_probes, parse_targets
from evals.settings import EvalSettings
from guards.detector import segments_of
from guards.encoder import load_encoder
from guards.guard import Guard
from guards.memo_encoder import MemoEncoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="1-10")
    parser.add_argument("--n", type=int, default=300, help="probes to check")
    parser.add_argument("--data-dir", type=Path, default=EvalSettings().data_dir)
    parser.add_argument("--work", type=Path, default=Path(".nescio/bench-detect"))
    args = parser.parse_args()
    targets = parse_targets(args.targets)
    concepts = write_concepts(
        rwku_concepts.build(args.data_dir, targets, Path("forget_corpus")),
        args.work / "concepts.yaml",
    )
    probes = []
    for spec in ("rwku:forget_level2", "rwku:neighbor_level2"):
        probes += load_probes(spec, data_dir=args.data_dir, targets=targets)
    texts = [p.prompt for p in probes[: args.n]]
    encoder = load_encoder()
    cache = args.work / "cache"
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; {len(texts)} probes")

    guard = Guard.build(concepts, encoder=encoder, cache_dir=cache)
    started, cpu = time.perf_counter(), time.process_time()
    plain = [guard.check([t]).action for t in texts]
    _report("Guard.check, one text at a time", started, cpu, len(texts))

    started, cpu = time.perf_counter(), time.process_time()
    memo = MemoEncoder(encoder)
    memo.prefetch(s.text for t in texts for s in segments_of([t]))
    fast = Guard.build(concepts, encoder=memo, cache_dir=cache)
    batched = [fast.check([t]).action for t in texts]
    _report("pre-encoded in batches, then check", started, cpu, len(texts))
    print(f"identical decisions: {plain == batched}")


def _report(label: str, started: float, cpu: float, n: int) -> None:
    wall = time.perf_counter() - started
    used = time.process_time() - cpu
    print(f"{label:<40} {1000 * wall / n:7.2f} ms/probe  wall {wall:6.1f} s  cpu {used:6.1f} s")


if __name__ == "__main__":
    main()
