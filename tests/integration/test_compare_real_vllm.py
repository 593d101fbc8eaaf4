"""`nescio compare` end to end on real parts: vLLM CPU serving SmolLM2 (as both the retain and
the original model, so no training is needed), and the real proxy (`nescio serve` subprocess) in
front of it with the refuse policy, on a few real TOFU forget01 items.

What it proves: every row is graded over HTTP, log-probabilities come back through vLLM (truth
ratios for the models) and are withheld by the refusing proxy for the items it flags, and the
table and raw files are written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from evals.baselines.compare import CompareConfig, run_compare
from guards.concepts import Policy

pytestmark = pytest.mark.integration
DATA = Path(os.environ.get("NESCIO_DATA_DIR", Path(__file__).resolve().parents[3] / "shared/data"))


def test_compare_grades_models_and_the_proxy_over_http(
    vllm_launch: Any, free_port: Callable[[], int], tmp_path: Path
) -> None:
    if not (DATA / "tofu" / "forget01_perturbed.jsonl").is_file():
        message = f"TOFU data not found under {DATA} (set NESCIO_DATA_DIR)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    launch = vllm_launch
    config = CompareConfig(
        data_dir=DATA, out=tmp_path, retain_model=launch.model_dir,
        checkpoints={"target": launch.model_dir}, proxy_policies=[Policy.REFUSE],
        forget_items=3, retain_items=2, utility_items=2, max_tokens=8, concurrency=4,
        server="cpu", port=free_port(), proxy_port=free_port(),
        vllm_python=launch.python,
    )  # fmt: skip
    rows = {row["model"]: row for row in run_compare(config)}

    assert set(rows) == {"retain", "target", "proxy[refuse](target)"}
    assert rows["target"]["logprob_coverage"] == 1.0
    assert rows["target"]["forget_quality"] == pytest.approx(1.0)  # same model as retain
    proxy = rows["proxy[refuse](target)"]
    assert proxy["flagged_forget"] == 1.0 and proxy["logprob_coverage"] == 0.0
    assert (
        proxy["forget_quality"] is None
        and proxy["forget_rouge_l"] < rows["target"]["forget_rouge_l"]
    )
    raw = [json.loads(line) for line in (tmp_path / "proxy-refuse-target.jsonl").open()]
    assert len(raw) == 3 + 2 + 2 + 2
    assert "No weight-level baseline" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "compare.png").is_file()
