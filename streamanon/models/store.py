"""The process-wide model cache: each model, with given settings, is loaded once per process.

Every model the product runs is found through the registry (``engines/registry.json``:
sha256, licence, input layout; ``backends.registry.resolve_model``) and the loaded object
is kept here, keyed by its name and the settings that change what is loaded (file, engine,
device). Files, folders, live feeds and the feeds of ``streamanon streams`` then share one
copy of each: the models are read-only at inference (the landmark predictors serialise
their own calls; backends may be called from several threads).

``loads`` counts the loads per model name, for reports and tests.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.RLock()  # re-entrant: a model may load another one (FaceRes its locator)
_models: dict[tuple[Hashable, ...], Any] = {}
#: Loads per model name since the process started (or ``clear``).
loads: Counter[str] = Counter()


def shared(name: str, settings: tuple[Hashable, ...], load: Callable[[], T]) -> T:
    """The loaded model ``name`` with ``settings``: ``load()`` on first use, the same object after.

    A load that raises is not cached (the next call tries again and raises the same clear
    error).
    """
    key = (name, *settings)
    with _lock:
        if key not in _models:
            _models[key] = load()
            loads[name] += 1
        model: T = _models[key]
        return model


def clear() -> None:
    """Forget every loaded model and the counts (tests; a long process swapping models)."""
    with _lock:
        _models.clear()
        loads.clear()
