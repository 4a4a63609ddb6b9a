"""The training loop: it learns, resumes exactly, stops cleanly, and refuses bad model files."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamanon.errors import ModelError


def _trainer(data: Any, **kw: Any) -> Any:
    from streamanon.generate.model import GeneratorConfig
    from streamanon.generate.train import TrainConfig, Trainer

    t = {"batch": 4, "id_weight": 0.0, "id_div_weight": 0.0} | kw
    return Trainer(data, GeneratorConfig(size=64, channels=8, d_channels=8), TrainConfig(**t), "cpu")


def test_training_improves_the_loss_on_a_fixed_batch(faces64: Any) -> None:
    from streamanon.generate.train import to_batch

    # the reconstruction terms alone (the diversity term, off by default, trades some of them for z)
    tr = _trainer(faces64, lr_g=2e-3, div_weight=0.0)
    fixed = to_batch(faces64, np.arange(4), "cpu")
    before = tr.evaluate(fixed, ema=False)
    assert tr.fit(30, progress=False)
    after = tr.evaluate(fixed, ema=False)
    assert tr.step == 30
    assert after["rec"] < 0.8 * before["rec"], (before, after)  # measured: 0.65x
    assert after["ctx"] < 0.8 * before["ctx"], (before, after)
    # every loss term was logged per epoch, and is finite
    last = tr.history.epochs[-1]
    assert {"d", "r1", "g_adv", "ctx", "rec"} <= set(last)
    assert all(np.isfinite(v) for v in last.values())


def _latent_effect(tr: Any, b: Any) -> float:
    import torch

    g = torch.Generator().manual_seed(7)
    n = len(b.chip)
    with torch.no_grad():
        z1, z2 = (torch.randn(n, tr.gcfg.z_dim, generator=g) for _ in range(2))
        a = tr.G(b.chip, b.mask, b.landmarks, z1)[1]
        c = tr.G(b.chip, b.mask, b.landmarks, z2)[1]
    return float(((a - c).abs() * b.mask).sum() / (b.mask.sum() * 3))


def test_the_mode_seeking_term_makes_the_latent_change_the_face(faces64: Any) -> None:
    from streamanon.generate.train import to_batch

    fixed = to_batch(faces64, np.arange(4), "cpu")
    plain = _trainer(faces64, lr_g=2e-3, div_weight=0.0)
    seeking = _trainer(faces64, lr_g=2e-3, div_weight=1.0, div_target=0.1)
    plain.fit(20, progress=False)
    seeking.fit(20, progress=False)
    assert seeking.history.epochs[-1]["div"] < 1.0  # logged, and below its maximum
    # same initialisation, same batches: only the term differs
    assert _latent_effect(seeking, fixed) > 3 * _latent_effect(plain, fixed)


def test_lowpass_l1_ignores_detail_inside_a_block_and_mode_seeking_is_bounded() -> None:
    import torch

    from streamanon.generate.losses import lowpass_l1, masked_l1, mode_seeking

    mask = torch.ones(1, 1, 16, 16)
    flat = torch.full((1, 3, 16, 16), 0.5)
    checker = flat + 0.2 * (torch.arange(16)[None, :] + torch.arange(16)[:, None]).remainder(2).sub(0.5).mul(2)
    assert float(masked_l1(checker, flat, mask)) == pytest.approx(0.2)
    assert float(lowpass_l1(checker, flat, mask, 8)) == pytest.approx(0.0, abs=1e-6)  # same block means
    assert float(lowpass_l1(flat + 0.1, flat, mask, 8)) == pytest.approx(0.1)  # a shift in colour is not free
    # only the masked half of a block counts: outside the mask anything goes
    half = torch.zeros_like(mask)
    half[..., :, :4] = 1
    other = flat.clone()
    other[..., :, 4:] = 1.0
    assert float(lowpass_l1(other, flat, half, 8)) == pytest.approx(0.0, abs=1e-6)
    z1, z2 = torch.zeros(1, 8), torch.ones(1, 8)
    assert float(mode_seeking(flat, flat, z1, z2, mask, 0.1)) == pytest.approx(1.0)  # no change: maximal loss
    assert float(mode_seeking(flat, flat + 0.5, z1, z2, mask, 0.1)) == 0.0  # past the bound: no push


def test_init_from_an_exported_onnx_copies_the_weights(
    tiny_checkpoint: Path, tiny_onnx: Path, faces64: Any, tmp_path: Path
) -> None:
    import torch

    from streamanon.generate.train import load_generator

    ref, _ = load_generator(tiny_checkpoint)
    for source in (tiny_onnx, tiny_checkpoint):
        tr = _trainer(faces64)
        tr.init_generator(source)
        for k, v in ref.state_dict().items():
            assert torch.equal(tr.G.state_dict()[k], v), (source, k)
            assert torch.equal(tr.G_ema.state_dict()[k], v), (source, k)
    with pytest.raises(ModelError, match=r"nope\.onnx"):
        tr.init_generator(tmp_path / "nope.onnx")


def test_resume_continues_exactly(tmp_path: Path, faces64: Any) -> None:
    import torch

    from streamanon.generate.train import Trainer

    straight = _trainer(faces64)
    straight.fit(4, progress=False)
    first = _trainer(faces64)
    ckpt = tmp_path / "m.pt"
    first.fit(2, ckpt, progress=False)
    resumed = Trainer.resume(ckpt, faces64)
    assert resumed.step == 2
    resumed.fit(4, ckpt, progress=False)
    for a, b in zip(straight.G.parameters(), resumed.G.parameters(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(straight.G_ema.parameters(), resumed.G_ema.parameters(), strict=True):
        assert torch.equal(a, b)


def test_identity_repulsion_runs_through_dlibs_recogniser(faces64: Any, need_dlib: None) -> None:
    tr = _trainer(faces64, id_weight=0.5, id_every=1, id_faces=2)
    assert tr.identity is not None
    tr.fit(1, progress=False)
    last = tr.history.epochs[-1]
    assert 0 <= last["id"] <= tr.identity.target
    assert last["id_dist"] > 0


def test_identity_targets_spread_latents_like_the_training_faces() -> None:
    import torch

    from streamanon.generate.losses import IdentityTargets, nearest_distance

    g = torch.Generator().manual_seed(0)
    # training descriptors with 3 strong directions of very different spread
    scales = torch.tensor([0.3, 0.1, 0.02])
    bank = torch.randn(400, 3, generator=g) * scales
    bank = torch.cat([bank, torch.zeros(400, 125)], 1) + 0.5
    tg = IdentityTargets.fit(bank, z_dim=64)
    assert tg.basis.shape == (128, 64)
    z = torch.randn(4000, 64, generator=g)
    t = tg.target(z)
    assert torch.allclose(t.mean(0), bank.mean(0), atol=0.02)
    assert torch.allclose(t[:, :3].std(0), bank[:, :3].std(0), rtol=0.1)  # spread per direction kept
    assert float(t[:, 3:].std(0).max()) < 1e-3  # nothing where the faces do not vary
    wide = IdentityTargets.fit(bank, z_dim=64, scale=2.0).target(z)
    assert torch.allclose(wide[:, :3].std(0), 2 * t[:, :3].std(0), rtol=0.05)
    # the same latent always gets the same target; two latents get different ones
    assert torch.equal(tg.target(z[:5]), tg.target(z[:5].clone()))
    assert float((t[0] - t[1]).norm()) > 0.05
    back = IdentityTargets.from_state(tg.state())
    assert torch.equal(back.target(z[:5]), tg.target(z[:5]))
    # the nearest training face, as cdist would say
    q = torch.randn(7, 128, generator=g)
    assert torch.allclose(nearest_distance(q, bank), torch.cdist(q, bank).min(1).values, atol=1e-4)
    with pytest.raises(ValueError, match="at least 2"):
        IdentityTargets.fit(bank[:1], 64)


def test_target_identity_terms_train_and_resume_with_their_targets(
    tmp_path: Path, faces64: Any, need_dlib: None
) -> None:
    import torch

    from streamanon.generate.losses import IdentityTargets
    from streamanon.generate.train import Trainer

    tr = _trainer(faces64, target_weight=1.0, bank_weight=1.0, id_every=1, id_faces=2)
    assert tr.identity is not None and tr.targets is None
    ckpt = tmp_path / "m.pt"
    tr.fit(2, ckpt, progress=False)
    last = tr.history.epochs[-1]
    assert last["tgt_dist"] > 0 and 0 <= last["tgt"] <= last["tgt_dist"]
    assert last["bank_dist"] > 0 and 0 <= last["bank"] <= tr.identity.target
    assert isinstance(tr.targets, IdentityTargets) and tr.targets.bank.shape == (len(faces64), 128)
    # the targets travel in the checkpoint: a resumed run pulls towards the same identities
    resumed = Trainer.resume(ckpt, faces64)
    assert resumed.targets is not None
    z = torch.randn(3, 64)
    assert torch.equal(resumed.targets.target(z), tr.targets.target(z))
    changed = Trainer.resume(ckpt, faces64, changes={"target_weight": 2.0})
    assert changed.tcfg.target_weight == 2.0 and changed.tcfg.bank_weight == 1.0
    assert changed.targets is not None  # same scale: same targets
    wider = Trainer.resume(ckpt, faces64, changes={"target_scale": 2.0})
    assert wider.targets is None  # refitted at the new scale by the first step that needs them
    assert torch.allclose(wider.identity_targets().basis, 2 * tr.targets.basis, atol=1e-5)


def test_identity_terms_on_two_latents_embed_each_original_once(faces64: Any, need_dlib: None) -> None:
    import torch

    tr = _trainer(faces64, id_weight=0.5, id_div_weight=1.0, target_weight=1.0, id_every=1, id_faces=2)
    assert tr.identity is not None
    calls: list[int] = []
    net = tr.identity.net
    hook = net.register_forward_hook(lambda m, i, o: calls.append(len(i[0])))
    try:
        tr.fit(1, progress=False)
    finally:
        hook.remove()
    # the 2 originals once, the 2 x 2 generated faces, then (first step only) the 8 training
    # faces for the targets
    assert calls == [2, 4, 8]
    last = tr.history.epochs[-1]
    assert {"id", "id_div", "id_pair", "tgt", "tgt_dist"} <= set(last)
    with pytest.raises(ValueError, match="3 generated faces for 2 originals"):
        tr.identity.embeddings(torch.zeros(3, 3, 64, 64), torch.zeros(2, 3, 64, 64), torch.zeros(2, 68, 2))


def test_ctrl_c_stops_after_the_step_with_a_usable_checkpoint(tmp_path: Path, faces64: Any) -> None:
    from streamanon.generate.train import load_generator

    tr = _trainer(faces64)
    ckpt = tmp_path / "m.pt"

    def interrupt(t: Any) -> None:
        os.kill(os.getpid(), signal.SIGINT)

    before = signal.getsignal(signal.SIGINT)
    assert tr.fit(100, ckpt, on_epoch=interrupt, progress=False) is False
    assert tr.step == tr.steps_per_epoch  # stopped right after the first epoch
    _, state = load_generator(ckpt)
    assert state["step"] == tr.step
    assert signal.getsignal(signal.SIGINT) is before  # the handler is restored


def test_missing_or_corrupt_checkpoints_are_model_errors_naming_the_file(tmp_path: Path) -> None:
    import torch

    from streamanon.generate.train import load_generator

    missing = tmp_path / "nope.pt"
    with pytest.raises(ModelError, match=r"nope\.pt"):
        load_generator(missing)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(os.urandom(300))
    with pytest.raises(ModelError, match=r"corrupt\.pt"):
        load_generator(corrupt)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(ModelError, match=r"other\.pt.*not a streamanon generator"):
        load_generator(other)


def test_weights_that_do_not_fit_are_a_model_error(tmp_path: Path, tiny_checkpoint: Path) -> None:
    import torch

    from streamanon.generate.train import load_generator

    state = torch.load(tiny_checkpoint, weights_only=True)
    state["G_ema"] = {k: v[..., :1] if v.ndim else v for k, v in state["G_ema"].items()}
    bad = tmp_path / "truncated.pt"
    torch.save(state, bad)
    with pytest.raises(ModelError, match=r"truncated\.pt"):
        load_generator(bad)


def test_time_limit_stops_with_a_checkpoint(tmp_path: Path, faces64: Any) -> None:
    from streamanon.generate.train import read_checkpoint

    tr = _trainer(faces64)
    ckpt = tmp_path / "m.pt"
    assert tr.fit(50, ckpt, progress=False, time_limit=0.0) is False
    assert tr.stopped_by == "time limit" and tr.step == 0
    assert read_checkpoint(ckpt)["step"] == 0
