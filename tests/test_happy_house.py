"""The Happy House exercise's published decisions and distances, reproduced with the real FaceNet."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from service.align import whole_image_face
from service.api import FaceRecognizer
from service.encoder import Encoder
from service.imageio import load_image
from service.recognition import MemoryRoster, NOT_IN_DATABASE, identify, verify


@pytest.fixture(scope="module")
def expected(happy_house_dir):
    return json.loads((happy_house_dir / "expected.json").read_text())


@pytest.fixture(scope="module")
def exercise_encode(facenet, happy_house_dir):
    """The exercise's preprocessing: no detection, resize to 160 with PIL nearest, divide by 255."""
    encoder = Encoder(facenet, normalization="divide255")

    def encode(name: str) -> np.ndarray:
        return encoder.encode([whole_image_face(load_image(happy_house_dir / name), 160, Image.Resampling.NEAREST)])[0]

    return encode


@pytest.fixture(scope="module")
def exercise_roster(expected, exercise_encode):
    roster = MemoryRoster()
    for person, photo in expected["residents"].items():
        roster.add(person, [exercise_encode(photo)])
    return roster


def test_door_decisions_and_distances_match_the_published_ones(expected, exercise_encode, exercise_roster):
    tolerance = expected["distance_tolerance"]
    for check in expected["verify"]:
        result = verify(exercise_encode(check["image"]), check["claimed"], exercise_roster, expected["threshold"])
        assert result.accepted == check["door_open"], check
        assert result.distance == pytest.approx(check["distance"], abs=tolerance), check


def test_who_is_it_matches_the_published_answers(expected, exercise_encode, exercise_roster):
    for case in expected["who_is_it"]:
        result = identify(exercise_encode(case["image"]), exercise_roster, expected["threshold"])
        assert result.label == case["identity"]
        assert result.distance == pytest.approx(case["distance"], abs=expected["distance_tolerance"])
    assert identify(exercise_encode("younes.jpg"), exercise_roster).distance < 1e-5


def test_default_pipeline_keeps_every_published_decision(expected, pipeline, happy_house_dir):
    """Detection + alignment + the project's normalisation: the decisions must not change."""
    roster = MemoryRoster()
    for person, photo in expected["residents"].items():
        roster.add(person, [pipeline.single_face(happy_house_dir / photo).encoding])
    door = FaceRecognizer(pipeline, roster, expected["threshold"])
    for check in expected["verify"]:
        assert door.verify(happy_house_dir / check["image"], check["claimed"]).accepted == check["door_open"], check
    for image, truth in expected["camera_truth"].items():
        answer = door.who_is_it(happy_house_dir / image)
        assert answer.candidates[0].person == truth
        assert answer.label == truth, (image, answer.distance)
    assert door.who_is_it(happy_house_dir / "younes.jpg").distance < 1e-5
