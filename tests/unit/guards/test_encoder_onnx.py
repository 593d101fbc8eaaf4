"""The ONNX Runtime encoder: torch's vectors, a cached export rebuilt when it cannot be trusted,
safe under concurrent callers, and selected by ``NESCIO_ENCODER_BACKEND``."""

from __future__ import annotations

import json
import logging
import random
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from guards import encoder as encoder_module
from guards import onnx_encoder
from guards.encoder import SentenceTransformerEncoder, default_backend, load_encoder
from guards.errors import GuardError
from guards.onnx_encoder import OnnxEncoder, export_folder
from proxy.settings import ProxySettings

VOCABULARY = (
    "the a of King Stephen novel horror who wrote Carrie capital Peru Lisbon train recipe pasta "
    "committee quarterly figures maintenance schedule inspections born 1947 September author "
    "café naïve Zürich São Paulo ransomware synthesis protein virus nuclear reactor election "
    "Frodo Baggins Mordor ring wizard Gandalf 日本語 テスト русский текст العربية 😀 e-mail "
    "don't U.S.A. 3.14 $100 #hashtag @user http://example.com/path?q=1 ___ (born in ___.)"
)
WORDS = VOCABULARY.split()


def varied_texts(count: int, seed: int = 17, long_share: float = 0.03) -> list[str]:
    """Mostly chat-sized texts, some long ones (past the 256-token limit), odd whitespace and
    scripts."""
    rng = random.Random(seed)
    texts = ["", " ", "\n\t", "?", "Who wrote Carrie?", "  padded  ", "A" * 3000]
    while len(texts) < count:
        longest = rng.choice([40, 120, 300] if rng.random() < long_share else [2, 5, 10, 20, 30])
        words = [rng.choice(WORDS) for _ in range(rng.randint(1, longest))]
        text = " ".join(words)
        if rng.random() < 0.3:
            text = text.capitalize() + rng.choice([".", "?", "!", "", " ...", "\n"])
        texts.append(text)
    return texts


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real export, made once for this module in its own cache folder."""
    cache = tmp_path_factory.mktemp("onnx-cache")
    return OnnxEncoder(cache_dir=cache).folder


@pytest.fixture(scope="module")
def onnx(pristine: Path) -> OnnxEncoder:
    return OnnxEncoder(cache_dir=pristine.parent)


@pytest.fixture(scope="module")
def torch_encoder() -> SentenceTransformerEncoder:
    return SentenceTransformerEncoder()


def test_vectors_agree_with_torch_on_varied_texts(
    onnx: OnnxEncoder, torch_encoder: SentenceTransformerEncoder
) -> None:
    texts = varied_texts(2000)
    got, expected = onnx.encode(texts), torch_encoder.encode(texts)
    assert got.shape == expected.shape == (2000, 384)
    assert got.dtype == np.float32
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    cosines = (got * expected).sum(axis=1)
    assert cosines.min() >= 0.9999, texts[int(cosines.argmin())]


def test_calls_of_every_shape_agree_and_keep_input_order(
    onnx: OnnxEncoder, torch_encoder: SentenceTransformerEncoder
) -> None:
    texts = varied_texts(150, seed=3, long_share=0.1)
    together = onnx.encode(texts)  # past one batch: sorted by length, cut into batches
    small = onnx.encode(texts[:20])  # length buckets
    alone = np.concatenate([onnx.encode([t]) for t in texts[:20]])
    assert np.abs(together[:20] - small).max() < 1e-5
    assert np.abs(small - alone).max() < 1e-5
    assert onnx.encode([]).shape == (0, onnx.dim)
    assert onnx.token_counts(texts[:40]) == torch_encoder.token_counts(texts[:40])
    assert max(onnx.token_counts(["A" * 3000, "word " * 600])) == 256  # the model's limit


def test_a_second_load_reuses_the_export(
    pristine: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(pristine, tmp_path / pristine.name)
    monkeypatch.setattr(onnx_encoder, "export", _no_export)
    again = OnnxEncoder(cache_dir=tmp_path)
    assert again.folder == tmp_path / pristine.name
    assert again.encode(["Who wrote Carrie?"]).shape == (1, 384)


def _no_export(model: str, folder: Path) -> None:
    raise AssertionError(f"exported {model} again")


def _corrupt_model(folder: Path) -> None:
    data = (folder / "model.onnx").read_bytes()
    (folder / "model.onnx").write_bytes(data[: len(data) // 3])


def _disagreeing_probes(folder: Path) -> None:
    meta = json.loads((folder / "meta.json").read_text())
    meta["probes"] = [list(reversed(row)) for row in meta["probes"]]
    (folder / "meta.json").write_text(json.dumps(meta))


def _old_version(folder: Path) -> None:
    meta = json.loads((folder / "meta.json").read_text())
    meta["version"] = 0
    (folder / "meta.json").write_text(json.dumps(meta))


def _no_meta(folder: Path) -> None:
    (folder / "meta.json").unlink()


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_corrupt_model, "unreadable export"),
        (_disagreeing_probes, "probe vectors disagree"),
        (_old_version, "export version 0"),
        (_no_meta, "no export yet"),
    ],
)
def test_a_bad_export_is_rebuilt_with_a_log_line(
    pristine: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    damage: Any,
    reason: str,
) -> None:
    folder = tmp_path / pristine.name
    shutil.copytree(pristine, folder)
    damage(folder)
    exports: list[Path] = []

    def copy_export(model: str, target: Path) -> None:  # what a real export writes, faster
        exports.append(target)
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(pristine, target)

    monkeypatch.setattr(onnx_encoder, "export", copy_export)
    with caplog.at_level(logging.INFO, logger="guards.onnx_encoder"):
        rebuilt = OnnxEncoder(cache_dir=tmp_path)
    assert exports == [folder]
    assert any(
        "building the ONNX export" in r.message and reason in r.message for r in caplog.records
    )
    assert rebuilt.encode(["Who wrote Carrie?"]).shape == (1, 384)


def test_an_unwritable_cache_exports_for_this_process_only(
    pristine: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("")  # a cache "folder" below a file: every write fails

    def copy_export(model: str, target: Path) -> None:
        shutil.copytree(pristine, target)

    monkeypatch.setattr(onnx_encoder, "export", copy_export)
    with caplog.at_level(logging.WARNING, logger="guards.onnx_encoder"):
        encoder = OnnxEncoder(cache_dir=blocked)
    assert "for this process only" in caplog.text
    assert encoder.encode(["Who wrote Carrie?"]).shape == (1, 384)


def test_the_export_folder_follows_the_source_files(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    first = export_folder(str(model), tmp_path)
    (model / "config.json").write_text('{"changed": true}')
    assert export_folder(str(model), tmp_path) != first
    assert export_folder(str(model), tmp_path).parent == tmp_path


def test_concurrent_callers_get_their_own_rows(onnx: OnnxEncoder) -> None:
    batches = [varied_texts(12, seed=100 + i, long_share=0) for i in range(8)]
    expected = [onnx.encode(batch) for batch in batches]
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for _ in range(5):
                results[i] = onnx.encode(batches[i])
                assert np.abs(results[i] - expected[i]).max() < 1e-5
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(batches))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert sorted(results) == list(range(len(batches)))


class _GatedSession:
    """Stands in for the InferenceSession: records who ran, and holds the first run until told."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.order: list[str] = []
        self.entered = threading.Event()
        self.release = threading.Event()

    def run(self, outputs: Any, feeds: dict[str, np.ndarray]) -> Any:
        self.order.append(threading.current_thread().name)
        self.entered.set()
        self.release.wait(30)
        return self.inner.run(outputs, feeds)


