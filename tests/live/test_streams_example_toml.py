"""The commented example of docs/live.md is a valid ``streamanon streams`` file, read by the real parser.

It must keep covering what the parser accepts: every top-level (shared) key, every key only a
``[[stream]]`` takes, and every live-feed option. Nothing is started (no server needed).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest

from streamanon.cli import main
from streamanon.live.streams_config import PER_STREAM_ONLY, SHARED, parse_streams_config
from streamanon.options import STREAMS, options_for

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

DOC = Path(__file__).resolve().parents[2] / "docs" / "live.md"


def example() -> str:
    blocks = re.findall(r"^```toml\n(.*?)^```", DOC.read_text(encoding="utf-8"), re.M | re.S)
    assert len(blocks) == 1, "docs/live.md should hold exactly one ```toml block: the streams example"
    return str(blocks[0])


@pytest.fixture
def site(tmp_path: Path) -> Path:
    path = tmp_path / "site.toml"
    path.write_text(example(), encoding="utf-8")
    return path


def test_example_parses_with_the_real_parser(site: Path) -> None:
    data: dict[str, Any] = tomllib.loads(site.read_text())
    parsed = parse_streams_config(site)
    assert [s.name for s in parsed.streams] == [s["name"] for s in data["stream"]]
    defaults = data["defaults"]
    for spec, entry in zip(parsed.streams, data["stream"], strict=True):
        merged = {**defaults, **entry}
        assert spec.config.anonymize.method == merged["method"]
        assert spec.opts.read_timeout == merged["read_timeout"]  # a stream's own value replaces [defaults]
        assert spec.report == (
            Path(entry["report"]) if "report" in entry else Path(data["report_dir"]) / f"{spec.name}.json"
        )
    assert parsed.batch == data["batch"] and parsed.metrics_port == data["metrics_port"]
    assert parsed.detector.detect.threshold == data["threshold"]


def test_example_covers_every_key_the_parser_treats_specially(site: Path) -> None:
    data: dict[str, Any] = tomllib.loads(site.read_text())
    top = set(data) - {"defaults", "stream"}
    assert top == set(SHARED), f"top-level keys not shown in docs/live.md: {sorted(set(SHARED) - top)}"
    in_streams = {k for s in data["stream"] for k in s}
    assert set(PER_STREAM_ONLY) <= in_streams
    per_feed = in_streams | set(data["defaults"])
    live = [o for o in options_for([STREAMS]) if o.group == "live feeds"]
    assert len(live) > 15  # the schema's live options
    missing = [o.flag for o in live if o.key not in per_feed | top]
    assert not missing, f"live options missing from the docs/live.md example: {missing}"


def test_streams_check_accepts_the_example(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    names = [s["name"] for s in tomllib.loads(site.read_text())["stream"]]
    assert main(["streams", "--check", str(site)]) == 0
    assert f"{len(names)} stream(s): {', '.join(names)}" in capsys.readouterr().out
