"""The decision rules on hand-made encodings and boxes: distances, thresholds, ranking people by their
nearest face, the dominant face; and the input checks every front end shares."""

import numpy as np
import pytest
from PIL import Image

from service.app import inputs
from service.app.results import FaceMatch
from service.app.rules import accepts, by_prominence, dominant_face, l2_distances, person_distance, rank_people
from service.errors import FacerecError, Forbidden, MultipleFaces, NoFace, UnknownPerson
from service.pipeline.faces import AlignedFace, PhotoFaces
from service.roster.memory import MemoryRoster


def unit(*values):
    v = np.zeros(128, np.float32)
    v[: len(values)] = values
    return v / np.linalg.norm(v)


@pytest.fixture
def roster():
    r = MemoryRoster()
    r.add("ada", [unit(1, 0), unit(1, 0.2)])
    r.add("bob", [unit(0, 1)])
    return r


def test_distance_is_plain_l2_not_squared():
    assert l2_distances(unit(1, 0), np.stack([unit(0, 1)]))[0] == pytest.approx(np.sqrt(2), abs=1e-6)


def test_a_person_is_as_near_as_their_nearest_photo(roster):
    assert person_distance(unit(1, 0.2), roster.encodings_of("ada")) == pytest.approx(0.0, abs=1e-6)
    assert person_distance(unit(1, 0.2), roster.encodings_of("bob")) > 1.0


def test_threshold_is_strict():
    assert accepts(0.69999, 0.7) and not accepts(0.7, 0.7)


def test_verification_matches_only_under_its_threshold():
    from service.app.results import Verification

    at = Verification("p", "ada", 0.7, 0.7, (0, 0, 1, 1), 0.99, 1)
    assert not at.match and Verification("p", "ada", 0.7, 0.7000001, (0, 0, 1, 1), 0.99, 1).match


def test_people_ranked_by_their_nearest_face_and_counted_once(roster):
    ranked = rank_people(roster.nearest_faces(unit(0.1, 1), k=10))
    assert [c.person for c in ranked] == ["bob", "ada"]
    assert ranked[1].distance == pytest.approx(person_distance(unit(0.1, 1), roster.encodings_of("ada")))


def test_faces_of_inactive_people_are_skipped_when_ranking():
    ranked = rank_people([(0.1, None), (0.3, "bob"), (0.4, None), (0.5, "ada"), (0.6, "bob")])
    assert [(c.person, c.distance) for c in ranked] == [("bob", 0.3), ("ada", 0.5)]


def test_match_only_under_the_threshold(roster):
    candidates = tuple(rank_people(roster.nearest_faces(unit(0, 0, 1), k=10)))
    face = FaceMatch((0, 0, 1, 1), 0.99, candidates, threshold=0.7)
    assert face.match is None and face.distance == pytest.approx(np.sqrt(2), abs=1e-6)
    assert FaceMatch((0, 0, 1, 1), 0.99, candidates, threshold=face.distance).match is None  # equal: no
    assert FaceMatch((0, 0, 1, 1), 0.99, candidates, threshold=face.distance + 1e-6).match == candidates[0].person
    assert FaceMatch((0, 0, 1, 1), 0.99, (), threshold=0.7).match is None  # nobody enrolled


def test_unknown_person_is_a_clear_error(roster):
    with pytest.raises(UnknownPerson):
        roster.encodings_of("carol")


def face(x, y, w, h):
    return AlignedFace((x, y, w, h), 0.99, Image.new("RGB", (160, 160)))


def test_the_largest_face_dominates_when_twice_the_next():
    big, small = face(300, 100, 200, 200), face(20, 20, 100, 100)  # area 40000 vs 10000
    photo = PhotoFaces(800, 600, [small, big])  # the detector's order does not matter
    assert dominant_face(photo, "p") is big
    assert by_prominence(photo) == [big, small]


def test_twice_the_area_exactly_is_enough():
    big, small = face(0, 0, 200, 100), face(300, 0, 100, 100)  # 20000 = 2 x 10000
    assert dominant_face(PhotoFaces(800, 600, [small, big]), "p") is big
    nearly = face(0, 0, 199.9, 100)
    with pytest.raises(MultipleFaces):
        dominant_face(PhotoFaces(800, 600, [small, nearly]), "p")


def test_no_face_dominates_below_twice_the_area():
    photo = PhotoFaces(800, 600, [face(0, 0, 100, 100), face(400, 0, 120, 120)])  # 14400 < 2 x 10000
    with pytest.raises(MultipleFaces, match="2 faces"):
        dominant_face(photo, "p")


def test_equal_faces_are_ordered_by_closeness_to_the_centre():
    edge, centre = face(0, 0, 100, 100), face(350, 250, 100, 100)
    assert by_prominence(PhotoFaces(800, 600, [edge, centre])) == [centre, edge]


def test_a_photo_without_faces():
    with pytest.raises(NoFace):
        dominant_face(PhotoFaces(100, 100, []), "p")


def test_threshold_requests():
    assert inputs.threshold(None, 0.7) == 0.7
    assert inputs.threshold(0.5, 0.7, may_loosen=False) == 0.5
    assert inputs.threshold(0.9, 0.7, may_loosen=True) == 0.9
    with pytest.raises(Forbidden):
        inputs.threshold(0.9, 0.7, may_loosen=False)
    for bad in (0, -1, 2.5, float("nan"), float("inf"), "x"):
        with pytest.raises(FacerecError):
            inputs.threshold(bad, 0.7)


def test_person_ids_are_trimmed_and_checked():
    assert inputs.person_id("  E042 ") == "E042"
    for bad in ("", "   ", "a/b", "a\\b", "x" * 129, "a\x00b", "\ud800", 42, None):
        with pytest.raises(FacerecError):
            inputs.person_id(bad)
