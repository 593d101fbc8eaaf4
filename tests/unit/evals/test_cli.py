from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from evals.cli import main, register
from guards.concepts import load_concepts


def test_register_adds_the_eval_group_with_its_commands() -> None:
    parser = argparse.ArgumentParser(prog="nescio")
    register(parser.add_subparsers(dest="command"))
    for command in ("probes", "concepts", "detect", "run", "report"):
        args = parser.parse_args(["eval", command, *_required(command)])
        assert callable(args.handler)


def _required(command: str) -> list[str]:
    return {
        "concepts": ["--from", "wmdp", "--out", "x.yaml"],
        "detect": ["--out", "o"],
        "run": ["--system", "raw=http://x", "--probes", "wmdp:bio", "--out", "o"],
        "report": ["o"],
    }.get(command, [])


def test_probes_command_counts_sets(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probes", "rwku:forget", "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert "rwku:forget_level3" in out and "reverse query" in out


def test_concepts_command_writes_a_loadable_list(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "rwku.yaml"
    args = ["concepts", "--from", "rwku", "--targets", "1-2", "--out", str(out)]
    assert main([*args, "--data-dir", str(data_dir)]) == 0
    concepts = load_concepts(out)
    assert [c.id for c in concepts.concepts] == ["rwku-001", "rwku-002"]
    assert (tmp_path / concepts.concepts[0].forget_corpus[0]).is_file()


def test_user_errors_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["probes", "rwku:forget_level1", "--data-dir", str(tmp_path)]) == 2
    assert "not found" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            ["--calibrate-split", "0.5", "--fpr-confidence", "1.5"],
            "--fpr-confidence must be in [0.5, 1)",
        ),
        (
            ["--detector", "learned", "--cross-fit", "2", "--max-utility-fpr", "2"],
            "--max-neighbor-fpr and --max-utility-fpr must be in [0, 1]",
        ),
    ],
    ids=["fpr-confidence", "cross-fit-budget"],
)
def test_detect_refuses_options_out_of_range(
    data_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    options: list[str],
    message: str,
) -> None:
    argv = ["detect", "--benchmark", "rwku", "--targets", "1-2", "--data-dir", str(data_dir)]
    assert main([*argv, "--out", str(tmp_path), *options]) == 2
    assert message in capsys.readouterr().out
