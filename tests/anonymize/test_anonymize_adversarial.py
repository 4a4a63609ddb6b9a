"""``--method adversarial``: the written pixels obey the epsilon bound exactly and only inside
the face mask, the recogniser is pushed past its threshold, the warm start follows the
face per track and resets on a new track, failures fail closed, and the CLI, live and
batch paths run it on real frames."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from mediautil import decode, reencode

from streamanon.anonymize import AnonymizerFactory, FrameInfo
from streamanon.anonymize.mask import face_region, union_mask
from streamanon.config import AnonymizeConfig, DetectConfig, PipelineConfig
from streamanon.errors import ConfigError, MissingDependencyError
from streamanon.types import SOURCE_TRACK, Detections, Frame

CLIP = "videos/sadtalker__WDA_AlexandriaOcasioCortez_000.mp4"  # one large frontal face, 512x512
PAD = 80


def _need(module: str, extra: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (pip install 'streamanon[{extra}]')")


@pytest.fixture(scope="module")
def torch() -> Any:
    _need("torch", "torch")
    _need("dlib", "align")
    _need("face_recognition_models", "align")
    import torch

    torch.set_num_threads(1)
    return torch


@pytest.fixture
def few_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests of geometry and plumbing, not of effectiveness: a short first-frame PGD."""
    from streamanon.anonymize import adversarial

    monkeypatch.setattr(adversarial, "COLD_STEPS", 4)


@pytest.fixture(scope="module")
def factory(torch: Any) -> AnonymizerFactory:
    """The default adversarial method (models loaded once for the module), fixed seed."""
    return AnonymizerFactory(AnonymizeConfig(method="adversarial", seed=7))


@pytest.fixture(scope="module")
def face(data_dir: Path, torch: Any) -> tuple[np.ndarray, Detections]:
    """A real photo with a grey border and the product detector's face on it."""
    from streamanon.detect import create_detector
    from streamanon.io import read_image

    path = sorted((data_dir / "identities" / "dlib_johns" / "John_Salley").iterdir())[0]
    img = read_image(path).image
    img = np.ascontiguousarray(cv2.copyMakeBorder(img, PAD, PAD, PAD, PAD, cv2.BORDER_CONSTANT, value=(114, 114, 114)))
    dets = create_detector(DetectConfig(threads=1, backend="onnxruntime"))([img])[0]
    assert len(dets) == 1
    return img, dataclasses.replace(dets, track_id=np.array([1], np.int64))


def _shift(img: np.ndarray, dets: Detections, dx: int, dy: int) -> tuple[np.ndarray, Detections]:
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    out = cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), borderMode=cv2.BORDER_REPLICATE)
    d = np.array([dx, dy], np.float32)
    return out, dataclasses.replace(dets, xyxy=dets.xyxy + np.tile(d, 2), landmarks=dets.landmarks + d)


def test_written_pixels_obey_the_bound_only_inside_the_mask(
    torch: Any, face: tuple[np.ndarray, Detections], few_steps: None
) -> None:
    img, dets = face
    cfg = AnonymizeConfig(method="adversarial", epsilon=3.0, seed=1)
    an = AnonymizerFactory(cfg)()
    an.track_started(1, FrameInfo(0))
    out = an.apply(img, dets, FrameInfo(0))
    diff = np.abs(out.astype(int) - img.astype(int))
    inside = union_mask(dets, img.shape[1], img.shape[0], cfg.shape, cfg.mask_scale, cfg.mask_margin)
    assert diff[~inside].max() == 0  # nothing outside the face mask changes
    assert diff[inside].max() == 3  # the bound is reached and never exceeded
    assert (diff[inside] > 0).mean() > 0.5  # and the face is perturbed, not left as it was
    assert an.report()["perturbed_faces"] == 1


