"""Fixtures for the batch tests (helpers live in batch_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from batch_helpers import build_real_archive


@pytest.fixture(scope="module")
def real_archive(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    return build_real_archive(tmp_path_factory.mktemp("archive"), data_dir)
