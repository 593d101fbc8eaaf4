"""The channel harness agrees with the channel table: every row has a carrier, and each carrier
puts the text in the field its row names, once, where the guard's reader finds it (or rejects
it, or passes it unread) as the row says. Pure: no server."""

from __future__ import annotations

import base64
import json

import pytest

from evals.hostile.channels import CARRIERS, QUESTION, VARIANTS, Carrier, coverage, value_at
from guards.chat import CHANNELS, Treatment, request_texts
from guards.errors import RequestRejected


def test_every_row_has_a_carrier_and_every_carrier_a_row() -> None:
    assert coverage() == []


def test_coverage_reports_a_missing_row() -> None:
    missing = [c for c in CARRIERS if c.field != "suffix"]
    assert coverage(missing) == [f"no carrier for completions row 'suffix' ({Treatment.GUARDED})"]


def test_coverage_reports_a_carrier_for_no_row() -> None:
    stale = Carrier("stale", "chat", "no such field", ("x",), lambda t: {"x": t})
    assert coverage([*CARRIERS, stale]) == ["carrier 'stale' names no row: 'no such field'"]


@pytest.mark.parametrize("carrier", CARRIERS, ids=lambda c: c.name)
def test_carrier_puts_the_text_in_its_field_only(carrier: Carrier) -> None:
    body = carrier.body()
    value = value_at(body, carrier.where)
    assert QUESTION in _decoded(value)
    assert json.dumps(body).count(QUESTION) <= 1  # token ids and embeddings carry it encoded


def _decoded(value: object) -> str:
    """The text a carried value stands for: a string, object keys, code points as "token ids",
    or base64 (embeddings)."""
    if isinstance(value, dict):
        return " ".join(value)
    if isinstance(value, list):
        return "".join(chr(v) for v in value if isinstance(v, int))
    assert isinstance(value, str)
    return value if " " in value else base64.b64decode(value).decode()


@pytest.mark.parametrize("carrier", CARRIERS, ids=lambda c: c.name)
def test_carrier_meets_its_row_in_the_guards_reader(carrier: Carrier) -> None:
    row = carrier.channel()
    assert row is not None
    if row.treatment is Treatment.REJECTED:
        with pytest.raises(RequestRejected):
            request_texts(carrier.body(), carrier.endpoint, "reject")
        return
    texts = request_texts(carrier.body(), carrier.endpoint, "reject")
    read = any(QUESTION in turn for turn in texts.turns)
    assert read is (row.treatment is Treatment.GUARDED)


def test_rows_keep_their_treatments() -> None:
    """The carriers' expectations come from the table; this pins the rows the issue named."""
    treatments = {(c.endpoint, c.field): c.treatment for c in CHANNELS}
    assert treatments[("chat", "chat_template")] is Treatment.REJECTED
    assert treatments[("chat", "messages[role=assistant].content")] is Treatment.GUARDED
    assert treatments[("chat", "chat_template_kwargs")] is Treatment.GUARDED


def test_variants_carry_the_question() -> None:
    assert all(QUESTION in json.dumps(v.body) for v in VARIANTS)