def test_default_pushes_the_recogniser_past_its_threshold(
    torch: Any, factory: AnonymizerFactory, face: tuple[np.ndarray, Detections]
) -> None:
    from streamanon.models.dlib_torch import DlibTorchEmbedder
    from streamanon.models.recognizer import THRESHOLD, Face

    img, dets = face
    an = factory()
    an.track_started(1, FrameInfo(0))
    out = an.apply(img, dets, FrameInfo(0))
    assert factory.adversarial is not None
    lm = factory.adversarial.landmarker(img, dets.xyxy)[0]
    emb = DlibTorchEmbedder()
    f = Face(dets.xyxy[0], lm)
    d = float(np.linalg.norm(emb.embed(img, [f])[0] - emb.embed(out, [f])[0]))
    assert d > THRESHOLD
    an.track_ended(1, FrameInfo(0))
    (rec,) = an.report()["per_track"]
    assert rec["perturbed"] == 1 and rec["objective_met"] == 1 and abs(rec["distance_mean"] - d) < 0.05


class _Spy:
    """Records each pgd call's warm start and step count, then runs the real pgd."""

    def __init__(self, pgd: Any) -> None:
        self.pgd = pgd
        self.calls: list[tuple[Any, int, Any]] = []

    def __call__(
        self, images: Any, embed: Any, objective: Any, config: Any, warm_start: Any = None, mask: Any = None
    ) -> Any:
        res = self.pgd(images, embed, objective, config, warm_start, mask)
        self.calls.append((None if warm_start is None else warm_start.clone(), config.steps, res.delta.clone()))
        return res


def test_warm_start_follows_the_face_and_resets_on_a_new_track(
    torch: Any,
    factory: AnonymizerFactory,
    face: tuple[np.ndarray, Detections],
    monkeypatch: pytest.MonkeyPatch,
    few_steps: None,
) -> None:
    from streamanon.anonymize import adversarial, adversarial_core

    spy = _Spy(adversarial_core.pgd)
    monkeypatch.setattr(adversarial_core, "pgd", spy)
    img, dets = face
    moved, mdets = _shift(img, dets, 6, -4)  # the face moved between frames
    an = factory()
    an.track_started(1, FrameInfo(0))
    an.apply(img, dets, FrameInfo(0))
    an.apply(moved, mdets, FrameInfo(1))
    an.track_ended(1, FrameInfo(2))
    an.track_started(2, FrameInfo(2))
    new = dataclasses.replace(mdets, track_id=np.array([2], np.int64))
    an.apply(moved, new, FrameInfo(2))
    (w0, s0, d0), (w1, s1, _), (w2, s2, _) = spy.calls
    assert w0 is None and s0 == adversarial.COLD_STEPS
    assert w1 is not None and s1 == AnonymizeConfig().adv_steps
    assert w2 is None and s2 == adversarial.COLD_STEPS  # a new track starts from nothing
    # the warm start is the previous frame's perturbation, moved with the face: in the
    # moved frame's crop, shifted back, it matches the perturbation of frame 0
    cfg = factory.config
    reg0 = face_region(
        dets.xyxy[0], dets.landmarks[0], img.shape[1], img.shape[0], cfg.shape, cfg.mask_scale, cfg.mask_margin
    )
    assert reg0 is not None
    crop0 = adversarial._work_crop(adversarial_face_details(factory, img, dets), reg0, img.shape[1], img.shape[0])
    reg1 = face_region(
        mdets.xyxy[0], mdets.landmarks[0], img.shape[1], img.shape[0], cfg.shape, cfg.mask_scale, cfg.mask_margin
    )
    assert reg1 is not None
    crop1 = adversarial._work_crop(adversarial_face_details(factory, moved, mdets), reg1, img.shape[1], img.shape[0])
    full0 = np.zeros((*img.shape[:2], 3), np.float32)
    full1 = np.zeros_like(full0)
    h0, w0_ = crop0[3] - crop0[1], crop0[2] - crop0[0]
    h1, w1_ = crop1[3] - crop1[1], crop1[2] - crop1[0]
    full0[crop0[1] : crop0[3], crop0[0] : crop0[2]] = d0[0].numpy().transpose(1, 2, 0)[:h0, :w0_]
    full1[crop1[1] : crop1[3], crop1[0] : crop1[2]] = w1[0].numpy().transpose(1, 2, 0)[:h1, :w1_]
    back = np.roll(full1, (4, -6), axis=(0, 1))
    core = cv2.erode(reg0.mask, np.ones((9, 9), np.uint8)) > 0  # away from the mask's edge
    x0, y0, x1, y1 = reg0.roi
    a = full0[y0:y1, x0:x1][core].ravel()
    b = back[y0:y1, x0:x1][core].ravel()
    assert np.corrcoef(a, b)[0, 1] > 0.6


