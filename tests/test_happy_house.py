"""The Happy House exercise's published decisions and distances, reproduced with the real FaceNet."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from service.app import Photo
from service.app.results import Candidate, FaceMatch
from service.app.rules import accepts, person_distance, rank_people
from service.pipeline.align import whole_image_face
from service.pipeline.decode import load_image
from service.pipeline.encoder import Encoder
from service.pipeline.pipeline import Pipeline
from service.roster.memory import MemoryRoster


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


def who_is_it(encoding, roster, threshold) -> FaceMatch:
    return FaceMatch((0, 0, 0, 0), None, tuple(rank_people(roster.nearest_faces(encoding, 50))), threshold)


def test_door_decisions_and_distances_match_the_published_ones(expected, exercise_encode, exercise_roster):
    tolerance = expected["distance_tolerance"]
    for check in expected["verify"]:
        distance = person_distance(exercise_encode(check["image"]), exercise_roster.encodings_of(check["claimed"]))
        assert accepts(distance, expected["threshold"]) == check["door_open"], check
        assert distance == pytest.approx(check["distance"], abs=tolerance), check


def test_who_is_it_matches_the_published_answers(expected, exercise_encode, exercise_roster):
    for case in expected["who_is_it"]:
        answer = who_is_it(exercise_encode(case["image"]), exercise_roster, expected["threshold"])
        assert answer.match == case["identity"]
        assert answer.distance == pytest.approx(case["distance"], abs=expected["distance_tolerance"])
    assert who_is_it(exercise_encode("younes.jpg"), exercise_roster, 0.7).distance < 1e-5


@pytest.mark.parametrize("precision", ["fp32", pytest.param("int8", marks=pytest.mark.slow)])
def test_default_pipeline_keeps_every_published_decision(precision, expected, make_core, pipeline, happy_house_dir,
                                                         request):
    """Detection + alignment + the project's normalisation, through the application's own verify and
    identify: the decisions must not change, in fp32 nor with the network quantised to int8."""
    if precision == "int8":
        pipeline = _with_network(pipeline, request.getfixturevalue("int8_facenet"))
    core = make_core(pipeline=pipeline)
    assert ("+int8-" in core.model_id) == (precision == "int8")
    door = core.recognition
    roster, refused = door.folder_gallery(happy_house_dir)  # residents and camera shots, each as a "person"
    assert refused == []
    residents = MemoryRoster()
    for person, photo in expected["residents"].items():
        residents.add(person, roster.encodings_of(photo.rsplit(".", 1)[0]))
    for check in expected["verify"]:
        result = door.verify(Photo.from_path(happy_house_dir / check["image"]), check["claimed"],
                             expected["threshold"], gallery=residents)
        assert result.match == check["door_open"], (check, result.distance)
    for image, truth in expected["camera_truth"].items():
        answer = door.identify(Photo.from_path(happy_house_dir / image), gallery=residents).faces[0]
        assert answer.candidates[0] == Candidate(truth, answer.distance)
        assert answer.match == truth, (image, answer.distance)
    assert door.identify(Photo.from_path(happy_house_dir / "younes.jpg"), gallery=residents).faces[0].distance < 1e-5


def _with_network(pipeline: Pipeline, facenet) -> Pipeline:
    encoder = pipeline.encoder
    return Pipeline(Encoder(facenet, encoder.normalization, encoder.batch_size, encoder.flip, encoder.head),
                    pipeline.detector, pipeline.config)
