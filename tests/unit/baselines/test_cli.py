from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from evals.baselines.cli import parse_params, register
from evals.baselines.errors import BaselineError
from proxy.cli import main


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser()
    register(root.add_subparsers(required=True))
    return root


def test_register_adds_the_three_commands_with_handlers() -> None:
    args = parser().parse_args(
        ["unlearn", "--method", "npo", "--model", "m", "--out", "o", "--param", "beta=0.2"]
    )
    assert callable(args.handler) and args.forget == "forget01" and args.param == ["beta=0.2"]
    args = parser().parse_args(["finetune", "--base", "b", "--out", "o", "--authors", "6"])
    assert args.split == "full" and args.authors == 6
    args = parser().parse_args(["compare", "--retain-model", "r", "--out", "o"])
    assert args.checkpoint == [] and args.server == "auto"


def test_parse_params_reads_json_values() -> None:
    assert parse_params(["beta=0.5", "layer=3", "name=x"]) == {"beta": 0.5, "layer": 3, "name": "x"}
    with pytest.raises(BaselineError):
        parse_params(["beta"])


def test_main_reports_bad_input_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    monkeypatch.setenv("NESCIO_DATA_DIR", str(tmp_path))
    code = main(["unlearn", "--method", "nope", "--model", str(tmp_path), "--out", str(tmp_path)])
    assert code == 2
    assert "unknown method 'nope'" in capsys.readouterr().err