def adversarial_face_details(factory: AnonymizerFactory, img: np.ndarray, dets: Detections) -> Any:
    from streamanon.models.dlib_torch import face_chip_details

    assert factory.adversarial is not None
    return face_chip_details(factory.adversarial.landmarker(img, dets.xyxy)[0])


def test_rows_without_a_detection_get_the_solid_mask(
    torch: Any, factory: AnonymizerFactory, face: tuple[np.ndarray, Detections], few_steps: None
) -> None:
    img, dets = face
    box = dets.xyxy[0] + np.float32([150, 0, 150, 0])  # a second, coasting face beside it
    coast = Detections(box[None], np.float32([0.5]), None, np.array([3], np.int64), np.array([SOURCE_TRACK], np.uint8))
    both = Detections.concat([dets, coast])
    an = factory()
    for t in (1, 3):
        an.track_started(t, FrameInfo(0))
    out = an.apply(img, both, FrameInfo(0))
    cfg = factory.config
    reg = face_region(box, coast.landmarks[0], img.shape[1], img.shape[0], cfg.shape, cfg.mask_scale, cfg.mask_margin)
    assert reg is not None
    x0, y0, x1, y1 = reg.roi
    assert (out[y0:y1, x0:x1][reg.mask > 0] == 0).all()  # solid, the method's colour
    rep = an.report()
    assert rep["solid_rows"] == 1 and rep["perturbed_faces"] == 1
    an.track_ended(3, FrameInfo(1))
    assert an.report()["per_track"][0]["solid"] == 1


def test_an_error_masks_the_whole_frame(
    torch: Any, face: tuple[np.ndarray, Detections], monkeypatch: pytest.MonkeyPatch
) -> None:
    from streamanon.anonymize import adversarial_core
    from streamanon.pipeline import Pipeline, Stages

    img, dets = face

    def boom(*a: Any, **k: Any) -> Any:
        raise RuntimeError("out of memory")

    monkeypatch.setattr(adversarial_core, "pgd", boom)
    cfg = PipelineConfig(anonymize=AnonymizeConfig(method="adversarial"))
    stages = Stages(
        cfg, detector=lambda images: [dets[:1] for _ in images], anonymizer_factory=AnonymizerFactory(cfg.anonymize)
    )
    (res,) = list(Pipeline(cfg, stages).run([Frame(img, 0)]))
    assert res.failed is not None and "out of memory" in res.failed
    assert not res.image.any()  # the whole frame masked, the raw face never written


def test_options_fail_with_one_line_errors(torch: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from streamanon.anonymize.adversarial import AdversarialModels

    with pytest.raises(ConfigError, match="k-anonymity needs faces of other people"):
        AnonymizerFactory(AnonymizeConfig(method="adversarial", adv_objective="k-anonymity"))()
    with pytest.raises(ConfigError, match="/255 code values"):
        AnonymizerFactory(AnonymizeConfig(method="adversarial", epsilon=0.5))()
    with pytest.raises(ConfigError, match="--face-bank is for"):
        AnonymizerFactory(AnonymizeConfig(method="adversarial", face_bank="x"))
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="--device cuda"):
            AdversarialModels(AnonymizeConfig(method="adversarial", device="cuda"))
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'streamanon\[torch\]'"):
        AdversarialModels(AnonymizeConfig(method="adversarial"))


