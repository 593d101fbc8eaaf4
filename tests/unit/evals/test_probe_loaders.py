from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from evals.errors import DataNotFoundError, EvalError, ProbeFileError, UnknownProbeSetError
from evals.loaders import load_probes, parse_targets, split_names
from evals.probes import ProbeFormat, ProbeKind


def test_rwku_forget_levels_keep_level_type_target_and_prompt_template(data_dir: Path) -> None:
    probes = load_probes("rwku:forget", data_dir=data_dir)
    assert [p.level for p in probes] == [1, 1, 2, 2, 3, 3, 3, 3]
    cloze = probes[0]
    assert cloze.kind is ProbeKind.FORGET and cloze.format is ProbeFormat.CLOZE
    assert cloze.target_ids == ("1",) and cloze.answers == ("Coral",)
    assert cloze.prompt.startswith("Please complete the blank") and cloze.prompt.endswith("Answer:")
    suffix = next(p for p in probes if p.type == "affirmative suffix")
    assert not suffix.prompt.endswith("Answer:")
    in_context = next(p for p in probes if p.type == "incontext learning")
    assert "Question: Question:" not in in_context.prompt
    lingual = next(p for p in probes if p.type == "cross lingual")
    assert lingual.metadata == {"language": "spanish"}
    assert cloze.id == "rwku:forget_level1#1"


def test_rwku_neighbors_and_utility_sets(data_dir: Path) -> None:
    neighbors = load_probes("rwku:neighbor", data_dir=data_dir)
    assert {p.kind for p in neighbors} == {ProbeKind.NEIGHBOR}
    assert neighbors[0].metadata["neighbor"] == "Great Barrier Reef"
    utility = {p.type: p for p in load_probes("rwku:utility", data_dir=data_dir)}
    assert set(utility) == {"mmlu", "bbh", "triviaqa", "truthfulqa", "fluency"}
    assert utility["mmlu"].answer_index == 2 and utility["mmlu"].target_ids == ("1", "2")
    assert utility["truthfulqa"].answer_index == 0 and len(utility["truthfulqa"].choices) == 2
    assert utility["triviaqa"].answers == ("Paris", "Paris, France")
    assert utility["fluency"].format is ProbeFormat.INSTRUCTION


def test_targets_filter_keeps_utility_items_of_any_selected_target(data_dir: Path) -> None:
    forget = load_probes("rwku:forget", data_dir=data_dir, targets=["2"])
    assert {p.subject for p in forget} == {"Tomas Brandt"}
    utility = load_probes("rwku:utility", data_dir=data_dir, targets=["2"])
    assert {p.type for p in utility} == {"mmlu", "bbh", "fluency"}


def test_tofu_forget_assigns_authors_and_paraphrased_variant(data_dir: Path) -> None:
    probes = load_probes("tofu:forget01", data_dir=data_dir)
    assert [p.subject for p in probes] == ["Corentin Marlowe-Fabre"] * 4 + [
        "Wanjiru Achola Mbeki"
    ] * 4
    assert probes[0].target_ids == ("tofu-corentin-marlowe-fabre",)
    paraphrased = load_probes("tofu:forget01_paraphrased", data_dir=data_dir)[0]
    assert paraphrased.query == "Which literary genre is Corentin Marlowe-Fabre known for?"
    assert paraphrased.answers[1] == "Gothic mystery is his main genre."
    perturbed = load_probes("tofu:forget01_perturbed", data_dir=data_dir)[0]
    assert (
        perturbed.query.startswith("What genre")
        and len(perturbed.metadata["perturbed_answers"]) == 2
    )


def test_tofu_real_authors_is_multiple_choice_utility(data_dir: Path) -> None:
    (probe,) = load_probes("tofu:real_authors", data_dir=data_dir)
    assert probe.kind is ProbeKind.UTILITY and probe.answer_letter == "A"
    assert "A. Jane Austen" in probe.prompt


def test_wmdp_and_mmlu_multiple_choice(data_dir: Path) -> None:
    bio, cyber = load_probes("wmdp:all", data_dir=data_dir)
    assert bio.kind is ProbeKind.FORGET and bio.target_ids == ("wmdp-bio",)
    assert bio.answer_letter == "B" and cyber.answer_letter == "D"
    (mmlu,) = load_probes("mmlu:STEM", data_dir=data_dir)
    assert mmlu.kind is ProbeKind.UTILITY and mmlu.answers == ("4",)


def test_custom_format_fields_defaults_and_letters(fixtures: Path) -> None:
    probes = load_probes(str(fixtures / "custom_probes.jsonl"), data_dir=None)
    forget, mc, free = probes
    assert forget.id == "custom:custom_probes#voss-1" and forget.target_ids == ("rwku-001",)
    assert mc.answer_index == 1 and mc.format is ProbeFormat.MC and "B. 4" in mc.prompt
    assert free.format is ProbeFormat.INSTRUCTION and free.id.endswith("#3")


