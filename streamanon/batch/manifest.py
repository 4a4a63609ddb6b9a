"""The batch manifest: one SQLite file in the output folder, written by the driver alone.

Each archive file has one row keyed by its path relative to the archive. Statuses:

* ``pending``  - planned in a run that has not finished it yet;
* ``running``  - handed to a worker; found at the start of a run it means the previous
  run was killed, and the file is redone;
* ``done``     - output written and renamed into place;
* ``failed``   - could not be (fully) processed; ``error`` says why (a truncated input
  keeps the anonymised frames that decoded, see ``output_hash``);
* ``skipped``  - not media, or not followed (links out of the archive, devices...).

``output`` is the output's path relative to the output folder (the folder can move).
The rollback journal (not WAL) is used so that the manifest also works on network file
systems, where WAL's shared memory does not.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import sqlite3
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, SinkError

MANIFEST_NAME = ".streamanon-manifest.sqlite"
LOCK_NAME = ".streamanon-batch.lock"
RESERVED_NAMES = frozenset({MANIFEST_NAME, MANIFEST_NAME + "-journal", LOCK_NAME})
STATUSES = ("pending", "running", "done", "failed", "skipped")
SCHEMA_VERSION = 1

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    kind TEXT,
    size INTEGER,
    mtime_ns INTEGER,
    content_hash TEXT,
    status TEXT NOT NULL CHECK (status IN ({", ".join(repr(s) for s in STATUSES)})),
    error TEXT,
    error_type TEXT,
    exit_code INTEGER,
    retryable INTEGER NOT NULL DEFAULT 0,
    frames INTEGER NOT NULL DEFAULT 0,
    expected_frames INTEGER NOT NULL DEFAULT 0,
    faces INTEGER NOT NULL DEFAULT 0,
    seconds REAL NOT NULL DEFAULT 0,
    media_seconds REAL NOT NULL DEFAULT 0,
    output TEXT,
    output_hash TEXT,
    settings_hash TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    run_id INTEGER,
    worker TEXT,
    updated_at TEXT,
    verify_passed INTEGER,
    verify_frames INTEGER,
    verify_faces INTEGER,
    verify_matches INTEGER,
    verify_worst_distance REAL,
    verify_worst_frame INTEGER
);
CREATE INDEX IF NOT EXISTS files_status ON files (status);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    archive TEXT NOT NULL,
    settings_hash TEXT NOT NULL,
    settings TEXT NOT NULL,
    engine TEXT NOT NULL,
    jobs INTEGER NOT NULL,
    version TEXT NOT NULL,
    processed INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    outcome TEXT
);
"""


