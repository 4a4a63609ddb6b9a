"""Model files found through the registry: dlib's missing package is told apart from a bad
file by the error's attribute (not its text), and FaceRes's path is the registry's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from streamanon.backends import registry
from streamanon.errors import MissingDependencyError, ModelError
from streamanon.models import faceres, recognizer


@pytest.fixture
def fresh_registry() -> Iterator[None]:
    """``resolve_model`` caches its answers: none from before, none left after."""
    registry.resolve_model.cache_clear()
    yield
    registry.resolve_model.cache_clear()


def test_a_missing_model_package_is_a_missing_dependency(fresh_registry: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingDependencyError, match="face_recognition_models") as info:
        recognizer.model_path("cnn")
    assert info.value.exit_code == 9
    assert isinstance(info.value.__cause__, ModelError)
    assert info.value.__cause__.missing_package == "face_recognition_models"


def test_a_model_error_is_not_read_from_its_text(monkeypatch: pytest.MonkeyPatch) -> None:
    def bad(name: str) -> Path:
        raise ModelError(f"model {name!r}: /x/model.dat has an unexpected sha256 (the file is not installed right)")

    monkeypatch.setattr(recognizer, "resolve_model", bad)
    with pytest.raises(ModelError) as info:  # a bad file stays a model error (exit 7), whatever its words
        recognizer.model_path("recognition")
    assert not isinstance(info.value, MissingDependencyError) and info.value.exit_code == 7


def test_faceres_path_is_the_registrys(fresh_registry: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    checkout, package = tmp_path / "checkout", tmp_path / "installed"
    checkout.mkdir()
    package.mkdir()
    (package / "faceres.onnx").write_bytes(b"onnx")
    monkeypatch.delenv("STREAMANON_FACERES", raising=False)
    monkeypatch.setattr(registry, "FILE_ROOTS", (checkout, package))
    assert faceres.model_path() == package / "faceres.onnx"  # where the loader finds it, not the checkout
    (package / "faceres.onnx").unlink()
    registry.resolve_model.cache_clear()
    assert faceres.model_path() == faceres.DEFAULT_ONNX  # not built: where the build writes it
    monkeypatch.setenv("STREAMANON_FACERES", str(tmp_path / "mine.onnx"))
    assert faceres.model_path() == tmp_path / "mine.onnx"


def test_faceres_pins_are_the_registrys() -> None:
    src = registry.model_entry(faceres.MODEL_NAME)["source"]
    assert f"{faceres.NPM_PACKAGE}@{faceres.NPM_VERSION}" == src["from"]["npm"]
    assert faceres.NPM_TARBALL_SHA256 == src["from"]["tarball_sha256"]
    assert faceres.SOURCE_FILES == {k: v for k, v in src["from"].items() if k.startswith("models/")}
    assert faceres.DEFAULT_ONNX.name == src["path"] and faceres.BUILD_COMMAND == src["built_by"]
