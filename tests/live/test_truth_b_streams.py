"""``streamanon streams`` when every feed fails: non-zero exit, each feed's final state in
its report and summary line, retry messages that name the input once (issue 22)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from live_helpers import free_port


def test_every_feed_failing_exits_3_with_each_final_state(tmp_path: Path) -> None:
    port = free_port()  # bound and closed again: nothing listens there
    toml = tmp_path / "s.toml"
    feeds = ""
    for name in ("door", "yard"):
        feeds += (
            f'[[stream]]\nname = "{name}"\ninput = "rtsp://127.0.0.1:{port}/{name}"\n'
            f'output = "{tmp_path / name}.mp4"\nreport = "{tmp_path / name}.json"\n'
        )
    toml.write_text(
        'backend = "onnxruntime"\n[defaults]\nmax_retries = 1\nreconnect_delay_max = 0.5\nopen_timeout = 2\n' + feeds
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    p = subprocess.run(
        [sys.executable, "-m", "streamanon", "streams", str(toml)],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    assert p.returncode == 3, p.stderr  # SourceError: the inputs gave up after their retries
    lines = p.stderr.splitlines()
    for name in ("door", "yard"):
        uri = f"rtsp://127.0.0.1:{port}/{name}"
        report = json.loads((tmp_path / f"{name}.json").read_text())["summary"]
        assert report["stopped_by"] == "error" and report["error"]
        assert report["live_options"]["final_state"] == "failed"
        assert report["live_options"]["exit_code"] == 3
        assert any(e["kind"] == "gave_up" for e in report["events"])
        assert any(line.startswith(f"streamanon: {name}: [failed, exit 3] ") for line in lines), p.stderr
        # each message names the input once ("cannot open X: cannot open X as media: ...")
        for text in [*lines, *(e["message"] for e in report["events"])]:
            assert f"{uri}: cannot open {uri}" not in text, text
        assert any(f"cannot open {uri} as media" in e["message"] for e in report["events"])
    assert "every stream failed (2 of 2)" in p.stderr