@pytest.mark.parametrize("objective", ["targeted", "k-anonymity"])
def test_bank_objectives_are_reached(
    torch: Any, face: tuple[np.ndarray, Detections], data_dir: Path, tmp_path: Path, objective: str
) -> None:
    from streamanon.detect import create_detector

    img, dets = face
    bank = tmp_path / "bank"
    for name in ("John_Savage", "John_Simm"):  # two other people
        (bank / name).mkdir(parents=True)
        for p in sorted((data_dir / "identities" / "dlib_johns" / name).iterdir())[:2]:
            (bank / name / p.name).symlink_to(p)
    cfg = AnonymizeConfig(method="adversarial", adv_objective=objective, epsilon=6.0, seed=3, k=3, face_bank=str(bank))  # type: ignore[arg-type]
    f = AnonymizerFactory(cfg)
    detector = create_detector(DetectConfig(threads=1, backend="onnxruntime"))
    f.load_bank(lambda image: detector([image])[0])
    assert f.adversarial is not None and f.adversarial.gallery is not None
    assert f.adversarial.gallery.identities == 2
    an = f()
    an.track_started(1, FrameInfo(0))
    an.apply(img, dets, FrameInfo(0))
    decoy = an._tracks.get(1).decoy
    an.apply(img, dets, FrameInfo(1))
    if objective == "targeted":
        assert decoy is not None and an._tracks.get(1).decoy is decoy  # one decoy for the whole track
        assert np.linalg.norm(f.adversarial.gallery.embeddings - decoy, axis=1).min() == 0  # a bank face
    an.track_ended(1, FrameInfo(2))
    assert an.report()["per_track"][0]["objective_met"] == 2


@pytest.mark.skipif(
    importlib.util.find_spec("torch") is None or not __import__("torch").cuda.is_available(),
    reason="no CUDA GPU visible to torch: --device cuda is tested on its CPU side only (ConfigError above)",
)
def test_cuda_device_obeys_the_bound(face: tuple[np.ndarray, Detections]) -> None:
    img, dets = face
    cfg = AnonymizeConfig(method="adversarial", epsilon=4.0, device="cuda", seed=0)
    an = AnonymizerFactory(cfg)()
    out = an.apply(img, dets, FrameInfo(0))
    inside = union_mask(dets, img.shape[1], img.shape[0], cfg.shape, cfg.mask_scale, cfg.mask_margin)
    diff = np.abs(out.astype(int) - img.astype(int))
    assert diff[~inside].max() == 0 and diff[inside].max() == 4


# -- the product's paths on a real clip -------------------------------------------------------


def _clip(data_dir: Path, dst: Path, n: int, fmt: str | None = None) -> Path:
    """The first ``n`` frames of the talking-head clip, re-encoded (H.264)."""
    reencode(data_dir / CLIP, dst, n, fmt=fmt)
    return dst


def _frames(path: Path) -> list[np.ndarray]:
    return decode(path)[0]


def _looks_unchanged(raw: list[np.ndarray], anon: list[np.ndarray]) -> None:
    assert len(raw) == len(anon), (len(raw), len(anon))
    for r, a in zip(raw, anon, strict=True):
        assert a.max() > 0  # not a masked (failed) frame
        assert float(np.abs(a.astype(int) - r.astype(int)).mean()) < 4  # the face is still there to see


