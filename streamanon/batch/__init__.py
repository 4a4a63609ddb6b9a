"""Archives: ``streamanon batch`` — resumable, parallel, and on a Ray cluster.

``main(argv)`` is the subcommand; ``run_batch(BatchOptions(...))`` the library entry.
The core never imports Ray: only ``streamanon.batch.ray_engine`` does, when used.
"""

from __future__ import annotations

from .cli import main
from .driver import BatchOptions, BatchResult, batch_settings_hash, default_jobs, run_batch, threads_per_job
from .manifest import MANIFEST_NAME, Manifest, Row

__all__ = [
    "MANIFEST_NAME",
    "BatchOptions",
    "BatchResult",
    "Manifest",
    "Row",
    "batch_settings_hash",
    "default_jobs",
    "main",
    "run_batch",
    "threads_per_job",
]
