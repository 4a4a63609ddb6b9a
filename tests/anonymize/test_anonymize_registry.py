"""The method registry is the factory's dispatch: one spec per method, checked against the
config and the model registry."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from streamanon.anonymize import METHODS, POOLED, AnonymizerFactory, AnonymizerSession, FrameInfo
from streamanon.anonymize.base import Anonymizer
from streamanon.anonymize.factory import CHIP_METHODS, SHARED_PARAMETERS, SPECS, MethodSpec
from streamanon.backends.registry import load_registry
from streamanon.config import AnonymizeConfig
from streamanon.errors import ConfigError
from streamanon.types import Detections

FIELDS = {f.name for f in dataclasses.fields(AnonymizeConfig)}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_each_spec_names_real_parameters_and_registry_models(name: str) -> None:
    spec = SPECS[name]
    assert spec.name == name
    assert set(spec.parameters) <= FIELDS, set(spec.parameters) - FIELDS
    assert set(spec.models) <= set(load_registry()["models"])


def test_flags_follow_from_the_specs() -> None:
    assert POOLED == {"k-same"} and CHIP_METHODS == {"k-same", "svd", "generate"}
    assert "none" in SPECS and "none" not in METHODS  # eval only
    with pytest.raises(ConfigError, match="unknown method 'none'"):
        AnonymizerFactory(AnonymizeConfig(method="none"))


@pytest.mark.parametrize("name", ["blur", "pixelate", "solid", "dp-pixelate"])
def test_the_factory_builds_through_the_spec(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    factory = AnonymizerFactory(AnonymizeConfig(method=name))
    built = factory()
    assert built.name == name and isinstance(built, Anonymizer)
    assert factory() is not built  # a fresh one per run
    # the dispatch is the spec's builder, not a branch in the factory
    marker = object()
    spec = dataclasses.replace(SPECS[name], build=lambda f, pool: marker)  # type: ignore[arg-type,return-value]
    monkeypatch.setattr(factory, "spec", spec)
    assert factory() is marker
    assert isinstance(spec, MethodSpec)


def test_the_session_drives_hooks_of_any_object_with_the_protocol() -> None:
    events: list[tuple[str, int]] = []

    class Duck:  # not a FaceAnonymizer subclass: the Protocol is what counts
        name = "duck"

        def track_started(self, track_id: int, info: FrameInfo) -> None:
            events.append(("start", track_id))

        def track_ended(self, track_id: int, info: FrameInfo) -> None:
            events.append(("end", track_id))

        def report(self) -> dict[str, int]:
            return {"seen": len(events)}

        def apply(self, image: np.ndarray, dets: Detections, info: FrameInfo | None = None) -> np.ndarray:
            return image.copy()

    class Plain:  # apply(image, dets) alone: driven without hooks
        name = "plain"

        def apply(self, image: np.ndarray, dets: Detections) -> np.ndarray:
            return image.copy()

    img = np.zeros((8, 8, 3), np.uint8)
    dets = Detections(np.array([[1, 1, 5, 5]], np.float32), np.ones(1, np.float32), track_id=np.array([7]))
    session = AnonymizerSession(Duck())
    session(img, dets, FrameInfo(0))
    assert session.close() == {"method": "duck", "tracks": 1, "seen": 2}
    assert events == [("start", 7), ("end", 7)]
    plain = AnonymizerSession(Plain())
    plain(img, dets, FrameInfo(0))
    assert plain.close() == {"method": "plain", "tracks": 1}


def test_every_config_field_is_one_methods_parameter_or_shared() -> None:
    """A new ``AnonymizeConfig`` field is either a method's own (its spec lists it: the schema
    then restricts its option to that method) or shared by every method: never neither."""
    own = {p for s in SPECS.values() for p in s.parameters}
    assert own | set(SHARED_PARAMETERS) == FIELDS, FIELDS - own - set(SHARED_PARAMETERS)
    assert not own & set(SHARED_PARAMETERS)
