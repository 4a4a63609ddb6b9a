"""The face generator: a small landmark-conditioned inpainting network that paints a new face
into the region the product replaces.

Training and export need PyTorch (``pip install 'streamanon[torch]'``) and live in
``model``, ``train``, ``export`` and ``cli``; running an exported model does not
(``GeneratorRunner``, ``geometry``). Nothing here imports torch at package import time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .runner import GeneratorRunner, default_model

__all__ = ["GeneratorRunner", "default_model"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import runner

        return getattr(runner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
