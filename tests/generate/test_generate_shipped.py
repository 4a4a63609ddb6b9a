"""The shipped generator on real faces it was not trained on: the latent decides who the
synthetic person is, and nobody painted is the person replaced.

Faces: the held-out Big Bang Theory crops of ``identities/face-api.js_bbt`` (the model card's
memorisation set, never trained on), cut by the training pipeline's own chip builder,
embedded by dlib's recogniser at the original's landmarks (as ``eval generator`` does).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

PEOPLE = ("amy", "bernadette", "howard", "leonard", "penny", "raj", "sheldon", "stuart")
LATENTS = 3
#: two latents of one face called the same person by dlib, at most (measured 0.083 on these
#: 24 faces; the first shipped model: 1.000, every latent the same person)
MAX_SAME_RATE = 0.3
#: generated faces within dlib's threshold of the person they replaced on the 64 px chips,
#: at most (measured 1 of 72 at 0.574; 0 of 240 in the model card's check; whole photos
#: through the product: leakage 0 of 104 in ``eval identity``)
MAX_OWN_RATE = 0.05


def test_two_latents_give_two_people_and_none_is_the_original(tmp_path: Path, data_dir: Path, need_dlib: None) -> None:
    from streamanon.generate.data import ChipSettings, build_cache, scan_sources
    from streamanon.generate.memorisation import embed_chips
    from streamanon.models.generator import GeneratorRunner, default_model
    from streamanon.models.recognizer import DlibRecogniser

    model = default_model()
    if not model.is_file():
        pytest.skip(f"shipped generator {model} not found")
    root = data_dir / "identities" / "face-api.js_bbt"
    files = [p for name in PEOPLE for p in sorted((root / name).glob("*"))[:3] if p.is_file()]
    if len(files) < 8:
        pytest.skip(f"held-out faces not found under {root}")
    runner = GeneratorRunner(model)
    faces = build_cache(scan_sources(files), tmp_path / "cache", ChipSettings(size=runner.size))
    assert len(faces) >= 8
    rng = np.random.default_rng(0)
    rec = DlibRecogniser()
    real = embed_chips(rec, faces.chips, faces.landmarks)
    gen = []
    for _ in range(LATENTS):
        out = runner(faces.chips, faces.masks, faces.landmarks, runner.latents(len(faces), rng))
        gen.append(embed_chips(rec, out, faces.landmarks))
    own = np.concatenate([np.linalg.norm(g - real, axis=1) for g in gen])
    between = np.concatenate(
        [np.linalg.norm(gen[a] - gen[b], axis=1) for a in range(LATENTS) for b in range(a + 1, LATENTS)]
    )
    same_rate = float((between < rec.threshold).mean())
    print(f"{len(faces)} faces: two latents the same person {same_rate:.3f}, own min {own.min():.3f}")
    assert same_rate <= MAX_SAME_RATE, (same_rate, np.median(between))
    assert (own < rec.threshold).mean() <= MAX_OWN_RATE, np.sort(own)[:5]
