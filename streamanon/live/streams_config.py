"""The ``streamanon streams`` TOML file, read and checked through the option schema.

Split from ``streams`` (which runs the feeds): the file's tables (the shared top level,
``[defaults]``, the ``[[stream]]`` entries), the keys each may hold, and
``parse_streams_config``, which turns the file into a ``StreamsConfig`` or raises a one-line
``ConfigError`` naming the file, the table and the option. The file's format is described
in ``streams``' docstring and docs/live.md.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..anonymize import check_method
from ..config import PipelineConfig
from ..errors import ConfigError, StreamanonError
from ..io import redact
from ..io.hwaccel import choose_decode
from ..options import (
    BY_DEST,
    LIVE,
    OPTIONS,
    STREAMS,
    check_applies,
    config_from_values,
    options_for,
    unknown_keys,
    values_from_table,
    verify_every,
)
from ..options import defaults as option_defaults
from .endpoints import InputSpec, OutputSpec, input_spec, output_spec
from .options import LiveOptions
from .shared_detector import DEFAULT_BATCH

# The file's top level: the options declared ``shared`` in streamanon.options (the one shared
# detector, the metrics server, the reports folder).
SHARED = tuple(o.key for o in OPTIONS if o.shared and STREAMS in o.modes)
PER_STREAM_ONLY = ("name", "input", "output", "report")
# Options of live feeds that a streams file refuses: small-face tiles keep a schedule per video
# (detect/tiles.py), which one detector shared by several feeds cannot; live mode's ``auto``
# runs the full frame only, as here.
UNSUPPORTED = tuple(o.key for o in OPTIONS if LIVE in o.modes and STREAMS not in o.modes)
# The options of a feed: in [defaults] or a [[stream]].
FEED = frozenset(o.dest for o in options_for([STREAMS]) if not o.shared)
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _load_toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"streams config not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read streams config {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc


# -- the config file ------------------------------------------------------------------------
@dataclass(frozen=True)
class StreamSpec:
    """One ``[[stream]]`` entry, read through the option schema (``streamanon.options``)."""

    name: str
    config: PipelineConfig
    opts: LiveOptions
    input: InputSpec
    output: OutputSpec
    report: Path | None
    raw: tuple[tuple[str, str], ...]  # the entry as given (defaults merged): SIGHUP compares these
    verify_every: int = 0  # verify = true / verify_every = N: check the frames sent (streamanon/verify.py)


@dataclass(frozen=True)
class StreamsConfig:
    """The whole file: shared detector settings, metrics, and the feeds."""

    detector: PipelineConfig  # the shared detector's settings (detect part)
    batch: int | None  # None: not set, CPU_BATCH or DEFAULT_BATCH by the backend (``default_batch``)
    max_wait_s: float
    metrics_port: int | None
    metrics_addr: str
    streams: tuple[StreamSpec, ...]


def _tables(path: Path, data: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]], list[str]]:
    """``[defaults]``, the ``[[stream]]`` entries and their names; refused keys raise ConfigError."""
    streams = data.pop("stream", None)
    defaults = data.pop("defaults", {})
    if not isinstance(defaults, dict):
        raise ConfigError(f"{path}: [defaults] must be a table")
    if not isinstance(streams, list) or not streams or not all(isinstance(s, dict) for s in streams):
        raise ConfigError(f"{path}: no [[stream]] entries (each needs input = ... and output = ...)")
    names = [str(s.get("name", f"stream-{i + 1}")) for i, s in enumerate(streams)]
    tables = [(data, "top level"), (defaults, "[defaults]")] + [
        (s, f"stream {n!r}") for s, n in zip(streams, names, strict=True)
    ]
    for table, where in tables:
        no = sorted(set(table) & set(UNSUPPORTED))
        if no:
            raise ConfigError(
                f"{path}: {where}: {', '.join(no)}: not available with streamanon streams "
                "(small-face tiles are scheduled per feed; the shared detector runs the full frame)"
            )
    unknown = [k for k in data if k not in SHARED]
    if unknown:
        raise ConfigError(
            f"{path}: unknown top-level setting{'s' * (len(unknown) > 1)} {unknown_keys(unknown, SHARED)}; "
            "per-stream options go in [defaults] or [[stream]]"
        )
    for table, where in tables[1:]:
        bad = sorted(set(table) & set(SHARED))
        if bad:
            raise ConfigError(
                f"{path}: {where}: {', '.join(bad)}: shared by all streams (one detector), set at the top level"
            )
    own = sorted(set(defaults) & set(PER_STREAM_ONLY))
    if own:
        raise ConfigError(f"{path}: [defaults]: {', '.join(own)}: set in each [[stream]]")
    return defaults, streams, names


def _own(entry: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A ``[[stream]]``'s own option values."""
    return values_from_table({k: v for k, v in entry.items() if k not in PER_STREAM_ONLY}, where, FEED)


