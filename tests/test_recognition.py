"""Decision rules on hand-made encodings: distances, thresholds, nearest-person grouping."""

import numpy as np
import pytest

from service.errors import UnknownPerson
from service.recognition import MemoryRoster, NOT_IN_DATABASE, identify, l2_distances, verify


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


def test_verify_uses_the_nearest_of_the_persons_photos(roster):
    probe = unit(1, 0.2)
    assert verify(probe, "ada", roster).distance == pytest.approx(0.0, abs=1e-6)
    assert verify(probe, "ada", roster).accepted
    assert not verify(probe, "bob", roster).accepted


def test_threshold_is_strict(roster):
    probe = unit(1, 0)
    d = verify(probe, "bob", roster).distance
    assert not verify(probe, "bob", roster, threshold=d).accepted
    assert verify(probe, "bob", roster, threshold=d + 1e-6).accepted


def test_identify_ranks_people_by_their_nearest_face(roster):
    result = identify(unit(0.1, 1), roster, top=5)
    assert [c.person for c in result.candidates] == ["bob", "ada"]
    assert result.person == "bob"


def test_identify_says_not_in_database_at_or_over_threshold(roster):
    result = identify(unit(0, 0, 1), roster, threshold=0.7)
    assert result.person is None and result.label == NOT_IN_DATABASE
    assert result.distance == pytest.approx(np.sqrt(2), abs=1e-6)
    assert identify(unit(0, 0, 1), roster, threshold=result.distance).person is None  # equal: no


def test_unknown_person_is_a_clear_error(roster):
    with pytest.raises(UnknownPerson):
        verify(unit(1), "carol", roster)


def test_empty_roster_identifies_nobody():
    assert identify(unit(1), MemoryRoster()).person is None
