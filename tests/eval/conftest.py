"""Fixtures of the eval tests: dlib's recogniser (skip cleanly without it) and small
identity folders made of symlinks to the shared data (nothing is copied)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


def _need_dlib() -> None:
    if importlib.util.find_spec("dlib") is None:
        pytest.skip("dlib is not installed (pip install 'streamanon[eval]')")
    if importlib.util.find_spec("face_recognition_models") is None:
        pytest.skip("face_recognition_models is not installed (pip install 'streamanon[eval]')")


@pytest.fixture(scope="session")
def recogniser() -> Any:
    """One dlib recogniser for the session (loading its models takes a second)."""
    _need_dlib()
    from streamanon.models.recognizer import DlibRecogniser

    return DlibRecogniser()


@pytest.fixture(scope="session")
def need_dlib() -> None:
    _need_dlib()


@pytest.fixture
def subset_faces(tmp_path: Path, data_dir: Path) -> Callable[..., Path]:
    """``subset_faces(folder, identities=3, per_identity=4)`` -> a folder of symlinks."""

    def make(folder: str, identities: int = 3, per_identity: int = 4) -> Path:
        src = data_dir / "identities" / folder
        dst = tmp_path / f"subset_{folder.replace('/', '_')}"
        for sub in sorted(p for p in src.iterdir() if p.is_dir())[:identities]:
            (dst / sub.name).mkdir(parents=True)
            for img in sorted(sub.iterdir())[:per_identity]:
                (dst / sub.name / img.name).symlink_to(img)
        return dst

    return make
