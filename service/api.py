"""Photos in, decisions out: the two questions a door asks, over any roster.

Thin on purpose: the pipeline finds and encodes the face, :mod:`service.recognition` decides.
"""

from __future__ import annotations

from service.imageio import Source
from service.pipeline import Pipeline
from service.recognition import Identification, Roster, Verification, identify, verify


class FaceRecognizer:
    """Answers verify / who-is-it for photos against one roster (in memory now, persistent later)."""

    def __init__(self, pipeline: Pipeline, roster: Roster, threshold: float = 0.7):
        self.pipeline = pipeline
        self.roster = roster
        self.threshold = threshold

    def verify(self, image: Source, person: str) -> Verification:
        """Is the one face in ``image`` the claimed ``person``? (distance, accepted)"""
        return verify(self.pipeline.single_face(image).encoding, person, self.roster, self.threshold)

    def who_is_it(self, image: Source, top: int = 5) -> Identification:
        """Who is the one face in ``image``? Nearest people, or "not in the database"."""
        return identify(self.pipeline.single_face(image).encoding, self.roster, self.threshold, top)
