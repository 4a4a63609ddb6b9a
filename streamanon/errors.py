"""The one error hierarchy of streamanon.

::

    StreamanonError
    ├── ConfigError (ValueError)          bad option, unknown name, bad value
    ├── SourceError                       anything about reading input
    │   ├── SourceOpenError               missing, unreadable, not media
    │   ├── SourceTimeoutError (TimeoutError)
    │   └── DecodeError                   corrupt / truncated stream
    ├── SinkError                         cannot write the output
    ├── EngineError
    │   ├── EngineNotFoundError
    │   └── EngineIncompatibleError
    ├── ModelError                        model file missing or malformed
    ├── AnonymizationError                a frame could not be anonymised
    ├── VerificationError                 --verify found an identifiable face in the output
    └── MissingDependencyError (ImportError)

Every error carries a one-line message fit for a terminal. The CLI maps each class to
an exit code (see ``EXIT_CODES``); library code never prints or exits.
"""

from __future__ import annotations

import importlib
from typing import Any


class StreamanonError(Exception):
    """Base class of every error streamanon raises on purpose."""

    exit_code = 1


class ConfigError(StreamanonError, ValueError):
    """An option, name or value is invalid."""

    exit_code = 2


class SourceError(StreamanonError):
    """The input could not be read."""

    exit_code = 3

    def __init__(self, message: str, *, source: str | None = None) -> None:
        super().__init__(message)
        self.source = source


class SourceOpenError(SourceError):
    """The input is missing, unreadable, or not a media file."""


class SourceTimeoutError(SourceError, TimeoutError):
    """A live input did not answer within its timeout."""

    exit_code = 6


class DecodeError(SourceError):
    """The input is corrupt or truncated."""

    exit_code = 4


class SinkError(StreamanonError):
    """The output could not be written."""

    exit_code = 5


class EngineError(StreamanonError):
    """A compiled inference engine cannot be used."""

    exit_code = 7


class EngineNotFoundError(EngineError):
    """No engine file exists for the requested model and device."""


class EngineIncompatibleError(EngineError):
    """An engine was built for another TensorRT version, GPU or model file."""


class ModelError(StreamanonError):
    """A model file is missing, has the wrong checksum, or unexpected I/O.

    ``missing_package``: the Python distribution that provides the model, when it is the
    package that is not installed (callers turn that into ``MissingDependencyError``).
    """

    exit_code = 7

    def __init__(self, message: str, *, missing_package: str | None = None) -> None:
        super().__init__(message)
        self.missing_package = missing_package


class AnonymizationError(StreamanonError):
    """Some frames could not be anonymised (they were masked, or the run aborted)."""

    exit_code = 8


class VerificationError(StreamanonError):
    """``--verify`` found a face in the written output that still matches the input's face
    (streamanon/verify.py); the output was written, and is not anonymous."""

    exit_code = 10


class MissingDependencyError(StreamanonError, ImportError):
    """An optional dependency is not installed; the message names the extra."""

    exit_code = 9

    @classmethod
    def for_extra(cls, module: str, extra: str) -> MissingDependencyError:
        return cls(f"{module} is not installed; install it with: pip install 'streamanon[{extra}]'")


def import_extra(module: str, extra: str) -> Any:
    """``import module``, or ``MissingDependencyError`` naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError.for_extra(module, extra) from exc


def reason(exc: BaseException, limit: int = 200) -> str:
    """The informative line of a third-party exception's message, for a one-line error.

    Libraries put locations first (OpenVINO: ``Exception from src/...cpp:105:`` lines
    before "Unable to read the model..."): lines that only locate the error are skipped.
    """
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    useful = [ln for ln in lines if not (ln.startswith("Exception from ") and ln.endswith(":"))]
    text = (useful or lines or [type(exc).__name__])[0]
    return text if len(text) <= limit else text[: limit - 3] + "..."


EXIT_CODES: dict[str, int] = {
    "ok": 0,
    "error": StreamanonError.exit_code,
    "usage/config": ConfigError.exit_code,
    "input unreadable": SourceError.exit_code,
    "input corrupt or truncated (output holds what decoded)": DecodeError.exit_code,
    "output not writable": SinkError.exit_code,
    "live source timed out": SourceTimeoutError.exit_code,
    "model or engine": ModelError.exit_code,
    "frames failed and were masked": AnonymizationError.exit_code,
    "missing optional dependency": MissingDependencyError.exit_code,
    "--verify: a face in the output matches the input": VerificationError.exit_code,
    "interrupted (SIGINT/SIGTERM)": 130,
}
