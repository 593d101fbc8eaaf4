"""Environment configuration of the baselines (prefix `NESCIO_`)."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class BaselineSettings(BaseSettings):
    """`NESCIO_DATA_DIR` points at the benchmark data (TOFU lives in `<data_dir>/tofu`);
    `NESCIO_VLLM_PYTHON` is the interpreter of the vLLM CPU environment used by `compare`."""

    model_config = SettingsConfigDict(env_prefix="NESCIO_")

    data_dir: Path = Path("../shared/data")
    vllm_python: Path = Path(".nescio/vllm-venv/bin/python")