def now() -> str:
    """UTC timestamp for the manifest, second resolution."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class Row:
    """One row of ``files`` (see the module docstring for the statuses)."""

    path: str
    status: str
    kind: str | None = None
    size: int | None = None
    mtime_ns: int | None = None
    content_hash: str | None = None
    error: str | None = None
    error_type: str | None = None
    exit_code: int | None = None
    retryable: bool = False
    frames: int = 0
    expected_frames: int = 0
    faces: int = 0
    seconds: float = 0.0
    media_seconds: float = 0.0
    output: str | None = None
    output_hash: str | None = None
    settings_hash: str | None = None
    attempts: int = 0
    run_id: int | None = None
    worker: str | None = None
    updated_at: str | None = None
    # --verify (streamanon/verify.py): NULL when the file was not verified
    verify_passed: bool | None = None
    verify_frames: int | None = None
    verify_faces: int | None = None
    verify_matches: int | None = None
    verify_worst_distance: float | None = None
    verify_worst_frame: int | None = None

    @classmethod
    def from_sql(cls, r: sqlite3.Row) -> Row:
        d = dict(r)
        d["retryable"] = bool(d["retryable"])
        if d.get("verify_passed") is not None:
            d["verify_passed"] = bool(d["verify_passed"])
        return cls(**{k: v for k, v in d.items() if k in _FIELDS})


_COLUMNS = [f.name for f in dataclasses.fields(Row)]
_FIELDS = frozenset(_COLUMNS)
# Columns added after schema 1 was first written: a manifest made before them gets them
# (NULL) when opened for writing; one opened read-only reads as NULL through Row's defaults.
_ADDED_COLUMNS = {
    "verify_passed": "INTEGER",
    "verify_frames": "INTEGER",
    "verify_faces": "INTEGER",
    "verify_matches": "INTEGER",
    "verify_worst_distance": "REAL",
    "verify_worst_frame": "INTEGER",
}


def verify_columns(verdict: dict[str, Any] | None) -> dict[str, Any]:
    """The manifest columns of a ``--verify`` verdict (``verify.Verdict.to_dict``); all NULL without one."""
    if not verdict:
        return dict.fromkeys(_ADDED_COLUMNS)
    return {
        "verify_passed": bool(verdict["passed"]),
        "verify_frames": int(verdict["frames_checked"]),
        "verify_faces": int(verdict["faces_found"]),
        "verify_matches": int(verdict["faces_matching"]),
        "verify_worst_distance": verdict["worst_distance"],
        "verify_worst_frame": verdict["worst_frame"],
    }


@dataclass
class RunInfo:
    """One row of ``runs``."""

    id: int
    started_at: str
    finished_at: str | None
    archive: str
    settings_hash: str
    settings: str
    engine: str
    jobs: int
    version: str
    processed: int
    failed: int
    outcome: str | None


class Manifest:
    """The SQLite manifest in ``out_dir`` (created on first use unless ``readonly``).

    Args:
        out_dir: the batch output folder.
        readonly: open an existing manifest for ``--status`` without changing it.
    """

    def __init__(self, out_dir: Path, *, readonly: bool = False) -> None:
        self.path = Path(out_dir) / MANIFEST_NAME
        if readonly and not self.path.is_file():
            raise ConfigError(f"no batch manifest in {out_dir} (expected {self.path.name})")
        uri = "file:" + urllib.request.pathname2url(str(self.path.absolute())) + ("?mode=ro" if readonly else "")
        try:
            self._db = sqlite3.connect(uri, uri=True, timeout=60.0, isolation_level=None)
        except sqlite3.Error as exc:
            raise SinkError(f"cannot open the batch manifest {self.path}: {exc}") from exc
        self._db.row_factory = sqlite3.Row
        if readonly:
            self._check_version()
            return
        try:
            self._db.execute("PRAGMA journal_mode=DELETE")
            with self.transaction():
                for stmt in _SCHEMA.split(";"):
                    if stmt.strip():
                        self._db.execute(stmt)
                have = {r[1] for r in self._db.execute("PRAGMA table_info(files)")}
                for col, kind in _ADDED_COLUMNS.items():
                    if col not in have:
                        self._db.execute(f"ALTER TABLE files ADD COLUMN {col} {kind}")
                if self._db.execute("PRAGMA user_version").fetchone()[0] == 0:
                    self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            raise SinkError(f"cannot write the batch manifest {self.path}: {exc}") from exc
        self._check_version()

    def _check_version(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            raise ConfigError(f"{self.path} has manifest schema {version}; this streamanon reads {SCHEMA_VERSION}")

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes; commits on success, rolls back on error."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- files -------------------------------------------------------------------------
    def rows(self) -> dict[str, Row]:
        """Every row, by path."""
        return {r["path"]: Row.from_sql(r) for r in self._db.execute("SELECT * FROM files ORDER BY path")}

    def get(self, path: str) -> Row | None:
        r = self._db.execute("SELECT * FROM files WHERE path = ?", (path,)).fetchone()
        return Row.from_sql(r) if r is not None else None

    def put(self, row: Row) -> None:
        """Insert or replace ``row`` (stamps ``updated_at``)."""
        row.updated_at = now()
        values = dataclasses.asdict(row)
        values["retryable"] = int(row.retryable)
        if row.verify_passed is not None:
            values["verify_passed"] = int(row.verify_passed)
        cols = ", ".join(_COLUMNS)
        marks = ", ".join(f":{c}" for c in _COLUMNS)
        self._db.execute(f"INSERT OR REPLACE INTO files ({cols}) VALUES ({marks})", values)

    def update(self, path: str, **fields: Any) -> None:
        """Change some columns of one row."""
        unknown = set(fields) - set(_COLUMNS)
        if unknown:
            raise ValueError(f"unknown manifest columns: {sorted(unknown)}")
        fields["updated_at"] = now()
        if "retryable" in fields:
            fields["retryable"] = int(bool(fields["retryable"]))
        if fields.get("verify_passed") is not None:
            fields["verify_passed"] = int(bool(fields["verify_passed"]))
        sets = ", ".join(f"{k} = :{k}" for k in fields)
        self._db.execute(f"UPDATE files SET {sets} WHERE path = :_path", {**fields, "_path": path})

    def reset_running(self) -> list[str]:
        """Rows left ``running`` by a killed run become ``pending``; returns their paths."""
        paths = [r[0] for r in self._db.execute("SELECT path FROM files WHERE status = 'running' ORDER BY path")]
        if paths:
            with self.transaction():
                self._db.execute(
                    "UPDATE files SET status = 'pending', error = 'interrupted (previous run stopped)', updated_at = ? "
                    "WHERE status = 'running'",
                    (now(),),
                )
        return paths

    def forget(self, paths: Iterable[str]) -> int:
        """Drop rows (inputs that left the archive); returns how many."""
        n = 0
        for p in paths:
            n += self._db.execute("DELETE FROM files WHERE path = ?", (p,)).rowcount
        return n

    def counts(self) -> dict[str, int]:
        """Rows per status (every status present, 0 if none)."""
        out = dict.fromkeys(STATUSES, 0)
        for status, n in self._db.execute("SELECT status, COUNT(*) FROM files GROUP BY status"):
            out[status] = n
        return out

    def totals(self) -> dict[str, float]:
        """Frames, faces, processing and media seconds over the ``done`` rows."""
        r = self._db.execute(
            "SELECT COALESCE(SUM(frames),0), COALESCE(SUM(faces),0), COALESCE(SUM(seconds),0), "
            "COALESCE(SUM(media_seconds),0) FROM files WHERE status = 'done'"
        ).fetchone()
        return {"frames": r[0], "faces": r[1], "seconds": r[2], "media_seconds": r[3]}

    def with_status(self, status: str) -> list[Row]:
        return [
            Row.from_sql(r) for r in self._db.execute("SELECT * FROM files WHERE status = ? ORDER BY path", (status,))
        ]

    # -- runs --------------------------------------------------------------------------
    def start_run(self, archive: str, settings_hash: str, settings: str, engine: str, jobs: int, version: str) -> int:
        cur = self._db.execute(
            "INSERT INTO runs (started_at, archive, settings_hash, settings, engine, jobs, version) "
            "VALUES (?,?,?,?,?,?,?)",
            (now(), archive, settings_hash, settings, engine, jobs, version),
        )
        assert cur.lastrowid is not None
        return int(cur.lastrowid)

    def finish_run(self, run_id: int, processed: int, failed: int, outcome: str) -> None:
        self._db.execute(
            "UPDATE runs SET finished_at = ?, processed = ?, failed = ?, outcome = ? WHERE id = ?",
            (now(), processed, failed, outcome, run_id),
        )

    def runs(self) -> list[RunInfo]:
        return [RunInfo(**dict(r)) for r in self._db.execute("SELECT * FROM runs ORDER BY id")]
