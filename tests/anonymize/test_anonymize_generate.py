"""``--method generate``: per-track latents, landmark smoothing, fallbacks, compositing that
keeps nothing of the face, fail-closed, and short file / live / batch runs."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mediautil import decode, reencode

from streamanon.anonymize import AnonymizerSession, FrameInfo
from streamanon.anonymize.align import five_from_68
from streamanon.anonymize.generate import (
    CARRY_FRAMES,
    GenerateAnonymizer,
    GenerateModels,
    LandmarkSmoother,
    extend_outside,
)
from streamanon.anonymize.mask import union_mask
from streamanon.config import AnonymizeConfig, PipelineConfig
from streamanon.errors import ConfigError, ModelError
from streamanon.models.generator import GeneratorRunner, default_model
from streamanon.pipeline import Pipeline, Stages
from streamanon.types import SOURCE_TRACK, Detections, Frame

W, H = 320, 240
A, B, C = (20.0, 20.0, 110.0, 120.0), (190.0, 30.0, 280.0, 130.0), (120.0, 130.0, 190.0, 215.0)
CLIP = "videos/sadtalker__WDA_AlexandriaOcasioCortez_000.mp4"  # one large frontal face

needs_model = pytest.mark.skipif(not default_model().is_file(), reason=f"shipped generator {default_model()} not found")


def shape68(box: tuple[float, float, float, float]) -> np.ndarray:
    """A plausible frontal 68-point face (iBUG order) filling ``box``: a stand-in for dlib."""
    u: list[tuple[float, float]] = []
    for t in np.linspace(0, math.pi, 17):  # jaw: image-left ear, chin, image-right ear
        u.append((0.5 - 0.45 * math.cos(t), 0.4 + 0.55 * math.sin(t)))
    u += [(x, 0.3) for x in np.linspace(0.15, 0.42, 5)] + [(x, 0.3) for x in np.linspace(0.58, 0.85, 5)]
    u += [(0.5, y) for y in np.linspace(0.38, 0.58, 4)] + [(x, 0.63) for x in np.linspace(0.42, 0.58, 5)]
    for cx, order in ((0.3, (180, 120, 60, 0, -60, -120)), (0.7, (180, 120, 60, 0, -60, -120))):
        u += [(cx + 0.07 * math.cos(math.radians(a)), 0.42 - 0.025 * math.sin(math.radians(a))) for a in order]
    u += [
        (0.5 + 0.16 * math.cos(math.radians(a)), 0.78 - 0.06 * math.sin(math.radians(a))) for a in range(180, -180, -30)
    ]
    u += [
        (0.5 + 0.1 * math.cos(math.radians(a)), 0.78 - 0.02 * math.sin(math.radians(a))) for a in range(180, -180, -45)
    ]
    x0, y0, x1, y1 = box
    return (np.array(u, np.float32) * [x1 - x0, y1 - y0] + [x0, y0]).astype(np.float32)


class FakeLandmarker:
    """``shape68`` of each box, or NaN / a misplaced fit when told (``mode``)."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.calls = 0

    def __call__(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        self.calls += 1
        out = (
            np.stack([shape68(tuple(float(v) for v in b)) for b in boxes])
            if len(boxes)
            else np.zeros((0, 68, 2), np.float32)
        )
        if self.mode == "nan":
            out[:] = np.nan
        elif self.mode == "off":  # a fit far from the detector's five points
            out += np.array([0.4 * (boxes[0, 2] - boxes[0, 0]), 0.0], np.float32)
        return out.astype(np.float32)


class Spy:
    """The real generator, recording the latents and batch sizes it is fed."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.size, self.z_dim = inner.size, inner.z_dim
        self.calls: list[np.ndarray] = []
        self.inputs: list[np.ndarray] = []

    def latents(self, n: int, rng: np.random.Generator) -> np.ndarray:
        out: np.ndarray = self.inner.latents(n, rng)
        return out

    def __call__(self, chips: np.ndarray, masks: np.ndarray, landmarks: np.ndarray, z: np.ndarray) -> np.ndarray:
        self.calls.append(z.copy())
        self.inputs.append(chips.copy())
        out: np.ndarray = self.inner(chips, masks, landmarks, z)
        return out


@pytest.fixture(scope="module")
def runner() -> GeneratorRunner:
    if not default_model().is_file():
        pytest.skip(f"shipped generator {default_model()} not found")
    return GeneratorRunner()


def _dets(*boxes: tuple[float, float, float, float], ids: list[int] | None = None, source: int = 0) -> Detections:
    xyxy = np.array(boxes, np.float32)
    five = np.stack([five_from_68(shape68(b)) for b in boxes])
    n = len(boxes)
    return Detections(
        xyxy,
        np.full(n, 0.9, np.float32),
        five,
        np.array(ids if ids else list(range(1, n + 1))),
        np.full(n, source, np.uint8),
    )


def _image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(40, 220, (H, W, 3), dtype=np.uint8)


def _anon(runner: Any, seed: int | None = 7, **cfg: Any) -> tuple[GenerateAnonymizer, Spy, FakeLandmarker]:
    spy, lm = Spy(runner), FakeLandmarker()
    config = AnonymizeConfig(method="generate", seed=seed, **cfg)
    return GenerateAnonymizer(config, GenerateModels(config, generator=spy, landmarker=lm)), spy, lm


def _run(
    anon: GenerateAnonymizer, frames: list[tuple[np.ndarray, Detections]]
) -> tuple[list[np.ndarray], dict[str, Any]]:
    session = AnonymizerSession(anon)
    outs = [session(img, d, FrameInfo(i, i / 25)) for i, (img, d) in enumerate(frames)]
    return outs, session.close()


def _inside(dets: Detections, config: AnonymizeConfig | None = None) -> np.ndarray:
    c = config or AnonymizeConfig(method="generate")
    return union_mask(dets, W, H, c.shape, c.mask_scale, c.mask_margin)


# -- latents -----------------------------------------------------------------------------
def test_one_latent_per_track_fed_in_every_frame_and_one_batch_a_frame(runner: GeneratorRunner) -> None:
    anon, spy, _ = _anon(runner)
    frames = [(_image(i), _dets(A, B, ids=[1, 2])) for i in range(3)] + [(_image(3), _dets(A, B, C, ids=[1, 2, 3]))]
    _, rep = _run(anon, frames)
    assert [len(z) for z in spy.calls] == [2, 2, 2, 3]  # one generator call per frame, all its faces
    z1 = [z[0] for z in spy.calls]
    z2 = [z[1] for z in spy.calls]
    for z in z1[1:]:
        np.testing.assert_array_equal(z, z1[0])
    for z in z2[1:]:
        np.testing.assert_array_equal(z, z2[0])
    assert not np.allclose(z1[0], z2[0]) and not np.allclose(spy.calls[3][2], z1[0])
    assert z1[0].shape == (runner.z_dim,) and 0.5 < float(z1[0].std()) < 1.5  # a standard-normal draw
    assert rep["faces"] == {"generate": 9} and rep["fallback"] is None
    assert [(t["track_id"], t["served"]) for t in rep["per_track"]] == [
        (1, {"generate": 4}),
        (2, {"generate": 4}),
        (3, {"generate": 1}),
    ]


def test_latents_come_from_the_run_secret_not_the_pixels(runner: GeneratorRunner) -> None:
    def first_z(seed: int | None, image_seed: int) -> np.ndarray:
        anon, spy, _ = _anon(runner, seed=seed)
        _run(anon, [(_image(image_seed), _dets(A, ids=[1]))])
        return spy.calls[0][0]

    # the same seed on two different pictures: the same code (nothing is read from the face)
    np.testing.assert_array_equal(first_z(5, 0), first_z(5, 1))
    # no seed: a fresh secret each run, even on the same picture
    assert not np.allclose(first_z(None, 0), first_z(None, 0))


def test_the_face_is_never_shown_to_the_model(runner: GeneratorRunner) -> None:
    anon, spy, _ = _anon(runner)
    dets = _dets(A, ids=[1])
    _run(anon, [(_image(), dets)])
    chips = spy.inputs[0]
    assert (chips == 128).all(axis=-1).mean() > 0.3  # the masked part of the chip is blank


# -- smoothing ----------------------------------------------------------------------------
def _track(
    n: int, speed: float, noise: float, seed: int = 0
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    truth, raw, boxes = [], [], []
    for i in range(n):
        dx = speed * i / 25
        box = (100.0 + dx, 60.0, 200.0 + dx, 170.0)
        t = shape68(box)
        truth.append(t)
        raw.append((t + rng.normal(0, noise, t.shape)).astype(np.float32))
        boxes.append(np.array(box, np.float32))
    return truth, raw, boxes


def _mean_dist(xs: list[np.ndarray], ys: list[np.ndarray]) -> float:
    return float(np.mean([np.sqrt(((x - y) ** 2).sum(1)).mean() for x, y in zip(xs, ys, strict=True)]))


def _errors(speed: float) -> tuple[float, float, float, float]:
    """Mean distance to the true points and frame-to-frame jitter, smoothed and raw (after
    a 10-frame warm-up)."""
    truth, raw, boxes = _track(60, speed, 1.5)
    sm = LandmarkSmoother()
    out = [sm.update(r, b, i / 25) for i, (r, b) in enumerate(zip(raw, boxes, strict=True))]
    return (
        _mean_dist(out[10:], truth[10:]),
        _mean_dist(raw[10:], truth[10:]),
        _mean_dist(out[11:], out[10:-1]),
        _mean_dist(raw[11:], raw[10:-1]),
    )


def test_smoothing_removes_landmark_jitter_at_rest() -> None:
    err_s, err_r, jit_s, jit_r = _errors(speed=0.0)
    assert jit_s < 0.4 * jit_r  # frame-to-frame jitter of a still face
    assert err_s < 0.7 * err_r


def test_smoothing_follows_a_moving_head() -> None:
    # a face width (100 px) per second: the filter does not lag behind the raw fit
    err_s, err_r, jit_s, jit_r = _errors(speed=100.0)
    assert err_s < 0.8 * err_r
    assert jit_s < jit_r


def test_carried_landmarks_follow_the_box_and_expire() -> None:
    sm = LandmarkSmoother()
    box = np.array([100, 60, 200, 170], np.float32)
    p = sm.update(shape68((100, 60, 200, 170)), box, 0.0)
    moved = sm.carry(box + np.array([10, 5, 10, 5], np.float32))
    assert moved is not None
    np.testing.assert_allclose(moved, p + np.array([10, 5], np.float32), atol=1e-4)
    for _ in range(CARRY_FRAMES - 1):
        assert sm.carry(box) is not None
    assert sm.carry(box) is None


# -- fallbacks ----------------------------------------------------------------------------
@pytest.mark.parametrize("fallback", ["blur", "solid"])
def test_small_faces_get_the_fallback(runner: GeneratorRunner, fallback: str) -> None:
    anon, spy, _ = _anon(runner, generate_fallback=fallback)
    small = (150.0, 100.0, 166.0, 118.0)  # 16 px < 24
    dets = _dets(A, small, ids=[1, 2])
    img = _image()
    (out,), rep = _run(anon, [(img, dets)])
    assert [len(z) for z in spy.calls] == [1]  # only the big face was generated
    inside = _inside(dets[1])
    if fallback == "solid":
        assert (out[inside] == 0).all()
    else:
        assert (out[inside] == img[inside]).all(axis=-1).mean() < 0.1
        assert out[inside].std() < 0.5 * img[inside].std()  # blurred: the random texture is gone
    assert rep["faces"] == {"generate": 1, fallback: 1} and rep["fallback_reasons"] == {"small": 1}
    assert rep["fallback"] == {"method": fallback, "faces": 1, "why": "small: 1"}
    assert rep["per_track"][1]["served"] == {fallback: 1}


def test_coasting_rows_carry_the_track_landmarks_then_fall_back(runner: GeneratorRunner) -> None:
    anon, spy, _ = _anon(runner)
    frames = [(_image(0), _dets(A, ids=[1]))]
    frames += [(_image(0), _dets(A, ids=[1], source=SOURCE_TRACK)) for _ in range(CARRY_FRAMES + 2)]
    frames += [(_image(0), _dets(B, ids=[2], source=SOURCE_TRACK))]  # a look-back row: no fit ever
    outs, rep = _run(anon, frames)
    assert rep["faces"] == {"generate": 1, "generate-carried": CARRY_FRAMES, "blur": 3}
    assert rep["fallback_reasons"] == {"no-detection": 3}
    assert len(spy.calls) == 1 + CARRY_FRAMES
    # carried frames reuse the track's code: one synthetic person
    assert all(np.array_equal(z[0], spy.calls[0][0]) for z in spy.calls)
    inside = _inside(_dets(B))
    assert (outs[-1][inside] == frames[-1][0][inside]).all(axis=-1).mean() < 0.1  # never raw


@pytest.mark.parametrize(("mode", "reason"), [("nan", "no-landmarks"), ("off", "implausible-landmarks")])
def test_missing_or_implausible_landmarks_fall_back(runner: GeneratorRunner, mode: str, reason: str) -> None:
    anon, spy, lm = _anon(runner, generate_fallback="solid")
    lm.mode = mode
    dets = _dets(A, ids=[1])
    (out,), rep = _run(anon, [(_image(), dets)])
    assert not spy.calls
    assert (out[_inside(dets)] == 0).all()
    assert rep["fallback_reasons"] == {reason: 1} and rep["faces"] == {"solid": 1}


# -- compositing --------------------------------------------------------------------------
def test_nothing_of_the_face_survives_inside_the_mask(runner: GeneratorRunner) -> None:
    dets = _dets(A, B, ids=[1, 2])
    inside = _inside(dets)
    img1 = _image(1)
    img2 = img1.copy()
    img2[inside] = _image(2)[inside]  # other faces, the same surroundings
    out1 = _run(_anon(runner)[0], [(img1, dets)])[0][0]
    out2 = _run(_anon(runner)[0], [(img2, dets)])[0][0]
    # the landmarks are the same (fake fit): the output is a function of the surroundings only
    np.testing.assert_array_equal(out1, out2)
    np.testing.assert_array_equal(out1[~inside], img1[~inside])  # nothing outside the mask changes
    assert (out1[inside] == img1[inside]).all(axis=-1).mean() < 0.05
    assert float(np.abs(out1[inside].astype(float) - img1[inside]).mean()) > 20


def test_extension_holds_only_generated_pixels() -> None:
    chip = np.zeros((16, 16, 3), np.uint8)
    mask = np.zeros((16, 16), np.uint8)
    mask[4:12, 5:11] = 1
    chip[mask > 0] = 200
    chip[mask == 0] = 7  # "real context"
    ext = extend_outside(chip, mask)
    assert (ext == 200).all()


def test_edge_colour_matches_the_surroundings(runner: GeneratorRunner) -> None:
    # a uniform blue surround: the generated face's edge meets it, its centre stays a face
    img = np.empty((H, W, 3), np.uint8)
    img[:] = (40, 60, 180)
    dets = _dets(A, ids=[1])
    anon = _anon(runner)[0]
    (out,), _ = _run(anon, [(img, dets)])
    inside = _inside(dets)
    from scipy.ndimage import binary_erosion

    edge = inside & ~binary_erosion(inside, iterations=2)
    core = binary_erosion(inside, iterations=25)
    d_edge = np.abs(out[edge].astype(float) - img[edge]).mean()
    d_core = np.abs(out[core].astype(float) - img[core]).mean()
    assert d_edge < 0.6 * d_core


# -- failure ------------------------------------------------------------------------------
class _ScriptDetector:
    def __init__(self, boxes: list[tuple[float, float, float, float]]) -> None:
        self.boxes = boxes

    def __call__(self, images: list[np.ndarray]) -> list[Detections]:
        return [_dets(*self.boxes) for _ in images]


class _Broken:
    size, z_dim = 64, 64

    def latents(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.standard_normal((n, 64), dtype=np.float32)

    def __call__(self, *a: Any) -> np.ndarray:
        raise RuntimeError("generator exploded")


def test_a_failing_generator_masks_the_frame() -> None:
    config = AnonymizeConfig(method="generate")
    anon = GenerateAnonymizer(config, GenerateModels(config, generator=_Broken(), landmarker=FakeLandmarker()))
    st = Stages(PipelineConfig(anonymize=config), detector=_ScriptDetector([A]), anonymizer=anon)
    frames = [Frame(_image(i), i) for i in range(3)]
    results = list(Pipeline(st.config, st).run(frames))
    assert len(results) == 3
    for r in results:
        assert r.failed is not None and "generator exploded" in r.failed
        assert not r.image.any()  # fully masked, never raw


def test_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="generate_fallback"):
        AnonymizeConfig(method="generate", generate_fallback="pixelate")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="generate_min_size"):
        AnonymizeConfig(method="generate", generate_min_size=2)
    with pytest.raises(ModelError, match=r"nowhere\.onnx"):
        GeneratorRunner("/nowhere.onnx")


# -- file, live and batch runs ------------------------------------------------------------
def _needs_dlib() -> None:
    pytest.importorskip("dlib", reason="dlib (the align extra) is needed for 68-point landmarks")


def _cut(src: Path, dst: Path, n: int, fmt: str | None = None) -> list[np.ndarray]:
    return reencode(src, dst, n, fmt=fmt, size=(512, 512))


def _decode(path: Path) -> list[np.ndarray]:
    return decode(path)[0]


def _face_changed(raw: list[np.ndarray], anon: list[np.ndarray]) -> None:
    assert len(raw) == len(anon)
    for r, a in zip(raw, anon, strict=True):
        face = (slice(150, 380), slice(180, 400))  # the clip's face (512x512, frontal)
        assert float(np.abs(a[face].astype(float) - r[face]).mean()) > 12
        corner = (slice(0, 60), slice(0, 60))
        assert float(np.abs(a[corner].astype(float) - r[corner]).mean()) < 4


@needs_model
def test_cli_run_on_a_shared_clip(tmp_path: Path, data_dir: Path) -> None:
    _needs_dlib()
    from streamanon.cli import main as cli_main

    raw = _cut(data_dir / CLIP, tmp_path / "in.mp4", 10)
    out, report = tmp_path / "out.mp4", tmp_path / "report.json"
    code = cli_main(
        [str(tmp_path / "in.mp4"), "-o", str(out), "--method", "generate", "--report", str(report), "--seed", "3"]
    )
    assert code == 0
    _face_changed(raw, _decode(out))
    anon = json.loads(report.read_text())["summary"]["anonymizer"]
    assert anon["method"] == "generate" and anon["generator"].endswith("generator-64.onnx")
    served = anon["per_track"][0]["served"]
    assert sum(served.values()) == 10 and served.get("generate", 0) >= 8


@needs_model
def test_engine_flags_reach_the_generator_and_the_report_says_so(tmp_path: Path, data_dir: Path) -> None:
    """``--backend``/``--precision``/``--threads`` are ``PipelineConfig.engine``: the generator
    loads on them, not on its own default (auto, OpenVINO on this CPU)."""
    _needs_dlib()
    from streamanon.cli import main as cli_main

    _cut(data_dir / CLIP, tmp_path / "in.mp4", 3)
    out, report = tmp_path / "out.mp4", tmp_path / "report.json"
    args = [str(tmp_path / "in.mp4"), "-o", str(out), "--method", "generate", "--report", str(report)]
    code = cli_main([*args, "--backend", "onnxruntime", "--precision", "fp32", "--threads", "1"])
    assert code == 0
    summary = json.loads(report.read_text())["summary"]
    assert summary["anonymizer"]["generator_backend"] == "onnxruntime fp32"
    cfg = PipelineConfig.from_dict({"detect": {"backend": "openvino", "threads": 2, "engine_dir": "x"}})
    assert (cfg.engine.backend, cfg.engine.threads, cfg.engine.engine_dir) == ("openvino", 2, "x")


@needs_model
def test_live_feed_with_generate(tmp_path: Path, data_dir: Path) -> None:
    _needs_dlib()
    raw = _cut(data_dir / CLIP, tmp_path / "in.ts", 10, fmt="mpegts")
    out, report = tmp_path / "out.ts", tmp_path / "live.json"
    with (tmp_path / "in.ts").open("rb") as fin, out.open("wb") as fout:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "streamanon",
                "-",
                "-o",
                "-",
                "--no-drop",
                "--report",
                str(report),
                "--method",
                "generate",
            ],
            stdin=fin,
            stdout=fout,
            stderr=subprocess.PIPE,
            timeout=240,
        )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    _face_changed(raw, _decode(out))
    anon = json.loads(report.read_text())["summary"]["anonymizer"]
    assert anon["method"] == "generate" and anon["faces"].get("generate", 0) >= 8


@needs_model
def test_batch_with_generate(tmp_path: Path, data_dir: Path) -> None:
    _needs_dlib()
    from streamanon.cli import main as cli_main

    arch, out = tmp_path / "arch", tmp_path / "out"
    arch.mkdir()
    raw = _cut(data_dir / CLIP, arch / "talk.mp4", 8)
    code = cli_main(["batch", str(arch), "-o", str(out), "--jobs", "1", "-q", "--method", "generate"])
    assert code == 0
    _face_changed(raw, _decode(out / "talk.mp4"))


# -- eval temporal ----------------------------------------------------------------------------
class _NoFaces:
    threshold = 0.6

    def detect(self, image: np.ndarray) -> list[Any]:
        return []

    def embed(self, image: np.ndarray, faces: Any) -> np.ndarray:
        return np.zeros((0, 128), np.float32)


def test_eval_temporal_flicker_and_background(tmp_path: Path, clip_factory: Any) -> None:
    from streamanon.eval.temporal import dets_from_records, score_output

    dets = _dets(A, ids=[4])
    back = dets_from_records(dets.to_records())
    np.testing.assert_allclose(back.xyxy, dets.xyxy, atol=0.01)
    assert back.track_id.tolist() == [4] and back.has_landmarks.all()
    inside = _inside(dets)
    rng = np.random.default_rng(0)
    moving = [rng.integers(0, 255, (H, W, 3), dtype=np.uint8) for _ in range(6)]

    def fill(i: int) -> np.ndarray:
        img = moving[i].copy()
        img[inside] = 90  # a constant replacement inside the mask
        return img

    orig = clip_factory("o.mp4", frames=6, pattern=lambda i: moving[i])
    filled = clip_factory("f.mp4", frames=6, pattern=fill)
    per_frame = [{"index": i, "faces": dets.to_records()} for i in range(6)]
    cfg = PipelineConfig(anonymize=AnonymizeConfig(method="generate"))
    same = score_output(orig, orig, per_frame, cfg, _NoFaces(), lambda images: [Detections.empty()], every=1)
    assert same["psnr_outside"] == 100.0 and same["flicker_ratio"] == pytest.approx(1.0)
    const = score_output(orig, filled, per_frame, cfg, _NoFaces(), lambda images: [Detections.empty()], every=1)
    assert const["flicker_ratio"] < 0.2 and const["psnr_outside"] < 100.0
    assert const["leakage"] is None and const["product_survival"] == 0.0
