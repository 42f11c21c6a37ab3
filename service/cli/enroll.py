"""``facerec enroll`` and ``facerec import``: photos of people become stored faces."""

from __future__ import annotations

import sys
from pathlib import Path

from service.app import Photo
from service.app.photos import photo_paths
from service.app.results import PhotoOutcome
from service.cli.parser import Commands, positive_int
from service.errors import FacerecError, ImageNotFound


def register(commands: Commands) -> None:
    cmd = commands.add("enroll", enroll, "enroll one person from one or several photos", detects=True,
                       example="facerec enroll E042 alice1.jpg alice2.jpg alice3.jpg --name 'Alice Martin'")
    cmd.add_argument("person", help="the person's id (created if new)")
    cmd.add_argument("photos", nargs="+", type=Path, metavar="PHOTO|DIR", help="photos, or folders of photos")
    cmd.add_argument("--name", help="display name (set or changed)")

    cmd = commands.add("import", import_folder, "enroll a folder with one sub-folder of photos per person",
                       detects=True, example="facerec import staff/    # staff/E042/*.jpg, staff/E043/*.jpg, ...",
                       description="Enroll FOLDER/<person id>/* in batches, with a progress bar on stderr. Each "
                                   "photo's outcome is printed once committed; a second run finds them enrolled.")
    cmd.add_argument("folder", type=Path, help="one sub-folder per person, named by the person's id")
    cmd.add_argument("--batch-size", type=positive_int, default=32, help="photos encoded and committed together")


def existing_photos(paths: list[Path]) -> list[Path]:
    """Files and the photos in folders; a path that is not there fails in milliseconds, not after a
    model load."""
    for path in paths:
        if not path.exists():
            raise ImageNotFound(f"no such file: '{path}'")
    photos = photo_paths(paths)
    if not photos:
        raise FacerecError(f"no photos found in {', '.join(str(p) for p in paths)}")
    return photos


def enroll(args, core, out) -> int:
    photos = [Photo.from_path(p) for p in existing_photos(args.photos)]
    result = core.enrollment.enroll(args.person, photos, name=args.name)
    out.document(result.to_json(), "\n".join(_outcome_text(o) for o in result.photos))
    enrolled = sum(o.enrolled for o in result.photos)
    return 0 if enrolled == len(result.photos) else 1 if enrolled else 2


def import_folder(args, core, out) -> int:
    from tqdm import tqdm

    def report(outcome: PhotoOutcome) -> None:
        out.line(outcome.to_json(), _outcome_text(outcome))  # printed once committed: what it says is durable
        bar.update(1)

    def start(total: int) -> None:
        bar.reset(total=total)

    with tqdm(unit="photo", desc="import", file=sys.stderr, disable=None) as bar:
        summary = core.enrollment.import_folder(args.folder, args.batch_size, on_outcome=report, on_total=start)
    text = (f"imported {summary.folder}: {summary.accepted} enrolled, {summary.duplicate} already enrolled, "
            f"{sum(summary.refused.values())} refused, of {summary.photos} photos of {summary.people} people "
            f"in {summary.seconds:.1f} s")
    text += "".join(f"\n  refused ({reason}): {count}" for reason, count in sorted(summary.refused.items()))
    out.line(summary.to_json(), text)
    return 1 if summary.refused else 0


def _outcome_text(outcome: PhotoOutcome) -> str:
    if outcome.status == "accepted":
        others = f"; {outcome.faces_found - 1} other face(s) ignored" if (outcome.faces_found or 1) > 1 else ""
        return f"accepted  {outcome.person}  {outcome.photo} (face {outcome.face_id}{others})"
    said = outcome.message if outcome.photo in (outcome.message or "") else f"{outcome.photo}: {outcome.message}"
    return f"refused   {outcome.person}  ({outcome.reason}) {said}"
