"""The process-wide model cache: one load per model and settings, shared by every caller."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamanon.errors import ModelError
from streamanon.models import store


@pytest.fixture(autouse=True)
def _empty_store() -> Iterator[None]:
    store.clear()
    yield
    store.clear()


def test_a_model_loads_once_per_settings_and_is_shared() -> None:
    made: list[object] = []

    def load() -> object:
        made.append(object())
        return made[-1]

    a = store.shared("m", ("cpu",), load)
    assert store.shared("m", ("cpu",), load) is a
    b = store.shared("m", ("cuda",), load)
    assert b is not a and len(made) == 2 and store.loads["m"] == 2


def test_concurrent_first_uses_load_once() -> None:
    calls: list[int] = []
    gate = threading.Barrier(8)

    def load() -> int:
        calls.append(1)
        return len(calls)

    got: list[int] = []

    def use() -> None:
        gate.wait()
        got.append(store.shared("m", (), load))

    threads = [threading.Thread(target=use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [1] and got == [1] * 8


def test_a_failed_load_is_not_cached() -> None:
    def broken() -> object:
        raise ModelError("model 'm': /x/m.onnx is missing")

    for _ in range(2):
        with pytest.raises(ModelError, match=r"/x/m\.onnx"):
            store.shared("m", (), broken)
    assert store.loads["m"] == 0


def test_a_corrupt_or_missing_registry_model_names_its_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from streamanon.backends import registry
    from streamanon.models.faceres import FaceResRecogniser
    from streamanon.models.generator import shared_generator

    monkeypatch.setattr(registry, "FILE_ROOTS", (tmp_path,))
    monkeypatch.delenv("STREAMANON_FACERES", raising=False)
    registry.resolve_model.cache_clear()
    try:
        (tmp_path / "generator-64.onnx").write_bytes(b"not the shipped generator")
        with pytest.raises(ModelError, match=rf"{tmp_path}/generator-64\.onnx has an unexpected sha256"):
            shared_generator()
        with pytest.raises(ModelError, match=r"faceres\.onnx is missing.*python engines/build_faceres\.py"):
            FaceResRecogniser()
        assert not store.loads  # nothing half-loaded was kept
    finally:
        registry.resolve_model.cache_clear()
