"""Command-line options of live mode (added to the main parser) and their validated form.

The options are declared in ``streamanon.options`` (group ``live feeds``); ``LiveOptions`` is
``config.LiveConfig`` built from their parsed values.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..config import LiveConfig
from ..io.source import drops_frames
from ..options import LIVE, add_arguments, live_fields


def add_live_options(p: argparse.ArgumentParser) -> list[argparse.Action]:
    """Add the live-mode flags (used when the input or the output is a live URL, device or ``-``)."""
    return add_arguments(p, {LIVE}, groups=["live feeds"])


@dataclass(frozen=True)
class LiveOptions(LiveConfig):
    """Validated live-mode settings (``LiveConfig``), from the parsed options."""

    @classmethod
    def from_values(cls, values: Mapping[str, Any], input: str | None = None) -> LiveOptions:
        """From ``{dest: value}`` of the options (a namespace's, a streams table's)."""
        realtime = drops_frames(input, bool(values.get("live", False)))
        return cls(
            **live_fields(values),
            drop=not values.get("no_drop", False) and realtime,
            realtime=realtime,
        )

    @classmethod
    def from_namespace(cls, ns: argparse.Namespace) -> LiveOptions:
        """From the main parser's namespace (flags added by ``add_live_options``)."""
        return cls.from_values(vars(ns), getattr(ns, "input", None))
