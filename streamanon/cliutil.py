"""What every command line of streamanon shares: an argparse that fails with a one-line
``ConfigError`` and the logging set-up. Imported by ``cli`` and by each subcommand's own
parser (eval, batch, train, demo, streams), so that none of them imports ``cli``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import NoReturn

import av.logging

from .errors import ConfigError


class ArgParser(argparse.ArgumentParser):
    """argparse that raises ConfigError instead of exiting, so errors stay one line."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s" if verbose else "streamanon: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    if not verbose:
        av.logging.set_level(av.logging.PANIC)  # FFmpeg's chatter is not for end users
