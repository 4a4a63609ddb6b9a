"""The streams TOML read through the option schema: unknown keys all at once with a
did-you-mean, each table blamed by name, types checked, the CLI's parsers for values.

Nothing is started (no server needed)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from streamanon.errors import ConfigError
from streamanon.live.streams_config import parse_streams_config

ONE = "[[stream]]\nname = 'x'\ninput = 'rtsp://h/a'\noutput = 'a.mp4'\n"


def _parse(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    cfg = tmp_path / "s.toml"
    cfg.write_text(text)
    return parse_streams_config(cfg)


def _error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        _parse(tmp_path, text)
    msg = str(info.value)
    assert "\n" not in msg and str(tmp_path / "s.toml") in msg
    return msg


def test_version_is_an_unknown_option_not_an_exit(tmp_path: Path) -> None:
    assert "stream 'x': unknown option 'version'" in _error(tmp_path, ONE + "version = true\n")
    assert "[defaults]: unknown option 'help'" in _error(tmp_path, "[defaults]\nhelp = true\n" + ONE)


def test_every_unknown_key_at_once_with_a_did_you_mean(tmp_path: Path) -> None:
    msg = _error(tmp_path, ONE + "blurr_strength = 2\nmethd = 'blur'\nzzz = 1\n")
    assert "stream 'x': unknown options 'blurr_strength' (did you mean 'blur_strength'?)" in msg
    assert "'methd' (did you mean 'method'?)" in msg and "'zzz'" in msg
    msg = _error(tmp_path, "[defaults]\nread_timout = 3\n" + ONE)
    assert re.search(r"s\.toml: \[defaults\]: unknown option 'read_timout' \(did you mean 'read_timeout'\?\)$", msg)
    msg = _error(tmp_path, "threshhold = 0.3\n" + ONE)
    assert "unknown top-level setting 'threshhold' (did you mean 'threshold'?)" in msg
    msg = _error(tmp_path, ONE + "start = 3\n")  # an option of another mode says where it applies
    assert "unknown option 'start' (an option of files and folders only)" in msg


def test_types_are_checked_with_the_table_and_the_key(tmp_path: Path) -> None:
    assert "stream 'x': read_timeout: expected number, got 'abc'" in _error(tmp_path, ONE + "read_timeout = 'abc'\n")
    assert "[defaults]: no_drop: expected true or false, got 1" in _error(tmp_path, "[defaults]\nno_drop = 1\n" + ONE)
    assert "top level: det_size: expected integer, got 1.5" in _error(tmp_path, "det_size = 1.5\n" + ONE)
    assert "s.toml: invalid threshold=5.0" in _error(tmp_path, "threshold = 5.0\n" + ONE)
    assert "stream 'x': shape: invalid choice 'round'" in _error(tmp_path, ONE + "shape = 'round'\n")


def test_duration_takes_the_clis_time_formats(tmp_path: Path) -> None:
    (spec,) = _parse(tmp_path, ONE + "duration = '01:30'\n").streams
    assert spec.opts.duration == 90.0
    (spec,) = _parse(tmp_path, ONE + "duration = 3600\n").streams
    assert spec.opts.duration == 3600.0
    assert "stream 'x': duration: invalid time '1:2:3:4'" in _error(tmp_path, ONE + "duration = '1:2:3:4'\n")


def test_verify_every_zero_is_off_and_negative_an_error(tmp_path: Path) -> None:
    (spec,) = _parse(tmp_path, "[defaults]\nverify_every = 4\n" + ONE + "verify_every = 0\n").streams
    assert spec.verify_every == 0
    (spec,) = _parse(tmp_path, ONE + "verify = true\n").streams
    assert spec.verify_every == 1
    assert "stream 'x': invalid --verify-every -1" in _error(tmp_path, ONE + "verify_every = -1\n")


def test_options_of_another_method_are_refused_per_stream(tmp_path: Path) -> None:
    msg = _error(tmp_path, "[defaults]\nmethod = 'dp-pixelate'\ndp_cells = 12\n" + ONE + "method = 'blur'\n")
    assert "stream 'x': dp_cells is an option of --method dp-pixelate, not of --method blur" in msg
    (spec,) = _parse(tmp_path, "[defaults]\nmethod = 'dp-pixelate'\ndp_cells = 12\n" + ONE).streams
    assert spec.config.anonymize.dp_cells == 12


def test_values_as_the_cli_takes_them(tmp_path: Path) -> None:
    text = (
        "providers = 'CPUExecutionProvider'\n[defaults]\naudio = false\nno_reconnect = true\n"
        + ONE
        + "color = '#ff0000'\nignore_region = [[0, 0, 0.5, 0.1], '0.5,0.5,1,1']\nlandmarks = 5\n"
        "encoder_opt = {tune = 'zerolatency'}\nsvd_k = 3\nmethod = 'svd'\n"
    )
    (spec,) = _parse(tmp_path, text).streams
    a = spec.config.anonymize
    assert a.color == (255, 0, 0) and a.ignore_regions == ((0, 0, 0.5, 0.1), (0.5, 0.5, 1, 1))
    assert a.landmarks == "5" and a.svd_k == 3
    assert not spec.config.io.audio and not spec.opts.reconnect
    assert spec.config.io.encoder_options == (("tune", "zerolatency"),)
    assert spec.config.detect.providers == ("CPUExecutionProvider",)
    msg = _error(tmp_path, "[defaults]\ninput = 'rtsp://h/b'\n" + ONE)
    assert "[defaults]: input: set in each [[stream]]" in msg
