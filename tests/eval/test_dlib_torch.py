"""The torch port of dlib's face recogniser agrees with dlib: the network on dlib's own
chips, the chip extraction pixel for pixel, and the two end to end; bad model files are
clear errors; the differentiable chips carry gradients back to the frame."""

from __future__ import annotations

import importlib.util
import re
from itertools import combinations
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from streamanon.errors import ConfigError, ModelError


def _need(module: str, extra: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (pip install 'streamanon[{extra}]')")


@pytest.fixture(scope="module")
def dt() -> Any:
    """The module; its reader and numpy chips need no torch."""
    _need("face_recognition_models", "eval")
    from streamanon.models import dlib_torch

    return dlib_torch


@pytest.fixture(scope="module")
def dw() -> Any:
    """The model file's reader (numpy only)."""
    _need("face_recognition_models", "eval")
    from streamanon.models import dlib_weights

    return dlib_weights


@pytest.fixture(scope="module")
def port(dt: Any) -> Any:
    _need("torch", "torch")
    import torch

    torch.set_num_threads(1)
    return dt.DlibTorchEmbedder()


def _rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path))
    assert bgr is not None, path
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


@pytest.fixture(scope="module")
def faces(data_dir: Path, need_dlib: None) -> list[tuple[str, np.ndarray, Any]]:
    """(identity, image, largest Face) for 2 photos of 2 identities in each shared folder."""
    from streamanon.models.recognizer import DlibRecogniser

    rec = DlibRecogniser(upsample=0)  # these faces are large; upsampling only costs time
    out = []
    for folder in ("dlib_johns", "face-api.js_bbt", "face_recognition_knn_examples/train"):
        for ident in sorted(p for p in (data_dir / "identities" / folder).iterdir() if p.is_dir())[:2]:
            for path in sorted(ident.iterdir())[:2]:
                img = _rgb(path)
                found = rec.detect(img)
                if found:
                    out.append((f"{folder}/{ident.name}", img, found[0]))
    assert len(out) >= 10
    return out


@pytest.fixture(scope="module")
def dlib_rec(need_dlib: None) -> Any:
    from streamanon.models.recognizer import DlibRecogniser

    return DlibRecogniser()


def _dlib_chips(rec: Any, img: np.ndarray, faces: list[Any]) -> np.ndarray:
    import dlib

    details = [dlib.get_face_chip_details(rec._shape_of(f), 150, 0.25) for f in faces]
    return np.stack([np.array(c) for c in dlib.extract_image_chips(img, details)])


def _decisions(e: np.ndarray) -> np.ndarray:
    from streamanon.models.recognizer import distance

    d = distance(e, e)
    return np.asarray(d[np.triu_indices(len(e), 1)] < 0.6)


def test_reader_builds_dlibs_architecture(dw: Any) -> None:
    w = dw.read_dlib_resnet()
    assert len(w.convs) == 29
    np.testing.assert_allclose(w.mean_rgb, [122.782, 117.001, 104.298], atol=1e-3)
    assert w.fc.shape == (256, 128)
    assert [c.stride for c in w.convs].count(2) == 5  # the stem and four downsampling blocks
    assert w.convs[0].weight.shape == (32, 3, 7, 7) and w.convs[-1].weight.shape == (256, 256, 3, 3)
    assert all(np.isfinite(c.weight).all() and np.abs(c.weight).max() > 0 for c in w.convs)


def test_missing_or_corrupt_model_file_is_a_model_error(dw: Any, tmp_path: Path) -> None:
    missing = tmp_path / "nope.dat"
    with pytest.raises(ModelError, match=r"nope\.dat"):
        dw.read_dlib_resnet(missing)
    real = dw._model_file(None).read_bytes()
    cases = {
        "truncated.dat": real[: 1 << 20],
        "garbage.dat": bytes(range(256)) * 64,
        "trailing.dat": real + b"\x00",
        "empty.dat": b"",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ModelError, match=re.escape(name)):
            dw.read_dlib_resnet(tmp_path / name)


