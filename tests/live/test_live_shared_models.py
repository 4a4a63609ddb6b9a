"""``streamanon streams``: the feeds of one process share every model (loaded once)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from streamanon.models import store
from streamanon.models.generator import default_model
from streamanon.types import Detections


def _dlib() -> None:
    pytest.importorskip("dlib", reason="dlib (the [align] extra) is not installed")
    if not default_model().is_file():
        pytest.skip("the shipped generator is not built")


def test_feeds_load_each_model_once(tmp_path: Path) -> None:
    _dlib()
    from streamanon.demo import write_demo_clip
    from streamanon.live.streams import Feed
    from streamanon.live.streams_config import parse_streams_config

    clip = tmp_path / "in.mp4"
    write_demo_clip(clip, 0.5)
    body = '[defaults]\nmethod = "generate"\n'
    for name in ("a", "b", "c"):
        body += f'[[stream]]\nname = "{name}"\ninput = "{clip}"\noutput = "{tmp_path / name}.mp4"\n'
    cfg = tmp_path / "s.toml"
    cfg.write_text(body)
    config = parse_streams_config(cfg)

    def boxes(images: Any) -> list[Detections]:
        return [Detections.empty() for _ in images]

    store.clear()
    try:
        feeds = [Feed(spec, boxes, {}) for spec in config.streams]  # type: ignore[arg-type]
        assert len(feeds) == 3
        assert dict(store.loads) == {"generator": 1, "dlib-shape-68": 1}
        factories = [f.runner.stages.anonymizer_factory for f in feeds]
        assert len({id(f.generate.generator) for f in factories}) == 1  # type: ignore[union-attr]
        assert len({id(f.landmarker) for f in factories}) == 1  # type: ignore[union-attr]
    finally:
        store.clear()
