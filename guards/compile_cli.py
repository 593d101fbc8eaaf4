"""``nescio compile``: build a concept list's index ahead of time, for replicas to load.

Starting a guard encodes every piece of its concepts' evidence (names, descriptions, examples,
forget-corpus sentences): minutes for a list of a hundred people on CPU. The index depends only
on the list's content and the encoder, so it can be built once, e.g. in CI or an init container,
into a folder that every replica then reads with ``NESCIO_CACHE_DIR`` (``--cache-dir``): a
replica whose list and encoder match loads it in seconds and encodes nothing but the centroids.
With the multilingual encoder installed, the concepts' cross-lingual profile vectors
(:mod:`guards.crosslingual`) are compiled beside it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TextIO

from guards.encoder import DEFAULT_ENCODER

DESCRIPTION = __doc__.split("\n\n", 1)[1] if __doc__ else ""
EPILOG = """\
examples:
  nescio compile examples/concepts.yaml --out /srv/nescio-index
  NESCIO_CACHE_DIR=/srv/nescio-index nescio serve --concepts examples/concepts.yaml

The folder holds one index per (encoder, list content): compile again after editing the list;
a replica whose list changed builds (and, if it may write there, adds) its own."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``compile`` to the ``nescio`` command."""
    parser = subparsers.add_parser(
        "compile",
        help="build a concept list's index ahead of time (replicas load it in seconds)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("concepts", type=Path, help="concept list YAML")
    parser.add_argument(
        "--out", type=Path, required=True, help="folder to write (serve it as NESCIO_CACHE_DIR)"
    )
    parser.add_argument(
        "--encoder",
        default=DEFAULT_ENCODER,
        help="sentence encoder, as the replicas' NESCIO_ENCODER (default: the bundled MiniLM)",
    )
    parser.set_defaults(handler=run_compile)


def run_compile(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Handler of ``nescio compile``; returns the exit status (prints to ``out``, default
    standard output as it is when called)."""
    from guards.concepts import load_concepts
    from guards.crosslingual import CrossLingualScorer, load_multilingual_encoder
    from guards.encoder import load_encoder
    from guards.guard import build_index, index_folder

    concepts = load_concepts(args.concepts)
    encoder = load_encoder(args.encoder)
    started = time.perf_counter()
    index = build_index(concepts, encoder, cache_dir=args.out, progress=True)
    folder = index_folder(args.out, encoder.name, concepts)
    e5 = load_multilingual_encoder()
    if e5 is not None:  # the cross-lingual profile vectors, kept beside the index
        CrossLingualScorer(concepts, e5, index_folder(args.out, e5.name, concepts))
    print(
        f"compiled {len(concepts.concepts)} concepts, {len(index.entries)} vectors in "
        f"{time.perf_counter() - started:.1f} s into {folder}\n"
        f"serve with NESCIO_CACHE_DIR={args.out} (and NESCIO_ENCODER={args.encoder})",
        file=out or sys.stdout,
    )
    return 0
