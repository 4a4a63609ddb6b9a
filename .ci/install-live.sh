#!/usr/bin/env bash
# System packages the live tests (tests/live, marker `live`) and benchmarks/bench_live.py need:
# GStreamer's RTSP server, run by the system Python through PyGObject as a loopback server
# (tests/live/gst_rtsp_server.py). Run as root on Debian bookworm after `apt-get update`.
#
#   python3, python3-gi           /usr/bin/python3 with PyGObject (the project's Python is separate)
#   gir1.2-gst-rtsp-server-1.0    GstRtspServer typelib (+ libgstrtspserver, Gst typelibs)
#   gstreamer1.0-plugins-base     appsrc, appsink
#   gstreamer1.0-plugins-good     qtdemux, rtph264pay, rtph264depay, RTSP/RTP elements
#   gstreamer1.0-plugins-bad      h264parse
#
# Python packages come from the project's extras, not from here: prometheus-client
# (streamanon[live], for --metrics-port) and optionally dlib-bin (streamanon[eval]; the
# live tests then also check every received frame with dlib's HOG face detector).
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
apt-get install -y --no-install-recommends \
    python3 \
    python3-gi \
    gir1.2-gst-rtsp-server-1.0 \
    gstreamer1.0-plugins-base \
    gstreamer1.0-plugins-good \
    gstreamer1.0-plugins-bad

# Fail here, not in the tests, if something is missing.
/usr/bin/python3 - <<'PY'
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gst, GstRtspServer  # noqa: F401
Gst.init(None)
missing = [e for e in ("qtdemux", "identity", "h264parse", "rtph264pay", "rtph264depay", "appsrc", "appsink")
           if Gst.ElementFactory.find(e) is None]
if missing:
    raise SystemExit(f"missing GStreamer elements: {missing}")
print("live test dependencies OK:", Gst.version_string())
PY
