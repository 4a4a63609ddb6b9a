"""``eval adversary``: end to end on a few real identities (1 epoch), and its metrics."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamanon.cli import main
from streamanon.errors import ConfigError
from streamanon.eval import adversary
from streamanon.eval.adversary import headline, linkage, split_identities, subsample, tar_at_fmr
from streamanon.eval.identity import Reference
from streamanon.models.recognizer import Face

pytest.importorskip("dlib")
pytest.importorskip("torch")


def test_end_to_end_copy_is_linked_solid_is_not(data_dir: Path, tmp_path: Path) -> None:
    ids = data_dir / "identities"
    out = tmp_path / "adv.json"
    faces = f"{ids / 'dlib_johns'},{ids / 'face-api.js_bbt'}"
    sizes = ["--epochs", "1", "--max-identities", "6", "--max-photos", "3"]
    args = ["adversary", "--faces", faces, "--methods", "none,solid", *sizes, "--recognisers", "dlib"]
    code = main(["eval", *args, "--json", str(out)])
    assert code == 0
    res = json.loads(out.read_text())
    for name in ("none", "solid"):
        assert {"rank1", "chance", "linkage_auc", "holds", "worst_of"} <= set(res["methods"][name])
    (ds,) = res["datasets"].values()
    assert ds["identities"] == 6 and ds["test_identities"] >= 2 and ds["train_identities"] >= 2
    (per_set,) = res["sets"].values()
    for rec in ("dlib", "adversary"):
        copy = per_set["none"]["by_recogniser"][rec]
        assert copy["rank1"] >= 0.9 and copy["linkage_auc"] >= 0.95, (rec, copy)
        solid = per_set["solid"]["by_recogniser"][rec]
        assert solid["rank1"] <= solid["chance"] + 0.3 and solid["linkage_auc"] <= 0.75, (rec, solid)
    assert len(per_set["solid"]["by_recogniser"]["adversary"]["train_loss"]) == 1
    m = res["methods"]
    assert m["none"]["holds"] is False and m["none"]["linkage_auc"] >= 0.95
    assert m["solid"]["linkage_auc"] <= 0.75


def test_split_is_identity_disjoint() -> None:
    ids = ["a", "a", "b", "b", "b", "c", "d", "d", "e", "e"]
    train, test = split_identities(ids, 0.5, seed=3)
    assert sorted(train + test) == list(range(len(ids)))
    assert not {ids[i] for i in train} & {ids[i] for i in test}
    assert "c" not in {ids[i] for i in test}  # one photo: training only
    assert len({ids[i] for i in test}) == 2
    with pytest.raises(ConfigError):
        split_identities(["a", "a", "b"], 0.5, 0)


def _brute_auc(emb: np.ndarray, ids: list[str]) -> float:
    """Every (same, different) pair of pairs compared: ties count half."""
    d = np.linalg.norm(emb[:, None] - emb[None], axis=-1)
    iu = np.triu_indices(len(ids), 1)
    same = (np.array(ids)[:, None] == np.array(ids)[None, :])[iu]
    pos, neg = -d[iu][same], -d[iu][~same]
    return float(((pos[:, None] > neg[None]) + 0.5 * (pos[:, None] == neg[None])).mean())


def test_linkage_auc_is_the_pair_auc_ties_included() -> None:
    ids = ["a", "a", "b", "b", "c", "c", "c"]
    emb = np.array([[0, 0], [0, 1], [0, 1], [5, 5], [1, 0], [0, 0], [9, 9]], np.float32)  # equal distances tie
    got = linkage(emb, ids)
    assert got["linkage_auc"] == pytest.approx(_brute_auc(emb, ids))
    assert got["pairs_same"] == 5 and got["pairs_other"] == 16
    assert linkage(emb[:3], ["a", "b", "c"])["linkage_auc"] is None  # no same pair: no AUC


@pytest.mark.timeout(120)
def test_linkage_auc_scales_with_many_pairs() -> None:
    """A large identity set has ~10^5 pairs of distinct distances: sorting, not one pass per value."""
    rng = np.random.default_rng(0)
    ids = [str(i // 4) for i in range(600)]  # 179,700 pairs
    emb = rng.normal(size=(600, 2)).astype(np.float32)
    t0 = time.perf_counter()
    auc = linkage(emb, ids)["linkage_auc"]
    assert auc is not None and 0.4 < auc < 0.6
    assert time.perf_counter() - t0 < 10


def test_faceres_embeds_only_the_faces_it_scores() -> None:
    refs = [
        Reference(
            str(i // 2),
            f"{i}.jpg",
            np.full((40, 40, 3), i, np.uint8),
            Face(np.float32([5, 5, 35, 35]), _lm5()),
            np.zeros(128, np.float32),
        )
        for i in range(6)
    ]

    class Product:
        def prepare(self, images: Any, spec: Any) -> None:
            pass

        def run(self, image: np.ndarray, spec: Any, photo: int | None = None) -> Any:
            return type("Out", (), {"image": 255 - image})()

    class FaceRes:
        def __init__(self) -> None:
            self.seen: list[int] = []

        def embed(self, image: np.ndarray, faces: Any) -> np.ndarray:
            self.seen.append(int(255 - image[0, 0, 0]))
            return np.full((1, 4), image[0, 0, 0], np.float32)

    fr = FaceRes()
    faces = adversary.anonymised_faces(refs, Product(), None, fr, [4, 5, 1])  # type: ignore[arg-type]
    assert fr.seen == [1, 4, 5]  # the test rows only, not the training identities'
    assert faces.chips.shape == (6, 150, 150, 3)
    assert faces.faceres is not None and faces.faceres[:, 0].tolist() == [251, 250, 254]  # in the rows' order


def _lm5() -> np.ndarray:
    return np.float32([[30, 15], [24, 15], [10, 15], [16, 15], [20, 25]])


def test_html_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["eval", "adversary", "--faces", str(tmp_path), "--html", str(tmp_path / "r.html")]
    assert main(args) == ConfigError.exit_code
    err = capsys.readouterr().err.strip()
    assert "--html" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "r.html").exists()


def test_metrics() -> None:
    neg = np.linspace(0, 1, 1001)
    assert tar_at_fmr(np.array([0.995, 0.5, 2.0]), neg) == pytest.approx(2 / 3)
    per_set = {
        "A": {"m": {"by_recogniser": {"dlib": _sc(0.3, 0.2, 0.6), "adversary": _sc(0.5, 0.2, 0.8)}}},
        "B": {"m": {"by_recogniser": {"dlib": _sc(0.1, 0.05, 0.9)}}},
    }
    h = headline(per_set)["m"]
    assert h["worst_of"] == "A/adversary" and h["rank1"] == 0.5 and h["chance"] == 0.2
    assert h["linkage_auc"] == 0.9 and h["linkage_worst_of"] == "B/dlib" and h["holds"] is False


def _sc(r1: float, chance: float, auc: float) -> dict[str, float]:
    return {"rank1": r1, "chance": chance, "linkage_auc": auc}


def test_subsample_draws_multi_photo_identities() -> None:
    class R:
        def __init__(self, identity: str) -> None:
            self.identity = identity

    refs = [R(n) for n in ["a"] * 5 + ["b"] + ["c"] * 2 + ["d"] * 3]
    out = subsample(refs, 2, 2, seed=0)  # type: ignore[arg-type]
    names = [r.identity for r in out]
    assert len(set(names)) == 2 and "b" not in names and all(names.count(n) == 2 for n in set(names))
