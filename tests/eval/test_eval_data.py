"""Annotation parsers and identity folders on the real data, and their one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamanon.errors import ConfigError, SourceOpenError
from streamanon.eval.data import detect_format, iter_images, load_annotations, load_identities


def test_wider_subset(data_dir: Path) -> None:
    root = data_dir / "detection_gt" / "widerface_val_subset"
    gts = load_annotations(root / "wider_face_val_bbx_gt__subset.txt", root / "images")
    assert len(gts) == 198
    assert sum(len(g.boxes) for g in gts) == 2651  # as counted in MANIFEST.md
    # 107 faces carry WIDER's `invalid` flag; 0_Parade_Parade_0_275 lists one empty box.
    assert sum(int(g.ignore.sum()) for g in gts) == 108
    first = gts[0]
    assert first.name == "0--Parade/0_Parade_Parade_0_12.jpg" and first.path.is_file()
    np.testing.assert_allclose(first.boxes[0], [127, 201, 145, 221])  # x1 y1 w h -> xyxy


def test_dlib_xml(data_dir: Path) -> None:
    folder = data_dir / "detection_gt" / "dlib_examples_faces"
    test = load_annotations(folder / "testing.xml", folder)
    train = load_annotations(folder / "training.xml", None)  # images beside the XML
    assert (len(test), sum(len(g.boxes) for g in test)) == (5, 25)
    assert (len(train), sum(len(g.boxes) for g in train)) == (4, 18)
    np.testing.assert_allclose(test[0].boxes[0], [274, 181, 326, 234])  # top/left/width/height


def test_youtube_faces_centre_boxes_and_video_frames(data_dir: Path) -> None:
    root = data_dir / "video_face_gt" / "youtube_faces_pftracker"
    vid = load_annotations(root / "Aaron_Guiel" / "Aaron_Guiel5.labeled_faces.txt", root / "Aaron_Guiel")
    assert len(vid) == 132 and vid[0].frame == 0 and vid[-1].frame == 131
    assert vid[0].path.suffix == ".avi"
    np.testing.assert_allclose(vid[0].boxes[0], [185 - 23.5, 83 - 23.5, 185 + 23.5, 83 + 23.5])  # centre format
    frames = list(iter_images(vid, every=33))
    assert [g.frame for g, _ in frames] == [0, 33, 66, 99]
    assert frames[0][1].shape == (240, 320, 3)
    jpg = load_annotations(root / "Albert_Brooks" / "Albert_Brooks0.labeled_faces.txt", root)
    assert len(jpg) == 217 and jpg[0].frame is None and jpg[0].path.name == "0.590.jpg"


def test_detect_format(data_dir: Path) -> None:
    assert detect_format(data_dir / "detection_gt" / "dlib_examples_faces" / "testing.xml") == "dlib-xml"
    assert (
        detect_format(data_dir / "detection_gt" / "widerface_val_subset" / "wider_face_val_bbx_gt__subset.txt")
        == "wider"
    )
    yt = data_dir / "video_face_gt" / "youtube_faces_pftracker" / "Albert_Brooks" / "Albert_Brooks0.labeled_faces.txt"
    assert detect_format(yt) == "youtube-faces"


def test_malformed_annotations(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"")
    bad = tmp_path / "bad.txt"
    bad.write_text("a.jpg\nthree\n")
    with pytest.raises(SourceOpenError, match=r"bad.txt:2: malformed WIDER annotation"):
        load_annotations(bad, tmp_path, "wider")
    bad.write_text("a.jpg\n2\n1 2 3 4 0 0 0 0 0 0\n")
    with pytest.raises(SourceOpenError, match="says 2 faces but the file ends"):
        load_annotations(bad, tmp_path, "wider")
    bad.write_text("missing.jpg\n1\n1 2 3 4 0 0 0 0 0 0\n")
    with pytest.raises(SourceOpenError, match="not found"):
        load_annotations(bad, tmp_path, "wider")
    xml = tmp_path / "bad.xml"
    xml.write_text("<dataset><images><image file='a.jpg'>")
    with pytest.raises(SourceOpenError, match="malformed XML"):
        load_annotations(xml, tmp_path)
    yt = tmp_path / "x.labeled_faces.txt"
    yt.write_text("S\\0\\0.1.jpg,0,a,b,c,d,0.0,1\n")
    with pytest.raises(SourceOpenError, match="malformed YouTube Faces box"):
        load_annotations(yt, tmp_path, "youtube-faces")
    odd = tmp_path / "odd.txt"
    odd.write_text("hello\n")
    with pytest.raises(SourceOpenError, match="cannot tell the format"):
        load_annotations(odd, tmp_path)
    with pytest.raises(ConfigError, match="unknown annotation format"):
        load_annotations(odd, tmp_path, "coco")


def test_identity_folders(tmp_path: Path, data_dir: Path) -> None:
    johns = data_dir / "identities" / "dlib_johns"
    items = load_identities([johns])
    assert len(items) == 55 and len({i.identity for i in items}) == 5
    bbt = load_identities([johns, data_dir / "identities" / "face-api.js_bbt"])  # group shots skipped
    assert len(bbt) == 95 and "face-api.js_bbt/penny" in {i.identity for i in bbt}
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceOpenError, match="no identity sub-folders with images"):
        load_identities([empty])
    (empty / "loose.jpg").write_bytes(b"x")
    (empty / "person").mkdir()
    (empty / "person" / "notes.txt").write_text("no images")
    with pytest.raises(SourceOpenError, match="no identity sub-folders with images"):
        load_identities([empty])
    with pytest.raises(SourceOpenError, match="not found"):
        load_identities([tmp_path / "nope"])
    with pytest.raises(SourceOpenError, match="got a file"):
        load_identities([empty / "loose.jpg"])
