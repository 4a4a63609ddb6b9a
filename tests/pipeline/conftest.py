"""Fixtures of the pipeline tests; the fakes live in ``pipeutil``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pipeutil import streamanon_threads


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Every pipeline test must leave no ``streamanon-*`` thread behind."""
    assert streamanon_threads() == [], "threads leaked by an earlier test"
    yield
    assert streamanon_threads() == [], "pipeline threads still alive after the run ended"