def _feed(
    entry: Mapping[str, Any], where: str, given: dict[str, Any], detect: dict[str, Any]
) -> tuple[PipelineConfig, LiveOptions, InputSpec, OutputSpec, int]:
    """One feed's settings from the options it is given (``[defaults]`` and its own) and the
    shared detector's; errors name ``where``."""
    values = {**option_defaults([STREAMS]), **given, **detect}
    try:
        check_method(values["method"])  # here, not when the feed starts
        check_applies(given, STREAMS, values["method"], toml=True)
        config = config_from_values(values)
        # the feed's own pipeline makes one detector call at a time; the shared detector has the workers
        config = dataclasses.replace(config, detect=dataclasses.replace(config.detect, workers=1))
        opts = LiveOptions.from_values(values, entry["input"])
        in_spec = input_spec(entry["input"], opts, config.io.hwaccel)
        out_spec = output_spec(entry["output"], opts, config.io.encoder)
        choose_decode(in_spec.hwaccel)  # hwaccel = "cuda" that cannot open: exit 2 at start, not per feed
        every = verify_every(values["verify"], values["verify_every"])
    except StreamanonError as exc:
        raise type(exc)(f"{where}: {exc}") from exc
    return config, opts, in_spec, out_spec, every


def parse_streams_config(path: Path, data: Mapping[str, Any] | None = None) -> StreamsConfig:
    """Read and validate ``path`` (or ``data`` already read from it) through ``streamanon.options``.

    Raises:
        ConfigError: a one-line message naming the file, the table (``[defaults]``, ``stream
            'NAME'``) and the option; every unknown key of a table at once.
    """
    data = dict(_load_toml(path) if data is None else data)
    defaults, streams, names = _tables(path, data)
    shared = values_from_table(data, f"{path}: top level", SHARED)
    try:
        detector = config_from_values({**shared, "small_faces": "off"})
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    batch: int | None = shared.get("batch")
    max_wait = float(shared.get("max_wait_ms", 0.0)) / 1000
    if not 0 <= max_wait <= 1:
        raise ConfigError(f"{path}: invalid max_wait_ms {max_wait * 1000:g}: expected 0 to 1000")
    detector = dataclasses.replace(detector, detect=dataclasses.replace(detector.detect, batch=batch or DEFAULT_BATCH))
    report_dir = Path(str(shared["report_dir"])) if shared.get("report_dir") is not None else None
    # the one detector's settings reach every feed's config (the report says what ran)
    detect = {d: v for d, v in shared.items() if BY_DEST[d].field.startswith("detect.")}
    common = values_from_table(defaults, f"{path}: [defaults]", FEED)
    specs: list[StreamSpec] = []
    for entry, name in zip(streams, names, strict=True):
        where = f"{path}: stream {name!r}"
        if not NAME_RE.match(name):
            raise ConfigError(f"{where}: a name is 1-64 letters, digits, '.', '_' or '-'")
        if name in {s.name for s in specs}:
            raise ConfigError(f"{where}: two streams have this name")
        for key in ("input", "output"):
            if not isinstance(entry.get(key), str) or not entry[key]:
                raise ConfigError(f'{where}: needs {key} = "..."')
        config, opts, in_spec, out_spec, every = _feed(entry, where, {**common, **_own(entry, where)}, detect)
        report = (
            Path(str(entry["report"])) if "report" in entry else (report_dir / f"{name}.json" if report_dir else None)
        )
        raw = tuple(sorted((k, repr(v)) for k, v in {**defaults, **entry}.items()))
        specs.append(StreamSpec(name, config, opts, in_spec, out_spec, report, raw, every))
    outputs = [s.output.target for s in specs if s.output.kind != "stdout"]
    dup = sorted({t for t in outputs if outputs.count(t) > 1})
    if dup or sum(s.output.kind == "stdout" for s in specs) > 1:
        raise ConfigError(f"{path}: two streams write to the same output {redact(dup[0]) if dup else '-'}")
    addr = str(shared.get("metrics_addr", LiveOptions().metrics_addr))
    return StreamsConfig(detector, batch, max_wait, shared.get("metrics_port"), addr, tuple(specs))