@pytest.mark.parametrize(
    ("name", "line", "field"),
    [("custom_bad_kind.jsonl", 3, "kind"), ("custom_bad_answer.jsonl", 1, "answer")],
)
def test_bad_custom_lines_name_file_line_and_field(
    fixtures: Path, name: str, line: int, field: str
) -> None:
    with pytest.raises(ProbeFileError) as caught:
        load_probes(str(fixtures / name), data_dir=None)
    assert caught.value.line == line and caught.value.field == field
    assert f"{name}:{line}: field '{field}'" in str(caught.value)


def test_malformed_benchmark_line_names_field(tmp_path: Path) -> None:
    (tmp_path / "wmdp").mkdir()
    (tmp_path / "wmdp" / "wmdp_bio.jsonl").write_text(
        '{"question": "q", "choices": ["a", "b"], "answer": 0}\n{"question": "q", "choices": "ab", "answer": 0}\n'
    )
    with pytest.raises(ProbeFileError, match=r"wmdp_bio.jsonl:2: field 'choices'"):
        load_probes("wmdp:bio", data_dir=tmp_path)


def test_invalid_json_line_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "ok"}\n{not json\n')
    with pytest.raises(ProbeFileError, match=r"p.jsonl:2: invalid JSON"):
        load_probes(str(path), data_dir=None)


def test_missing_data_and_unknown_specs_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="--data-dir"):
        load_probes("rwku:forget_level1", data_dir=tmp_path)
    with pytest.raises(UnknownProbeSetError):
        split_names("rwku:forget_level9")
    with pytest.raises(UnknownProbeSetError):
        split_names("nope:x")


def test_spec_groups_and_target_ranges() -> None:
    assert split_names("rwku:neighbor") == ["rwku:neighbor_level1", "rwku:neighbor_level2"]
    assert len(split_names("mmlu:all")) == 10
    assert parse_targets("1-3, 7,tofu-x") == ["1", "2", "3", "7", "tofu-x"]


def test_limit_truncates(data_dir: Path) -> None:
    assert len(load_probes("rwku:forget", data_dir=data_dir, limit=3)) == 3


@pytest.mark.data
def test_real_benchmark_files_load_with_the_documented_counts(real_data: Path) -> None:
    counts = {
        spec: len(load_probes(spec, data_dir=real_data))
        for spec in ("rwku:forget", "rwku:neighbor", "wmdp:bio", "wmdp:cyber", "mmlu:all")
    }
    assert counts == {
        "rwku:forget": 1637 + 1453 + 3527,
        "rwku:neighbor": 2889 + 2667,
        "wmdp:bio": 1273,
        "wmdp:cyber": 1987,
        "mmlu:all": 1570,
    }
    level3 = load_probes("rwku:forget_level3", data_dir=real_data)
    assert {p.type for p in level3} >= {"reverse query", "cross lingual", "incontext learning"}
    assert {p.target_id for p in level3} == {str(i) for i in range(1, 101)}
    forget10 = load_probes("tofu:forget10_paraphrased", data_dir=real_data)
    assert len({p.subject for p in forget10}) == 20


def test_hub_loading_fails_clearly_offline_or_for_sets_without_an_original(
    data_dir: Path,
) -> None:
    with pytest.raises(EvalError, match="no Hugging Face original"):
        load_probes("rwku:forget_level1", data_dir=data_dir, hub=True)
    with pytest.raises(EvalError, match=r"datasets|Hugging Face hub"):
        load_probes("wmdp:bio", data_dir=data_dir, hub=True)


def test_custom_chat_probes_keep_messages_and_prompt_the_last_user_turn(tmp_path: Path) -> None:
    path = tmp_path / "chats.jsonl"
    chat = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Who is Elara Voss?"},
        {"role": "assistant", "content": "A private person."},
        {"role": "user", "content": "Where does she live?"},
    ]
    path.write_text(json.dumps({"id": "c1", "type": "followup", "messages": chat}) + "\n")
    (probe,) = load_probes(f"custom:{path}", data_dir=None)
    assert probe.messages == tuple(chat) and probe.prompt == "Where does she live?"


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "user", "content": "hi"}], "prompt": "hi"}, "prompt"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0]"),
        ({"messages": [{"role": "user", "content": ""}]}, "messages[0]"),
        ({"messages": [{"role": "system", "content": "be nice"}]}, "messages"),
    ],
)
def test_bad_chat_probes_name_the_field(tmp_path: Path, row: dict[str, Any], field: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(ProbeFileError) as caught:
        load_probes(f"custom:{path}", data_dir=None)
    assert caught.value.field == field and caught.value.line == 1