def test_cli_runs_adversarial_on_a_real_clip(torch: Any, data_dir: Path, tmp_path: Path, few_steps: None) -> None:
    from streamanon.cli import main as cli_main

    clip = _clip(data_dir, tmp_path / "in.mp4", 4)
    out, rep = tmp_path / "out.mp4", tmp_path / "report.json"
    code = cli_main(
        [
            str(clip),
            "-o",
            str(out),
            "-q",
            "--method",
            "adversarial",
            "--steps",
            "1",
            "--seed",
            "0",
            "--report",
            str(rep),
        ]
    )
    assert code == 0
    _looks_unchanged(_frames(clip), _frames(out))
    anon = json.loads(rep.read_text())["summary"]["anonymizer"]
    assert anon["method"] == "adversarial" and anon["perturbed_faces"] == 4 and anon["steps"] == 1
    assert anon["per_track"][0]["perturbed"] == 4


def test_live_feed_accepts_adversarial(torch: Any, data_dir: Path, tmp_path: Path) -> None:
    ts = _clip(data_dir, tmp_path / "in.ts", 3, fmt="mpegts")
    out, rep = tmp_path / "out.ts", tmp_path / "live.json"
    with ts.open("rb") as fin, out.open("wb") as fout:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "streamanon",
                "-",
                "-o",
                "-",
                "--no-drop",
                "--method",
                "adversarial",
                "--steps",
                "1",
                "--report",
                str(rep),
            ],
            stdin=fin,
            stdout=fout,
            stderr=subprocess.PIPE,
            timeout=240,
        )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    raw = _frames(ts)
    for a in _frames(out):  # a live output may repeat frames to hold its rate
        assert a.max() > 0
        assert min(float(np.abs(a.astype(int) - r.astype(int)).mean()) for r in raw) < 4
    anon = json.loads(rep.read_text())["summary"]["anonymizer"]
    assert anon["method"] == "adversarial" and anon["perturbed_faces"] == 3


def test_batch_accepts_adversarial(torch: Any, data_dir: Path, tmp_path: Path, few_steps: None) -> None:
    from streamanon.cli import main as cli_main

    arch = tmp_path / "arch"
    arch.mkdir()
    clip = _clip(data_dir, arch / "talk.mp4", 3)
    out = tmp_path / "out"
    code = cli_main(
        ["batch", str(arch), "-o", str(out), "--jobs", "1", "-q", "--method", "adversarial", "--steps", "1"]
    )
    assert code == 0
    _looks_unchanged(_frames(clip), _frames(out / "talk.mp4"))


# -- generate --adversarial --------------------------------------------------------------------


@pytest.fixture(scope="module")
def gen_factory(torch: Any) -> AnonymizerFactory:
    """generate --adversarial at epsilon 3 (the shipped generator), fixed seed."""
    return AnonymizerFactory(AnonymizeConfig(method="generate", generate_adversarial=True, epsilon=3.0, seed=5))


def _distance_to_original(factory: AnonymizerFactory, img: np.ndarray, out: np.ndarray, dets: Detections) -> float:
    """dlib (torch port) distance between the original face and the written one, each at
    the 5 points fitted on its own pixels (what a recogniser would do)."""
    from streamanon.models.dlib_torch import DlibTorchEmbedder
    from streamanon.models.recognizer import Face

    assert factory.adversarial is not None
    lm = factory.adversarial.landmarker
    emb = DlibTorchEmbedder()
    a = emb.embed(img, [Face(dets.xyxy[0], lm(img, dets.xyxy)[0])])[0]
    b = emb.embed(out, [Face(dets.xyxy[0], lm(out, dets.xyxy)[0])])[0]
    return float(np.linalg.norm(a - b))


