"""Photos offered to the application, folders of them, and the one-face-per-photo step.

Enrollment, verification, folder rosters and evaluation all need one face per photo; they all go
through :func:`single_faces`, which applies the dominant-face rule and reports every refusal.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from service.app.rules import dominant_face
from service.errors import FacerecError, ImageError, ImageNotFound
from service.pipeline.decode import Source, describe_source, is_photo

if TYPE_CHECKING:
    from service.pipeline.faces import AlignedFace
    from service.pipeline.pipeline import Pipeline

@dataclass(frozen=True)
class Photo:
    """A photo: what to call it in answers, and its bytes or path."""

    label: str
    source: Source

    @classmethod
    def from_path(cls, path: Path) -> "Photo":
        return cls(str(path), Path(path))

    @property
    def name(self) -> str:
        """How error messages name it: its path, or its size when it came as bytes."""
        return describe_source(self.source)

    def read(self) -> bytes:
        """The photo's bytes; ImageNotFound / ImageError when a file is missing or unreadable."""
        if isinstance(self.source, (bytes, bytearray, memoryview)):
            return bytes(self.source)
        try:
            return Path(self.source).read_bytes()
        except FileNotFoundError:
            raise ImageNotFound(f"no such file: {self.name}") from None
        except IsADirectoryError:
            raise ImageError(f"{self.name} is a folder, not a photo") from None
        except OSError as exc:
            raise ImageError(f"cannot read {self.name}: {exc.strerror or exc}") from None

    def sha256(self) -> str:
        return hashlib.sha256(self.read()).hexdigest()


def photo_paths(paths: Sequence[Path]) -> list[Path]:
    """Files as given, and every photo under each folder (recursively, sorted), in order."""
    found: list[Path] = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if is_photo(p) and not _hidden(p, path))
        else:
            found.append(path)
    return found


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def photos_by_person(folder: Path) -> dict[str, list[Path]]:
    """``folder/<person>/*`` gives each person their photos; loose photos are named by their stem."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FacerecError(f"folder {folder} does not exist")
    people: dict[str, list[Path]] = {}
    for entry in sorted(folder.iterdir()):
        if entry.is_dir() and not entry.name.startswith("."):
            photos = sorted(p for p in entry.iterdir() if is_photo(p))
            if photos:
                people[entry.name] = photos
        elif is_photo(entry):
            people.setdefault(entry.stem, []).append(entry)
    return people


@dataclass(frozen=True, eq=False)
class SingleFace:
    """The face that counts in a photo (encoded) and how many faces the photo showed."""

    face: AlignedFace
    faces_found: int


def single_faces(pipeline: Pipeline, photos: Sequence[Photo]) -> list[SingleFace | FacerecError]:
    """For each photo, its dominant face (encoded together, in batches) or why there is none."""
    located: list[tuple[int, AlignedFace, int]] = []
    results: list[SingleFace | FacerecError | None] = [None] * len(photos)
    for position, photo in enumerate(photos):
        try:
            found = pipeline.locate(photo.source)
            located.append((position, dominant_face(found, photo.name), len(found.faces)))
        except FacerecError as exc:
            results[position] = exc
    encoded = pipeline.encode([face for _, face, _ in located])
    for (position, _, count), face in zip(located, encoded):
        results[position] = SingleFace(face, count)
    return results