def test_network_matches_dlib_on_aligned_chips(dt: Any, port: Any, faces: list[Any], dlib_rec: Any) -> None:
    chips = np.concatenate([_dlib_chips(dlib_rec, img, [f]) for _, img, f in faces])
    ref = np.array([np.array(dlib_rec._net.compute_face_descriptor(c), np.float32) for c in chips])
    ours = port.embed_chips(chips)
    assert np.abs(ours - ref).max() <= 1e-3
    assert (_decisions(ours) == _decisions(ref)).all()
    labels = [name for name, _, _ in faces]  # the decisions are not trivially all-different
    same = np.array([labels[i] == labels[j] for i, j in combinations(range(len(labels)), 2)])
    assert (_decisions(ref) & same).sum() >= 4


def test_chips_match_dlib_and_end_to_end_descriptors(
    dt: Any, port: Any, faces: list[Any], dlib_rec: Any, data_dir: Path
) -> None:
    cases = [(img, [f]) for _, img, f in faces]
    group = _rgb(data_dir / "identities" / "face-api.js_bbt" / "bbt1.jpg")  # faces cut jointly
    cases.append((group, dlib_rec.detect(group)))
    assert len(cases[-1][1]) >= 3
    _, img, face = faces[0]  # enlarged: the chip comes from a pyramid level >= 1
    big = cv2.resize(img, None, fx=6, fy=6, interpolation=cv2.INTER_LINEAR)
    big_face = dt.Face(face.box * 6, np.round(face.landmarks * 6).astype(np.float32))
    cases.append((big, [big_face]))
    plan = dt.chip_plan(big.shape[0], big.shape[1], [dt.face_chip_details(big_face)])
    assert plan.levels[0] >= 1
    differing = total = 0
    for image, fs in cases:
        ref_chips = _dlib_chips(dlib_rec, image, fs)
        ours = port.chips(image, fs)
        diff = np.abs(ref_chips.astype(np.int16) - ours.astype(np.int16))
        assert diff.max() <= 1
        differing, total = differing + int((diff > 0).sum()), total + diff.size
        ref = dlib_rec.embed(image, fs)
        assert np.abs(port.embed(image, fs) - ref).max() <= 1e-3
    assert differing <= 1e-4 * total  # off-by-one truncations only


def test_torch_chips_equal_numpy_and_carry_gradients(dt: Any, port: Any, faces: list[Any]) -> None:
    import torch

    _, img, face = faces[-1]  # a large photo: the chip comes from pyramid level 0
    details = [dt.face_chip_details(face)]
    x = torch.from_numpy(img.transpose(2, 0, 1).copy()).float().requires_grad_(True)
    chips = dt.extract_image_chips_torch(x, details)
    assert chips.shape == (1, 3, 150, 150)
    np.testing.assert_array_equal(chips.detach().numpy().transpose(0, 2, 3, 1), dt.extract_image_chips(img, details))
    port.net(chips).norm().backward()
    g = x.grad.abs().sum(0).numpy()
    x0, y0, x1, y1 = face.box.astype(int)
    assert g[max(y0, 0) : y1, max(x0, 0) : x1].mean() > 0
    r = details[0].rect
    far = g.copy()
    far[max(int(r[1]) - 20, 0) : int(r[3]) + 20, max(int(r[0]) - 20, 0) : int(r[2]) + 20] = 0
    assert far.max() == 0  # nothing outside the chip's region influences it


def test_bad_inputs_are_config_errors(dt: Any, port: Any, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"missing\.dat"):
        dt.load_dlib_resnet(tmp_path / "missing.dat")  # never a random network
    with pytest.raises(ConfigError, match="5 landmark"):
        dt.face_chip_details(np.zeros((68, 2)))
    with pytest.raises(ConfigError, match="uint8"):
        dt.extract_image_chips(np.zeros((10, 10, 3), np.float32), [])
    with pytest.raises(ConfigError, match="chips"):
        port.embed_chips(np.zeros((1, 112, 112, 3), np.uint8))
    assert port.embed(np.zeros((10, 10, 3), np.uint8), []).shape == (0, 128)