def test_generate_adversarial_moves_generated_pixels_by_at_most_epsilon_inside_the_mask(
    torch: Any, gen_factory: AnonymizerFactory, face: tuple[np.ndarray, Detections], few_steps: None
) -> None:
    from streamanon.anonymize.generate import GenerateAnonymizer
    from streamanon.anonymize.generate_adversarial import GenerateAdversarialAnonymizer

    img, dets = face
    cfg = gen_factory.config
    assert gen_factory.generate is not None
    an = gen_factory()
    assert isinstance(an, GenerateAdversarialAnonymizer)
    plain = GenerateAnonymizer(cfg, gen_factory.generate)  # same seed: the same latent, the same face
    for a in (an, plain):
        a.track_started(1, FrameInfo(0))
    out, gen = an.apply(img, dets, FrameInfo(0)), plain.apply(img, dets, FrameInfo(0))
    inside = union_mask(dets, img.shape[1], img.shape[0], cfg.shape, cfg.mask_scale, cfg.mask_margin)
    diff = np.abs(out.astype(int) - gen.astype(int))
    assert diff[~inside].max() == 0  # outside the mask: exactly generate's output
    assert diff[inside].max() == 3  # inside: the generated pixels moved by epsilon at most
    assert (diff[inside] > 0).mean() > 0.5
    assert np.abs(gen.astype(int) - img.astype(int))[inside].mean() > 10  # and those are generated, not raw
    # pushed further from the ORIGINAL face than the generated face alone
    pushed = _distance_to_original(gen_factory, img, out, dets)
    assert pushed > _distance_to_original(gen_factory, img, gen, dets) + 0.05
    an.track_ended(1, FrameInfo(1))
    rep = an.report()
    assert rep["faces"] == {"generate": 1}
    adv = rep["adversarial"]
    assert adv["perturbed_faces"] == 1 and adv["kept_rows"] == 0 and adv["epsilon"] == 3.0
    assert adv["per_track"][0]["perturbed"] == 1


def test_generate_adversarial_keeps_the_generator_output_where_it_cannot_perturb(
    torch: Any, gen_factory: AnonymizerFactory, face: tuple[np.ndarray, Detections], few_steps: None
) -> None:
    """A coasting row (no detection this frame) gets the generator's fallback, unperturbed:
    never its raw pixels."""
    img, dets = face
    box = dets.xyxy[0] + np.float32([150, 0, 150, 0])
    coast = Detections(box[None], np.float32([0.5]), None, np.array([3], np.int64), np.array([SOURCE_TRACK], np.uint8))
    an = gen_factory()
    for t in (1, 3):
        an.track_started(t, FrameInfo(0))
    out = an.apply(img, Detections.concat([dets, coast]), FrameInfo(0))
    cfg = gen_factory.config
    reg = face_region(box, coast.landmarks[0], img.shape[1], img.shape[0], cfg.shape, cfg.mask_scale, cfg.mask_margin)
    assert reg is not None
    x0, y0, x1, y1 = reg.roi
    assert not (out[y0:y1, x0:x1] == img[y0:y1, x0:x1]).all(axis=-1)[reg.mask > 0].any()  # no raw pixel left
    rep = an.report()
    assert rep["fallback_reasons"] == {"no-detection": 1}
    assert rep["adversarial"]["perturbed_faces"] == 1 and rep["adversarial"]["kept_rows"] == 1


def test_generate_adversarial_error_masks_the_whole_frame(
    torch: Any, face: tuple[np.ndarray, Detections], monkeypatch: pytest.MonkeyPatch
) -> None:
    from streamanon.anonymize import adversarial_core
    from streamanon.pipeline import Pipeline, Stages

    img, dets = face

    def boom(*a: Any, **k: Any) -> Any:
        raise RuntimeError("perturbation failed")

    monkeypatch.setattr(adversarial_core, "pgd", boom)
    cfg = PipelineConfig(anonymize=AnonymizeConfig(method="generate", generate_adversarial=True))
    stages = Stages(
        cfg, detector=lambda images: [dets[:1] for _ in images], anonymizer_factory=AnonymizerFactory(cfg.anonymize)
    )
    (res,) = list(Pipeline(cfg, stages).run([Frame(img, 0)]))
    assert res.failed is not None and "perturbation failed" in res.failed
    assert not res.image.any()  # neither the raw face nor an unperturbed generated one is written


