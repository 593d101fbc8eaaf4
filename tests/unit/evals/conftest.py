"""Shared fixtures of the evaluator's unit tests: the small fixture data folder, a fake encoder,
and access to the real benchmark data (skipped when absent, a failure under CI=true)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "evals"
REAL_DATA = Path(
    os.environ.get("NESCIO_DATA_DIR", Path(__file__).resolve().parents[4] / "shared" / "data")
)


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder in the benchmarks' layout, assembled from our made-up fixture files.

    The folders are named ``<benchmark>-fixture`` in the repository so they are never mistaken
    for copies of the real benchmark data, which is only ever read from ../shared/data.
    """
    folder = tmp_path_factory.mktemp("benchmark-data")
    for source in (FIXTURES / "made-up-benchmarks").iterdir():
        shutil.copytree(source, folder / source.name.removesuffix("-fixture"))
    return folder


@pytest.fixture
def real_data() -> Path:
    """The real benchmark folder; skip with a message when absent (fail under CI=true)."""
    if not (REAL_DATA / "rwku" / "targets.jsonl").is_file():
        message = f"benchmark data not found at {REAL_DATA} (set NESCIO_DATA_DIR)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return REAL_DATA


class BagOfWordsEncoder:
    """A deterministic stand-in for the sentence encoder: hashed bag of lowercase words.

    Texts that share words get a high cosine similarity, unrelated texts a near-zero one, so
    detection outcomes in tests are predictable and need no model download.
    """

    name = "bag-of-words-test"
    dim = 256

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"[a-z]{3,}", text.lower()):
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1.0
            norm = np.linalg.norm(out[row])
            if norm:
                out[row] /= norm
        return out


@pytest.fixture
def fake_encoder() -> BagOfWordsEncoder:
    return BagOfWordsEncoder()
