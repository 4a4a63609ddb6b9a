"""Fixtures of the live tests: the GStreamer RTSP server, a coded real clip, streamanon runs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from live_helpers import CodedClip, GstServer, Streamanon, gst_missing, make_coded_clip

CLIP = "videos/sadtalker__WDA_AlexandriaOcasioCortez_000.mp4"  # one large frontal face, 512x512


@pytest.fixture(scope="session")
def gst_available() -> None:
    reason = gst_missing()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def coded_clip(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> CodedClip:
    """The talking-head clip twice (16 s at 25 fps) with a frame counter, as H.264 MP4."""
    return make_coded_clip(data_dir / CLIP, tmp_path_factory.mktemp("clip") / "coded.mp4", loops=2)


@pytest.fixture
def rtsp_server(gst_available: None) -> Iterator[Callable[..., GstServer]]:
    """Factory of started loopback RTSP servers; all killed at teardown."""
    servers: list[GstServer] = []

    def start(**kw: object) -> GstServer:
        srv = GstServer(**kw).start()  # type: ignore[arg-type]
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.kill()


@pytest.fixture
def streamanon() -> Iterator[Callable[..., Streamanon]]:
    """Factory of streamanon subprocesses; any still running is killed at teardown."""
    procs: list[Streamanon] = []

    def start(args: list[str], **kw: object) -> Streamanon:
        p = Streamanon(args, **kw)  # type: ignore[arg-type]
        procs.append(p)
        return p

    yield start
    for p in procs:
        if p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait(timeout=10)
