"""``python -m evals.detection.mixed`` on the made-up RWKU fixture with the bag-of-words encoder."""

from __future__ import annotations

from pathlib import Path

from evals.detection.mixed import evaluate, summarize, table
from evals.detection.plan import Setting
from guards.encoder import Encoder


def test_mixed_prompts_are_split_per_setting_and_counted(
    data_dir: Path, fake_encoder: Encoder
) -> None:
    records = evaluate(
        data_dir, ["1", "2"], fake_encoder, [Setting.SINGLE, Setting.ALL], per_cell=3, seed=0
    )
    # Neighbours: all 4 forget probes have one, capped at 3. Utility: the one trivia item is
    # tied to target 1, so only target 2's two forget probes pair with it.
    cells = summarize(records)
    assert {cell: row["n"] for cell, row in cells.items()} == {
        "all/neighbor": 3,
        "all/utility": 2,
        "single/neighbor": 3,
        "single/utility": 2,
    }
    for record in records:
        forbidden = record["text"][slice(*record["forbidden"])]
        allowed = record["text"][slice(*record["allowed"])]
        assert record["text"] in (f"{forbidden} {allowed}", f"{allowed} {forbidden}")
        assert record["works"] == (record["partial"] and record["withheld"] and record["kept"])
    # Each forget question names its target, the trivia question nothing: always split cleanly.
    assert cells["single/utility"]["works"] == cells["all/utility"]["works"] == 1.0
    assert "single/utility" in table(cells)
