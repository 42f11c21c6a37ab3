"""Photo folders as rosters: one sub-folder per person, or one photo per person named after them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from service.errors import FacerecError
from service.pipeline import Pipeline, only_face
from service.imageio import describe_source
from service.recognition import MemoryRoster

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


@dataclass(frozen=True)
class Refusal:
    person: str
    photo: Path
    code: str
    reason: str


def is_photo(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in PHOTO_SUFFIXES and not path.name.startswith(".")


def photos_by_person(folder: Path) -> dict[str, list[Path]]:
    """``folder/<person>/*`` gives each person their photos; loose photos are named by their stem."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FacerecError(f"roster folder {folder} does not exist")
    people: dict[str, list[Path]] = {}
    for entry in sorted(folder.iterdir()):
        if entry.is_dir() and not entry.name.startswith("."):
            photos = sorted(p for p in entry.iterdir() if is_photo(p))
            if photos:
                people[entry.name] = photos
        elif is_photo(entry):
            people.setdefault(entry.stem, []).append(entry)
    return people


def roster_from_photos(pipeline: Pipeline, people: dict[str, list[Path]]) -> tuple[MemoryRoster, list[Refusal]]:
    """Enroll each usable photo (exactly one face); say why each other photo was refused."""
    crops, owners, refused = [], [], []
    for person, photos in people.items():
        for photo in photos:
            try:
                crops.append(only_face(pipeline.locate(photo), describe_source(photo)))
                owners.append(person)
            except FacerecError as exc:
                refused.append(Refusal(person, photo, exc.code, exc.message))
    roster = MemoryRoster()
    for person, face in zip(owners, pipeline.encode(crops)):
        roster.add(person, [face.encoding])
    return roster, refused
