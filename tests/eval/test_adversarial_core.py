"""The PGD core against the torch port of dlib's recogniser, on real aligned chips: the
L-inf bound holds exactly after uint8 rounding, a warm start is used, the untargeted,
targeted and k-anonymity objectives reach their goals, and the EOT effect survives a
JPEG-like round trip."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from streamanon.errors import ConfigError


@pytest.fixture(scope="module")
def torch() -> Any:
    for module, extra in (("torch", "torch"), ("face_recognition_models", "eval")):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed (pip install 'streamanon[{extra}]')")
    import torch

    torch.set_num_threads(1)
    return torch


@pytest.fixture(scope="module")
def ac(torch: Any) -> Any:
    from streamanon.anonymize import adversarial_core

    return adversarial_core


@pytest.fixture(scope="module")
def net(torch: Any) -> Any:
    from streamanon.models.dlib_torch import load_dlib_resnet

    return load_dlib_resnet()


@pytest.fixture(scope="module")
def frames(data_dir: Path, need_dlib: None, torch: Any) -> list[tuple[np.ndarray, Any]]:
    """One photo (RGB) and its largest face for three different identities."""
    from streamanon.models.recognizer import DlibRecogniser

    rec = DlibRecogniser(upsample=0)
    out = []
    for name in ("John_Salley", "John_Savage", "John_Simm"):
        path = sorted((data_dir / "identities" / "dlib_johns" / name).iterdir())[0]
        img = np.ascontiguousarray(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB))
        out.append((img, rec.detect(img)[0]))
    return out


@pytest.fixture(scope="module")
def chips(frames: list[Any], torch: Any) -> Any:
    """``(3, 3, 150, 150)`` float chips (integer code values) of three identities."""
    from streamanon.models.dlib_torch import extract_image_chips, face_chip_details

    c = np.concatenate([extract_image_chips(img, [face_chip_details(f)]) for img, f in frames])
    return torch.from_numpy(c.transpose(0, 3, 1, 2).copy()).float()


@pytest.fixture(scope="module")
def ref(net: Any, chips: Any, torch: Any) -> Any:
    with torch.no_grad():
        return net(chips)


def _dist(a: Any, b: Any) -> np.ndarray:
    return np.asarray(((a - b) ** 2).sum(-1).sqrt().detach().numpy())


def _as_uint8(x: Any) -> np.ndarray:
    return np.asarray(np.clip(np.rint(x.detach().numpy()), 0, 255).astype(np.uint8))


@pytest.mark.parametrize("epsilon", [3.0, 2.5])
def test_epsilon_bound_holds_exactly_after_uint8_rounding(
    ac: Any, net: Any, chips: Any, ref: Any, torch: Any, epsilon: float
) -> None:
    x = chips.clone()
    x[:, :, :10] = 0.0  # pixels at both ends of the range
    x[:, :, -10:] = 255.0
    mask = torch.ones_like(x[:, :1])
    mask[:, :, :, :20] = 0
    warm = torch.full_like(x, 40.0) * torch.where(torch.rand(x.shape) > 0.5, 1.0, -1.0)  # far outside the ball
    cfg = ac.PGDConfig(epsilon=epsilon, steps=2, step_size=7.0, random_start=3.0)
    r = ac.pgd(x, net, ac.Untargeted(ref), cfg, warm_start=warm, mask=mask)
    adv, orig = _as_uint8(r.adversarial).astype(int), _as_uint8(x).astype(int)
    assert np.abs(adv - orig).max() == int(epsilon)  # reached, never exceeded
    np.testing.assert_array_equal(r.adversarial.numpy(), np.rint(r.adversarial.numpy()))  # integer-valued
    assert float(r.adversarial.min()) >= 0 and float(r.adversarial.max()) <= 255
    assert float(r.delta[..., :20].abs().max()) == 0  # masked out
    # quantize_delta on non-integer images keeps the rounded result inside the ball too
    noisy = (torch.rand(2, 3, 8, 8) * 255).double()
    d = ac.quantize_delta(noisy, torch.randn(2, 3, 8, 8).double() * 20, epsilon)
    assert float(((noisy + d) - noisy).abs().max()) <= epsilon
    assert float((noisy + d).min()) >= 0 and float((noisy + d).max()) <= 255


def test_warm_start_is_used(ac: Any, net: Any, chips: Any, ref: Any, torch: Any) -> None:
    first = ac.pgd(chips, net, ac.Untargeted(ref), ac.PGDConfig(epsilon=4, steps=6))
    assert first.satisfied.all()
    zero_steps = ac.pgd(chips, net, ac.Untargeted(ref), ac.PGDConfig(epsilon=4, steps=0), warm_start=first.delta)
    torch.testing.assert_close(zero_steps.delta, first.delta)
    one_cfg = ac.PGDConfig(epsilon=4, steps=1)
    warm = ac.pgd(chips, net, ac.Untargeted(ref), one_cfg, warm_start=first.delta)
    cold = ac.pgd(chips, net, ac.Untargeted(ref), one_cfg)
    assert (_dist(warm.embeddings, ref) > _dist(cold.embeddings, ref) + 0.2).all()
    assert (_dist(warm.embeddings, ref) >= 0.9 * _dist(first.embeddings, ref)).all()


def test_untargeted_default_pushes_beyond_threshold(ac: Any, net: Any, chips: Any, ref: Any, torch: Any) -> None:
    r = ac.pgd(chips, net, ac.Untargeted(ref), ac.PGDConfig(epsilon=8))
    with torch.no_grad():
        d = _dist(net(torch.from_numpy(_as_uint8(r.adversarial)).float()), ref)  # as written to disk
    assert (d > 0.6).sum() >= 2
    assert r.satisfied.tolist() == (d > 0.6).tolist()


def test_targeted_moves_towards_the_decoy(ac: Any, net: Any, chips: Any, ref: Any) -> None:
    decoy = ref[[1, 2, 0]]  # each face towards another identity
    before = _dist(ref, decoy)
    r = ac.pgd(chips, net, ac.Targeted(decoy), ac.PGDConfig(epsilon=8))
    after = _dist(r.embeddings, decoy)
    assert (after < before - 0.2).all()
    assert (after < 0.6).sum() >= 2


def test_k_anonymity_ranks_the_true_identity_below_k(ac: Any, net: Any, chips: Any, ref: Any, torch: Any) -> None:
    gen = torch.Generator().manual_seed(1)
    extra = ref[[0, 1, 2]] + 0.25 * torch.randn(3, 128, generator=gen) / 128**0.5  # two photos per identity
    gallery = torch.cat([ref, extra, ref[[0, 1]].flip(0) * 0.9 + 0.1 * ref[[2, 2]]])  # 4 identities
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 3, 3])
    truth = torch.tensor([0, 1, 2])
    obj = ac.KAnonymity(gallery, labels, truth, k=3)
    assert not obj.satisfied(ref).any()
    r = ac.pgd(chips, net, obj, ac.PGDConfig(epsilon=8))
    d = ((r.embeddings[:, None] - gallery[None]) ** 2).sum(-1).sqrt()
    per_id = torch.stack([d[:, labels == i].min(1).values for i in range(4)], 1)
    rank = (per_id < per_id[torch.arange(3), truth][:, None]).sum(1)  # identities closer than the truth
    assert (rank >= 2).sum() >= 2
    assert r.satisfied.tolist() == (rank >= 2).tolist()
    with pytest.raises(ConfigError, match="k="):
        ac.KAnonymity(gallery, labels, truth, k=5)


def test_eot_survives_a_jpeg_like_round_trip(ac: Any, net: Any, chips: Any, ref: Any, torch: Any) -> None:
    x = chips[:1].clone().requires_grad_(True)
    y = ac.jpeg_approx(x, 75)
    y.sum().backward()
    assert float(x.grad.abs().min()) > 0  # straight-through: every pixel gets a gradient
    loss75 = float((y - x).abs().mean().detach())
    assert 0.5 < loss75 < 10  # lossy, but close
    assert float((ac.jpeg_approx(chips, 98) - chips).abs().mean()) < loss75
    torch.testing.assert_close(ac.resize_down_up(chips, 1.0), chips)
    eot = ac.EOTConfig(p_jpeg=1.0, jpeg_quality=(60, 80), p_resize=0.5)
    plain = ac.pgd(chips, net, ac.Untargeted(ref), ac.PGDConfig(epsilon=8, steps=6))
    robust = ac.pgd(chips, net, ac.Untargeted(ref), ac.PGDConfig(epsilon=8, steps=6, eot=eot))
    with torch.no_grad():
        d_robust = _dist(net(ac.jpeg_approx(robust.adversarial, 70)), ref)
        d_plain = _dist(net(ac.jpeg_approx(plain.adversarial, 70)), ref)
    assert (d_robust > 0.6).sum() >= 2
    assert d_robust.mean() >= d_plain.mean() - 0.05


def test_h264_like_quantisation_loses_more_at_higher_qp(ac: Any, chips: Any, torch: Any) -> None:
    x = chips[:1].clone().requires_grad_(True)
    y = ac.h264_approx(x, 22)
    y.sum().backward()
    # straight-through: every pixel gets a gradient, except where the output clamps to 0..255
    # (chip pixels outside the frame are 0 and the round trip can take them below it)
    inside = ((y > 0) & (y < 255)).all(dim=1, keepdim=True).expand_as(x)
    assert float(inside.float().mean()) > 0.5
    assert float(x.grad.abs()[inside].min()) > 0
    err = [float((ac.h264_approx(chips, qp) - chips).pow(2).mean().sqrt()) for qp in (0, 18, 28, 40)]
    assert err[0] < 2.0  # QP 0: only the colour conversion and 4:2:0 chroma
    assert err[0] < err[1] < err[2] < err[3]
    assert err[2] < 10  # lossy, but a face at QP 28 is still close
    with pytest.raises(ConfigError):
        ac.EOTConfig(h264_qp=(30, 20))
    with pytest.raises(ConfigError):
        ac.EOTConfig(p_h264=1.5)


def test_low_resolution_perturbation_is_smooth_and_bounded(ac: Any, net: Any, chips: Any, ref: Any, torch: Any) -> None:
    cfg = ac.PGDConfig(epsilon=6, steps=6, scale=4)
    r = ac.pgd(chips, net, ac.Untargeted(ref), cfg)
    full = ac.pgd(chips, net, ac.Untargeted(ref), ac.PGDConfig(epsilon=6, steps=6))
    assert float(r.delta.abs().max()) == 6  # the same exact bound
    np.testing.assert_array_equal(r.delta.numpy(), np.rint(r.delta.numpy()))

    def roughness(d: Any) -> float:  # mean absolute difference of neighbouring pixels
        return float((d[..., 1:] - d[..., :-1]).abs().mean() + (d[..., 1:, :] - d[..., :-1, :]).abs().mean())

    assert roughness(r.delta) < 0.5 * roughness(full.delta)  # measured 0.33
    assert (_dist(r.embeddings, ref) > 0.3).all()  # still an attack
    with pytest.raises(ConfigError, match="scale"):
        ac.PGDConfig(scale=0)
    # a warm start at full resolution is taken in at the low resolution
    warm = ac.pgd(chips, net, ac.Untargeted(ref), ac.PGDConfig(epsilon=6, steps=0, scale=4), warm_start=r.delta)
    torch.testing.assert_close(warm.delta, r.delta)  # kept as it was, not pooled


def test_frame_pixels_perturbed_through_differentiable_chips(
    ac: Any, net: Any, frames: list[Any], ref: Any, torch: Any
) -> None:
    from streamanon.models.dlib_torch import extract_image_chips_torch, face_chip_details

    img, face = frames[0]
    details = [face_chip_details(face)]
    x = torch.from_numpy(img.transpose(2, 0, 1).copy()).float()[None]
    mask = torch.zeros_like(x[:, :1])
    x0, y0, x1, y1 = (int(v) for v in face.box)
    mask[..., max(y0, 0) : y1, max(x0, 0) : x1] = 1

    def embed(frames_: Any) -> Any:
        return net(extract_image_chips_torch(frames_[0], details))

    r = ac.pgd(x, embed, ac.Untargeted(ref[:1]), ac.PGDConfig(epsilon=6, steps=4), mask=mask)
    assert float(r.delta.abs().max()) <= 6 and float((r.delta * (1 - mask)).abs().max()) == 0
    assert float(r.delta.abs().sum()) > 0
    assert _dist(r.embeddings, ref[:1])[0] > 0.6


def test_config_errors(ac: Any, torch: Any) -> None:
    for kwargs in ({"epsilon": 0.5}, {"steps": -1}, {"step_size": 0}, {"random_start": -1}):
        with pytest.raises(ConfigError):
            ac.PGDConfig(**kwargs)
    with pytest.raises(ConfigError):
        ac.EOTConfig(jpeg_quality=(90, 10))
    with pytest.raises(ConfigError, match="warm_start"):
        ac.pgd(torch.zeros(1, 3, 4, 4), lambda v: v.flatten(1), ac.Targeted(torch.zeros(1, 48)),
               warm_start=torch.zeros(2, 3, 4, 4))  # fmt: skip
    assert ac.PGDConfig(epsilon=8, steps=10).alpha() == 2.0
    assert ac.PGDConfig(epsilon=8, steps=1).alpha(warm=True) == 2.0
