"""Where rows come from: a file under the data folder, or a Hugging Face dataset by name."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from evals.errors import DataNotFoundError, EvalError
from evals.jsonl import Row, read_rows


@dataclass(frozen=True, slots=True)
class HubDataset:
    """A Hugging Face dataset whose rows have the same fields as the local file."""

    repo: str
    config: str | None
    split: str


@dataclass(frozen=True, slots=True)
class RowSource:
    """Rows of one probe set: ``(line or row number, row)`` plus a label for error messages."""

    data_dir: Path | None
    hub: bool = False

    def local(self, relative: str) -> tuple[str, Iterator[tuple[int, Row]]]:
        if self.data_dir is None:
            raise DataNotFoundError("no data folder given (--data-dir or NESCIO_DATA_DIR)")
        path = self.data_dir / relative
        if not path.is_file():
            raise DataNotFoundError(
                f"{path}: not found; point --data-dir (or NESCIO_DATA_DIR) at the benchmark data"
            )
        return str(path), read_rows(path)

    def rows(
        self, relative: str, dataset: HubDataset | None
    ) -> tuple[str, Iterator[tuple[int, Row]]]:
        """Local rows, or the hub dataset's rows when ``hub`` is set and the set is on the hub."""
        if not self.hub:
            return self.local(relative)
        if dataset is None:
            raise EvalError(f"{relative}: no Hugging Face original is known; use --data-dir")
        return hub_rows(dataset)


def hub_rows(dataset: HubDataset) -> tuple[str, Iterator[tuple[int, Row]]]:
    """Rows of a hub dataset (``datasets`` is imported lazily; offline it fails clearly)."""
    label = f"hf:{dataset.repo}" + (f"/{dataset.config}" if dataset.config else "")
    try:
        datasets = importlib.import_module("datasets")
    except ImportError as exc:
        raise EvalError("loading from the hub needs `pip install datasets`") from exc
    try:
        table = datasets.load_dataset(dataset.repo, dataset.config, split=dataset.split)
    except Exception as exc:  # network, auth and missing-config errors all come as different types
        raise EvalError(
            f"{label}: cannot load from the Hugging Face hub ({type(exc).__name__}); "
            "offline, use --data-dir with local files"
        ) from exc
    return label, ((i + 1, dict(row)) for i, row in enumerate(table))
