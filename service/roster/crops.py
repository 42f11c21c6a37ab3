"""The aligned 160x160 face crops each enrollment keeps, so a new model can re-encode every face.

Files live under ``<home>/crops/<person row id>/<photo sha256>-<token>.png`` (the token makes each
stored face's file its own, so removing one face never removes another's crop of the same photo); the
database stores the path relative to the home. A crop is written under a temporary name and published (renamed) only after
the row pointing to it has committed, so a rolled-back write never leaves a row without its crop nor
replaces a crop that a committed row points to.
"""

from __future__ import annotations

import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

PARTIAL_SUFFIX = ".partial"


@dataclass(frozen=True)
class PendingCrop:
    partial: Path
    final: Path


class CropStore:
    def __init__(self, home: Path):
        self.home = Path(home)

    @staticmethod
    def relative_path(person_row_id: int, photo_sha256: str) -> str:
        return f"crops/{person_row_id}/{photo_sha256}-{secrets.token_hex(4)}.png"

    def write_pending(self, relative: str, crop: Image.Image) -> PendingCrop:
        final = self.home / relative
        final.parent.mkdir(parents=True, exist_ok=True)
        partial = final.with_name(f".{final.name}.{os.getpid()}{PARTIAL_SUFFIX}")
        crop.save(partial, format="PNG")
        return PendingCrop(partial, final)

    @staticmethod
    def publish(pending: list[PendingCrop]) -> None:
        for crop in pending:
            os.replace(crop.partial, crop.final)

    @staticmethod
    def discard(pending: list[PendingCrop]) -> None:
        for crop in pending:
            crop.partial.unlink(missing_ok=True)

    def read(self, relative: str | None) -> Image.Image | None:
        """The kept crop as RGB, or None when there is none (or it cannot be read)."""
        if not relative:
            return None
        path = self.home / relative
        try:
            with Image.open(path) as crop:
                return crop.convert("RGB")
        except (OSError, ValueError):
            return None

    def remove(self, relative: str | None) -> None:
        if relative:
            (self.home / relative).unlink(missing_ok=True)

    def remove_person(self, person_row_id: int) -> None:
        shutil.rmtree(self.home / "crops" / str(person_row_id), ignore_errors=True)
