"""The surrogate bank's painted gender labels (``--keep gender``): computing them from the
paintings' readings, saving and loading them, and the draw that honours them."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
from test_surrogate import FakeLandmarker, FixedAttributes, dets, keep_bank, noise_image

from streamanon.anonymize.base import AnonymizerSession, FrameInfo
from streamanon.anonymize.surrogate import SurrogateAnonymizer
from streamanon.anonymize.surrogate_bank import KEEP_CONSISTENCY, SurrogateBank, default_bank, painted_labels
from streamanon.config import AnonymizeConfig
from streamanon.errors import ModelError

NAN = float("nan")


def test_painted_labels_are_the_majority_reading_and_its_share() -> None:
    male = np.array(
        [
            [0.9, 0.8, 0.7, 0.1],  # 3 of 4 read male (>= 0.6)
            [0.1, 0.2, 0.59, 0.95],  # 0.59 is female: 3 of 4 female
            [0.9, 0.1, NAN, NAN],  # a tie of the 2 read: female, 0.5
            [NAN, NAN, NAN, NAN],  # never read: consistency 0
        ]
    )
    gender, consistency = painted_labels(male)
    assert gender.tolist() == ["male", "female", "female", "female"]
    assert np.allclose(consistency, [0.75, 0.75, 0.5, 0.0])
    with pytest.raises(ValueError, match="composites, paintings"):
        painted_labels(np.zeros(4))


def relabelled_bank(painted: list[str], consistency: list[float]) -> SurrogateBank:
    """``keep_bank`` (tile genders female, male, ... alternating) with painted labels."""
    return keep_bank().relabelled(np.array(painted), np.array(consistency))


def test_painted_labels_round_trip_and_a_bank_without_them_saves_as_before(tmp_path: Any) -> None:
    plain = keep_bank()
    plain.save(tmp_path / "plain.npz")
    with np.load(tmp_path / "plain.npz") as z:
        assert not any(k.startswith("painted") for k in z.files)  # a built bank's file is unchanged
    loaded = SurrogateBank.load(tmp_path / "plain.npz")
    assert loaded.painted_gender is None and loaded.painted_consistency is None
    bank = relabelled_bank(["male"] * 4 + ["female"] * 4, [1.0, 0.9, 0.8, 0.5, 1.0, 0.75, 0.85, 0.0])
    bank.save(tmp_path / "relabelled.npz")
    back = SurrogateBank.load(tmp_path / "relabelled.npz")
    assert back.painted_gender is not None and back.painted_consistency is not None
    assert back.painted_gender.tolist() == ["male"] * 4 + ["female"] * 4
    assert np.allclose(back.painted_consistency, [1.0, 0.9, 0.8, 0.5, 1.0, 0.75, 0.85, 0.0])
    assert (back.faces == plain.faces).all() and (back.gender == plain.gender).all()
    one = back.only(5)  # what the relabel paints: composite 5 alone, with its labels
    assert len(one) == 1 and (one.faces[0] == plain.faces[5]).all() and one.gender.tolist() == ["male"]
    assert one.painted_gender is not None and one.painted_consistency is not None
    assert one.painted_gender.tolist() == ["female"] and np.allclose(one.painted_consistency, [0.75])
    vecs = np.arange(8 * 128, dtype=np.float32).reshape(8, 128)
    one = dataclasses.replace(back, dlib=vecs).only(5)  # and its dlib vector (the distinct draw)
    assert one.dlib is not None and (one.dlib == vecs[5:6]).all()


def test_bad_painted_labels_are_refused(tmp_path: Any) -> None:
    b = keep_bank()
    with pytest.raises(ValueError, match="expected 8"):
        b.relabelled(np.array(["male"] * 7), np.ones(7))
    with pytest.raises(ValueError, match="male/female"):
        b.relabelled(np.array(["man"] * 8), np.ones(8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        b.relabelled(np.array(["male"] * 8), np.full(8, 1.5))
    fields = {
        k: getattr(b, k) for k in ("faces", "shape", "triangles", "gender", "age_band", "min_dlib", "min_faceres")
    }
    f = tmp_path / "bad.npz"
    np.savez(f, **fields, k=np.int32(b.k), painted_gender=np.array(["male"] * 3), painted_consistency=np.ones(3))
    with pytest.raises(ModelError, match=r"not a surrogate bank.*expected 8"):
        SurrogateBank.load(f)
    np.savez(f, **fields, k=np.int32(b.k), painted_consistency=np.ones(8))
    with pytest.raises(ModelError, match="painted_gender"):  # one of the two alone
        SurrogateBank.load(f)


def test_keeps_gender_takes_the_consistent_painted_label_over_the_tile() -> None:
    # tile genders: female, male, female, male, ...; painted: the first four male, the rest female
    t = KEEP_CONSISTENCY
    bank = relabelled_bank(["male"] * 4 + ["female"] * 4, [1.0, t, t - 0.01, 0.5, 1.0, t - 0.2, 1.0, t])
    assert np.flatnonzero(bank.keeps_gender("male")).tolist() == [0, 1]  # 2, 3: too inconsistent
    assert np.flatnonzero(bank.keeps_gender("female")).tolist() == [4, 6, 7]
    assert np.flatnonzero(keep_bank().keeps_gender("male")).tolist() == [1, 3, 5, 7]  # not relabelled: the tile


def draw_tracks(bank: SurrogateBank, gender: str, tracks: int = 12) -> SurrogateAnonymizer:
    a = SurrogateAnonymizer(
        AnonymizeConfig(method="surrogate", seed=5, keep=("gender",)),
        bank,
        FakeLandmarker(),
        FixedAttributes(gender, "young"),
    )
    session = AnonymizerSession(a)
    boxes = [[10 + 25 * i, 60, 32 + 25 * i, 82] for i in range(tracks)]
    for f in range(2):
        session(noise_image(), dets(boxes, list(range(tracks))), FrameInfo(f))
    return a


def test_keep_gender_draws_the_consistent_painted_label() -> None:
    """A man gets only composites read as men once painted (0 and 2 are women on the tile, 1
    and 3 men on the tile whose paintings read female or both ways)."""
    bank = relabelled_bank(["male", "female", "male", "male"] + ["female"] * 4, [1.0, 1.0, 1.0, 0.6] + [1.0] * 4)
    a = draw_tracks(bank, "male")
    assert {a.track_surrogate(t) for t in range(12)} == {0, 2}
    assert a.kept == {"drawn": 12}


def test_keep_gender_without_a_consistent_composite_draws_from_the_whole_bank_counted() -> None:
    bank = relabelled_bank(["male"] * 2 + ["female"] * 6, [0.7, 0.6] + [1.0] * 6)
    a = draw_tracks(bank, "male")
    drawn = {a.track_surrogate(t) for t in range(12)}
    assert len(drawn) > 2 and drawn <= set(range(8))
    assert a.kept == {"gender-unmet": 12, "drawn": 12}
    assert a.report()["keep_draws"] == {"gender-unmet": 12, "drawn": 12}


def test_shipped_bank_is_relabelled_with_both_genders_consistent() -> None:
    bank = default_bank()
    assert bank.painted_gender is not None and bank.painted_consistency is not None
    for g in ("male", "female"):
        assert bank.keeps_gender(g).sum() >= 3, g


def test_eval_method_spec_takes_keep() -> None:
    """``eval identity --methods surrogate:keep=gender`` (or ``surrogate:gender``) measures
    ``--keep gender`` (eval has no ``--keep`` flag: ``eval temporal`` has a ``--keep DIR``)."""
    from streamanon.errors import ConfigError
    from streamanon.eval.product import parse_methods

    specs = parse_methods("surrogate,surrogate:keep=gender,surrogate:age", AnonymizeConfig(seed=0))
    assert [s.config.keep for s in specs] == [(), ("gender",), ("age",)]
    with pytest.raises(ConfigError, match="keep"):
        parse_methods("surrogate:keep=hair", AnonymizeConfig(seed=0))
