"""Discovery: content probing, links, special files, and output paths that must not escape."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from streamanon.batch.discover import clean_partials, probe, safe_output, walk
from streamanon.errors import SinkError


def _audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as out:
        a = out.add_stream("aac", rate=48000)
        a.layout = "mono"
        samples = np.zeros((1, 1024), np.float32)
        for i in range(10):
            f = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            f.sample_rate, f.pts = 48000, i * 1024
            for p in a.encode(f):
                out.mux(p)
        for p in a.encode(None):
            out.mux(p)
    return path


@pytest.fixture
def messy(tmp_path: Path, clip_factory: Callable[..., Path]) -> Path:
    """An archive with every kind of entry discovery must handle."""
    arch = tmp_path / "arch"
    (arch / "sub").mkdir(parents=True)
    clip_factory("arch/clip.mp4", frames=6)
    for name in ("really_mp4.avi", "video.bin", "video_named.jpg"):
        # MP4 content under another name: container mismatch, unknown extension, image extension
        clip_factory(f"arch/sub/{name}.mp4", frames=4).rename(arch / "sub" / name)
    Image.fromarray(np.full((40, 60, 3), 128, np.uint8)).save(arch / "sub" / "still.png")
    Image.fromarray(np.full((40, 60, 3), 128, np.uint8)).save(arch / "sub" / "png_named.mp4", format="PNG")
    (arch / "notes.txt").write_text("hello\n" * 40)
    (arch / "random.mp4").write_bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    (arch / "empty.mp4").write_bytes(b"")
    _audio_only(arch / "voice.m4a")
    outside = tmp_path / "outside.mp4"
    outside.write_bytes((arch / "clip.mp4").read_bytes())
    (arch / "out_link.mp4").symlink_to(outside)
    (arch / "in_link.mp4").symlink_to(arch / "clip.mp4")
    (arch / "dangling.mp4").symlink_to(arch / "nope.mp4")
    (arch / "dir_link").symlink_to(arch / "sub", target_is_directory=True)
    (arch / "outside_dir").symlink_to(tmp_path, target_is_directory=True)
    os.mkfifo(arch / "pipe.mp4")
    (arch / ".old.streamanon-partial.mp4").write_bytes(b"half")
    return arch


def test_walk_and_probe_classify_by_content(messy: Path) -> None:
    entries = {e.rel: e for e in walk(messy)}
    kinds = {rel: e.kind for rel, e in entries.items()}
    assert kinds["out_link.mp4"] == "skipped" and "outside the archive" in (entries["out_link.mp4"].reason or "")
    assert kinds["dangling.mp4"] == "skipped"
    assert kinds["dir_link/"] == "skipped" and kinds["outside_dir"] == "skipped"
    assert kinds["pipe.mp4"] == "skipped" and "FIFO" in (entries["pipe.mp4"].reason or "")
    assert kinds[".old.streamanon-partial.mp4"] == "skipped"
    inside_links = [rel for rel in kinds if rel.startswith(("dir_link/", "outside_dir/")) and rel != "dir_link/"]
    assert inside_links == [], "symlinked folders are not walked"
    assert kinds["in_link.mp4"] == "file"  # a link inside the archive is followed

    probes = {rel: probe(e.path) for rel, e in entries.items() if e.kind == "file"}
    assert probes["clip.mp4"].kind == "video" and probes["clip.mp4"].frames == 6
    assert probes["in_link.mp4"].kind == "video"
    assert probes["sub/really_mp4.avi"].kind == "video"  # content decides, not the name
    assert probes["sub/still.png"].kind == "image"
    # not media at all: skipped
    assert probes["notes.txt"].kind is None and not probes["notes.txt"].fail
    assert probes["voice.m4a"].kind is None and "audio only" in (probes["voice.m4a"].reason or "")
    # media names whose content is not media, or media under a name the writer cannot use: failed
    for rel in ("random.mp4", "empty.mp4", "sub/video.bin", "sub/video_named.jpg", "sub/png_named.mp4"):
        assert probes[rel].kind is None and probes[rel].fail, rel
    assert "rename" in (probes["sub/video.bin"].reason or "")


def test_walk_prunes_the_output_folder_inside_the_archive(tmp_path: Path, clip_factory: Callable[..., Path]) -> None:
    arch = tmp_path / "arch"
    (arch / "out" / "nested").mkdir(parents=True)
    clip_factory("arch/a.mp4", frames=2)
    clip_factory("arch/out/nested/b.mp4", frames=2)
    rels = [e.rel for e in walk(arch, arch / "out")]
    assert rels == ["a.mp4"]
    assert "out/nested/b.mp4" in [e.rel for e in walk(arch)]


@pytest.mark.parametrize(
    "rel", ["../evil.mp4", "/etc/evil.mp4", "a/../../evil.mp4", "a/./b.mp4", "a//b.mp4", "x\x00.mp4", ""]
)
def test_safe_output_refuses_names_that_escape(tmp_path: Path, rel: str) -> None:
    with pytest.raises(SinkError, match="refusing"):
        safe_output(tmp_path / "out", rel)


def test_safe_output_refuses_symlinked_folders_and_targets(tmp_path: Path) -> None:
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "sub").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(SinkError, match="outside"):
        safe_output(out, "sub/clip.mp4")
    (out / "link.mp4").symlink_to(elsewhere / "x.mp4")
    with pytest.raises(SinkError, match="symlink"):
        safe_output(out, "link.mp4")
    assert safe_output(out, "a/b/c.mp4") == out / "a" / "b" / "c.mp4"


def test_clean_partials_removes_only_temp_files(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    keep = [tmp_path / "clip.mp4", tmp_path / "d" / ".hidden.mp4", tmp_path / "d" / "streamanon-partial.mp4"]
    drop = [
        tmp_path / ".clip.streamanon-partial.mp4",
        tmp_path / "d" / ".x.y.streamanon-partial.mkv",
        tmp_path / ".noext.streamanon-partial",
    ]
    for p in keep + drop:
        p.write_bytes(b"x")
    removed = clean_partials(tmp_path)
    assert sorted(removed) == sorted(drop)
    assert all(p.exists() for p in keep) and not any(p.exists() for p in drop)


def test_non_utf8_names_are_recorded_as_failures(tmp_path: Path, clip_factory: Callable[..., Path]) -> None:
    arch = tmp_path / "arch"
    arch.mkdir()
    clip = clip_factory("arch/ok.mp4", frames=2)
    os.rename(os.fsencode(clip), os.fsencode(arch) + b"/caf\xe9.mp4")
    (entry,) = list(walk(arch))
    assert entry.kind == "failed" and "UTF-8" in (entry.reason or "")
    assert entry.rel == "caf\\xe9.mp4"  # an escaped, storable key
    entry.rel.encode("utf-8")
