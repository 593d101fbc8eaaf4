"""Evaluator settings from the environment (``NESCIO_`` prefix), read once by the CLI."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATA_DIR = Path("../shared/data")


class EvalSettings(BaseSettings):
    """Where benchmark data lives, and the key sent to systems under test (never written out)."""

    model_config = SettingsConfigDict(env_prefix="NESCIO_", extra="ignore")

    data_dir: Path = DEFAULT_DATA_DIR
    eval_api_key: str | None = Field(default=None, repr=False)
