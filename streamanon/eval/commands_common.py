"""What the ``streamanon eval`` commands share: the config from their options, dlib's
recogniser, checked output paths, JSON output and the markdown tables they print."""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..config import PipelineConfig
from ..errors import SinkError
from ..models.recognizer import DlibRecogniser
from ..options import BY_DEST, EVAL, config_from_values
from . import report


def _write_json(path: Path | None, data: dict[str, Any]) -> None:
    if path is None:
        return
    try:
        path.write_text(json.dumps(data, indent=1, default=_jsonable))
    except OSError as exc:
        raise SinkError(f"cannot write {path}: {exc.strerror or exc}") from exc


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _check_outputs(ns: argparse.Namespace) -> None:
    """Fail before the (long) run if an output cannot be written."""
    for opt in ("json", "html"):
        path: Path | None = getattr(ns, opt, None)
        if path is not None and not (path.parent if str(path.parent) else Path(".")).is_dir():
            raise SinkError(f"--{opt}: folder does not exist: {path.parent}")


def _eval_config(ns: argparse.Namespace) -> PipelineConfig:
    # eval's own arguments may share a name with an option of the other modes (--seed, temporal's
    # --keep DIR): only the options of eval become the config
    cfg = config_from_values({d: v for d, v in vars(ns).items() if d not in BY_DEST or EVAL in BY_DEST[d].modes})
    if ns.threads == 0:  # one ORT thread: faster on small stills and no spinning against dlib
        cfg = dataclasses.replace(cfg, detect=dataclasses.replace(cfg.detect, threads=1))
    return dataclasses.replace(cfg, anonymize=dataclasses.replace(cfg.anonymize, seed=ns.seed))


def _recogniser(ns: argparse.Namespace) -> Any:
    return DlibRecogniser(ns.dlib_detector, ns.upsample)


def _fmt_row(values: list[Any]) -> str:
    return "| " + " | ".join(report.fmt_text(v) for v in values) + " |"


def _print_table(cols: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A markdown table on stdout: ``cols``, then one line per row of values."""
    print(_fmt_row(list(cols)))
    print("|" + "---|" * len(cols))
    for r in rows:
        print(_fmt_row(list(r)))