def test_calls_are_served_in_arrival_order(pristine: Path) -> None:
    encoder = OnnxEncoder(cache_dir=pristine.parent)
    gated = _GatedSession(encoder._session)
    encoder._session = gated
    lock = encoder._lock

    def call(name: str) -> threading.Thread:
        thread = threading.Thread(target=encoder.encode, args=(["Who wrote Carrie?"],), name=name)
        thread.start()
        return thread

    threads = [call("first")]
    gated.entered.wait(30)
    for ticket, name in enumerate(["second", "third", "fourth"], start=2):
        threads.append(call(name))
        for _ in range(30_000):  # until it holds its ticket (30 s at most)
            if lock._next == ticket:
                break
            threading.Event().wait(0.001)
    gated.release.set()
    for thread in threads:
        thread.join(30)
    assert gated.order == ["first", "second", "third", "fourth"]


@pytest.fixture
def fresh_cache() -> Iterator[None]:
    saved = dict(encoder_module._CACHE)
    encoder_module._CACHE.clear()
    yield
    encoder_module._CACHE.clear()
    encoder_module._CACHE.update(saved)


def test_the_backend_setting_picks_the_encoder(
    monkeypatch: pytest.MonkeyPatch, fresh_cache: None
) -> None:
    monkeypatch.delenv("NESCIO_ENCODER_BACKEND", raising=False)
    assert default_backend() == "onnx"
    assert ProxySettings().encoder_backend == "onnx"
    monkeypatch.setenv("NESCIO_ENCODER_BACKEND", "torch")
    assert default_backend() == "torch"
    assert ProxySettings().encoder_backend == "torch"
    assert isinstance(load_encoder(), SentenceTransformerEncoder)
    assert isinstance(load_encoder(backend="onnx"), OnnxEncoder)
    assert load_encoder(backend="onnx") is load_encoder(backend="onnx")
    monkeypatch.setenv("NESCIO_ENCODER_BACKEND", "tensorflow")
    with pytest.raises(GuardError, match="NESCIO_ENCODER_BACKEND"):
        load_encoder()


def test_a_model_onnx_cannot_serve_falls_back_to_torch(
    monkeypatch: pytest.MonkeyPatch, fresh_cache: None, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(model: str, **_: Any) -> OnnxEncoder:
        raise GuardError(f"encoder {model!r}: inputs ['pixel_values'] are not supported on ONNX")

    monkeypatch.setattr(onnx_encoder, "OnnxEncoder", refuse)
    with caplog.at_level(logging.WARNING, logger="guards.encoder"):
        encoder = load_encoder(backend="onnx")
    assert isinstance(encoder, SentenceTransformerEncoder)
    assert "ONNX backend unavailable" in caplog.text


def test_the_thread_count_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NESCIO_ENCODER_THREADS", "1")
    assert onnx_encoder.default_threads() == 1
    monkeypatch.setenv("NESCIO_ENCODER_THREADS", "0")
    with pytest.raises(GuardError, match="NESCIO_ENCODER_THREADS"):
        onnx_encoder.default_threads()
    monkeypatch.delenv("NESCIO_ENCODER_THREADS")
    assert 1 <= onnx_encoder.default_threads() <= 4
