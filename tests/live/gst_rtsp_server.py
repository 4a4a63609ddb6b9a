"""A loopback RTSP server for the live tests and benchmark, built on GStreamer's RTSP server.

Run it with the *system* Python, which has PyGObject and the GStreamer RTSP server typelib
(Debian: python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-{base,good,bad}):

    /usr/bin/python3 gst_rtsp_server.py --port 8554 [--file clip.mp4] [--relay]

Mounts:
    /file  (with --file) plays an H.264 MP4 from its start to each client, in real time.
    /pub   (with --relay) accepts one publisher (RTSP ANNOUNCE/RECORD, H.264) ...
    /play  ... and serves what is being published to any number of players (shared, live).
           A player joins at the next keyframe (the relay puts SPS/PPS before each one).

Prints ``READY <port>`` on stdout once listening; exits on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

H264_AU = "video/x-h264,stream-format=byte-stream,alignment=au"
H264_AVC = "video/x-h264,stream-format=avc,alignment=au"
START = b"\x00\x00\x00\x01"

# SPS/PPS are never inserted by GStreamer elements here (config-interval): GStreamer 1.22
# inserts them before *every slice* of a multi-slice IDR picture, which splits the picture
# into two access units for FFmpeg. The relay inserts them itself, once per keyframe.


def parameter_sets(codec_data: bytes) -> bytes:
    """SPS and PPS of an avcC record, as Annex B."""
    out, i = b"", 6
    for count_mask in (0x1F, 0xFF):
        n = codec_data[i - 1] & count_mask
        for _ in range(n):
            size = int.from_bytes(codec_data[i : i + 2], "big")
            out += START + codec_data[i + 2 : i + 2 + size]
            i += 2 + size
        i += 1
    return out


def annex_b(au: bytes, length_size: int) -> tuple[bytes, set[int]]:
    """A length-prefixed access unit as Annex B, and the NAL types it holds."""
    out, types, i = [], set(), 0
    while i + length_size <= len(au):
        size = int.from_bytes(au[i : i + length_size], "big")
        nal = au[i + length_size : i + length_size + size]
        if nal:
            types.add(nal[0] & 0x1F)
            out.append(START + nal)
        i += length_size + size
    return b"".join(out), types


class Relay:
    """Joins the RECORD media of /pub to the shared PLAY media of /play with appsink/appsrc."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.src: Any = None  # appsrc of the current /play media
        self.need_key = True

    def on_record_configure(self, factory: Any, media: Any) -> None:
        sink = media.get_element().get_by_name("relaysink")
        sink.connect("new-sample", self.on_sample)

    def on_play_configure(self, factory: Any, media: Any) -> None:
        with self.lock:
            self.src = media.get_element().get_by_name("relaysrc")
            self.need_key = True
        media.connect("unprepared", self.on_play_unprepared)

    def on_play_unprepared(self, media: Any) -> None:
        with self.lock:
            self.src = None

    def on_sample(self, sink: Any) -> Any:
        sample = sink.emit("pull-sample")
        buf = sample.get_buffer()
        key = not buf.has_flags(Gst.BufferFlags.DELTA_UNIT)
        with self.lock:
            src = self.src
            if src is None or (self.need_key and not key):
                return Gst.FlowReturn.OK
            self.need_key = False
        ok, cd = sample.get_caps().get_structure(0).get_value("codec_data").map(Gst.MapFlags.READ)
        codec_data = bytes(cd.data) if ok else b""
        ok, info = buf.map(Gst.MapFlags.READ)
        if not ok or len(codec_data) < 7:
            return Gst.FlowReturn.OK
        try:
            data, types = annex_b(bytes(info.data), (codec_data[4] & 3) + 1)
        finally:
            buf.unmap(info)
        if key and 7 not in types:
            data = parameter_sets(codec_data) + data
        out = Gst.Buffer.new_wrapped(data)
        if not key:
            out.set_flags(Gst.BufferFlags.DELTA_UNIT)
        src.emit("push-buffer", out)
        return Gst.FlowReturn.OK


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--file", help="H.264 MP4 served on /file")
    p.add_argument("--relay", action="store_true", help="mount /pub (record) and /play")
    args = p.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    # One thread per client: a blocking DESCRIBE of /play must not starve the publisher.
    server.get_thread_pool().set_max_threads(32)
    mounts = server.get_mount_points()

    if args.file:
        f = GstRtspServer.RTSPMediaFactory()
        f.set_launch(
            f'( filesrc location="{args.file}" ! qtdemux ! identity sync=true ! h264parse ! {H264_AVC} '
            "! rtph264pay name=pay0 pt=96 )"
        )
        f.set_shared(False)
        mounts.add_factory("/file", f)

    relay = Relay()
    if args.relay:
        rec = GstRtspServer.RTSPMediaFactory()
        rec.set_transport_mode(GstRtspServer.RTSPTransportMode.RECORD)
        rec.set_launch(
            f"( rtph264depay name=depay0 ! h264parse ! {H264_AVC} "
            "! appsink name=relaysink emit-signals=true sync=false max-buffers=50 drop=true )"
        )
        rec.set_latency(0)
        rec.connect("media-configure", relay.on_record_configure)
        mounts.add_factory("/pub", rec)
        play = GstRtspServer.RTSPMediaFactory()
        play.set_launch(
            f'( appsrc name=relaysrc is-live=true do-timestamp=true format=time caps="{H264_AU}" '
            "! h264parse ! rtph264pay name=pay0 pt=96 )"
        )
        play.set_shared(True)
        play.set_latency(0)
        play.connect("media-configure", relay.on_play_configure)
        mounts.add_factory("/play", play)

    if server.attach(None) == 0:
        print(f"cannot listen on port {args.port}", file=sys.stderr)
        return 1
    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    print(f"READY {server.get_bound_port()}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
