"""The training false-positive budgets a learned scorer's threshold is picked for.

One definition for ``python -m evals.detection.fit_scorer`` and ``nescio eval detect
--cross-fit``; kept free of heavy imports so ``nescio --help`` stays fast. The defaults are the
detection targets: at most 3% of neighbour and 0.2% of utility probes flagged.
"""

from __future__ import annotations

import argparse

MAX_NEIGHBOR_FPR = 0.03
MAX_UTILITY_FPR = 0.002


def add_budget_options(parser: argparse.ArgumentParser) -> None:
    """``--max-neighbor-fpr`` / ``--max-utility-fpr``: the lowest threshold whose training
    false-positive rates stay within both is the scorer's."""
    parser.add_argument(
        "--max-neighbor-fpr",
        type=float,
        metavar="F",
        default=MAX_NEIGHBOR_FPR,
        help=f"training neighbour false-positive budget (default {MAX_NEIGHBOR_FPR})",
    )
    parser.add_argument(
        "--max-utility-fpr",
        type=float,
        metavar="F",
        default=MAX_UTILITY_FPR,
        help=f"training utility false-positive budget (default {MAX_UTILITY_FPR})",
    )