def test_generate_adversarial_options(torch: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from streamanon.cli import main as cli_main
    from streamanon.eval.product import parse_methods

    still = tmp_path / "in.png"
    cv2.imwrite(str(still), np.full((64, 64, 3), 128, np.uint8))
    assert cli_main([str(still), "-o", str(tmp_path / "out.png"), "--method", "blur", "--adversarial"]) != 0
    err = capsys.readouterr().err.strip()
    assert "--adversarial is an option of --method generate" in err and "Traceback" not in err
    assert len(err.splitlines()) == 1

    with pytest.raises(ConfigError, match="--adversarial is for --method generate"):
        AnonymizerFactory(AnonymizeConfig(method="blur", generate_adversarial=True))
    with pytest.raises(ConfigError, match="/255 code values"):
        AnonymizerFactory(AnonymizeConfig(method="generate", generate_adversarial=True, epsilon=0.5))()
    with pytest.raises(ConfigError, match="k-anonymity needs faces of other people"):
        AnonymizerFactory(AnonymizeConfig(method="generate", generate_adversarial=True, adv_objective="k-anonymity"))()
    if not torch.cuda.is_available():  # --device cuda: a clear error on a machine without CUDA
        with pytest.raises(ConfigError, match="--device cuda: PyTorch sees no CUDA GPU"):
            AnonymizerFactory(AnonymizeConfig(method="generate", generate_adversarial=True, device="cuda"))
    specs = parse_methods("generate,generate:adv=4:steps=1,blur", AnonymizeConfig())
    assert [s.config.generate_adversarial for s in specs] == [False, True, False]
    assert specs[1].config.epsilon == 4.0 and specs[1].config.adv_steps == 1
    flagged = parse_methods("generate,blur", AnonymizeConfig(generate_adversarial=True))  # eval ... --adversarial
    assert [s.config.generate_adversarial for s in flagged] == [True, False]


def test_cli_runs_generate_adversarial_on_a_real_clip(
    torch: Any, data_dir: Path, tmp_path: Path, few_steps: None
) -> None:
    from streamanon.cli import main as cli_main

    clip = _clip(data_dir, tmp_path / "in.mp4", 3)
    out, rep = tmp_path / "out.mp4", tmp_path / "report.json"
    argv = [str(clip), "-o", str(out), "-q", "--method", "generate", "--adversarial", "--steps", "1"]
    assert cli_main([*argv, "--seed", "0", "--report", str(rep)]) == 0
    raw, anon = _frames(clip), _frames(out)
    assert len(raw) == len(anon) == 3 and all(a.max() > 0 for a in anon)  # no frame failed
    summary = json.loads(rep.read_text())["summary"]["anonymizer"]
    assert summary["method"] == "generate" and summary["faces"] == {"generate": 3}
    assert summary["adversarial"]["perturbed_faces"] == 3 and summary["adversarial"]["steps"] == 1
    assert summary["adversarial"]["per_track"][0]["perturbed"] == 3


def test_batch_accepts_generate_adversarial(torch: Any, data_dir: Path, tmp_path: Path, few_steps: None) -> None:
    from streamanon.cli import main as cli_main

    arch = tmp_path / "arch"
    arch.mkdir()
    _clip(data_dir, arch / "talk.mp4", 2)
    runs = {}
    for flags in ([], ["--adversarial", "--steps", "1"]):  # the same seed: the same generated face
        out = tmp_path / f"out{len(flags)}"
        argv = ["batch", str(arch), "-o", str(out), "--jobs", "1", "-q", "--method", "generate", "--seed", "0"]
        assert cli_main([*argv, *flags]) == 0
        runs[bool(flags)] = np.stack(_frames(out / "talk.mp4"))
    assert len(runs[True]) == 2 and all(a.max() > 0 for a in runs[True])
    # the flag reached the batch worker: the generated faces were perturbed (and only slightly)
    diff = np.abs(runs[True].astype(int) - runs[False].astype(int))
    assert 0 < diff.mean() < 2
