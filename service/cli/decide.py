"""``facerec verify`` and ``facerec identify``: one model load, one answer per photo.

With ``--json`` each answer is a JSON line (the HTTP API's JSON form, naming its file in ``photo``),
a photo that cannot be used is a line ``{"photo", "error"}``, and a ``{"summary"}`` line ends the run.
"""

from __future__ import annotations

from pathlib import Path

from service.app import Photo
from service.app.results import Identification, Verification
from service.cli.enroll import existing_photos
from service.cli.parser import Commands, positive_int, threshold
from service.errors import PhotoError, UsageError

ROSTER_HELP = "match against a folder (one sub-folder of photos per person) instead of the enrolled roster"
THRESHOLD_HELP = "decide at this threshold instead of the configured one"


def register(commands: Commands) -> None:
    cmd = commands.add("verify", verify, "is the person in each photo who they claim to be?", detects=True,
                       example="facerec verify door-cam.jpg --person E042    (or: facerec verify door-cam.jpg E042)")
    cmd.add_argument("photos", nargs="+", type=Path, metavar="PHOTO|DIR", help="photos, or folders of photos")
    cmd.add_argument("--person", help="the claimed person's id (or give it after a single photo)")
    cmd.add_argument("--threshold", type=threshold, help=THRESHOLD_HELP)
    cmd.add_argument("--roster", type=Path, metavar="DIR", help=ROSTER_HELP)

    cmd = commands.add("identify", identify, "who is in each photo?", detects=True,
                       example="facerec identify door-cam.jpg visitors/ --top 5")
    cmd.add_argument("photos", nargs="+", type=Path, metavar="PHOTO|DIR", help="photos, or folders of photos")
    cmd.add_argument("--top", type=positive_int, default=3, help="nearest people to list per face (default 3)")
    cmd.add_argument("--all-faces", action="store_true", help="answer for every face, not just the most prominent")
    cmd.add_argument("--threshold", type=threshold, help=THRESHOLD_HELP)
    cmd.add_argument("--roster", type=Path, metavar="DIR", help=ROSTER_HELP)


def verify(args, core, out) -> int:
    paths, person = list(args.photos), args.person
    if person is None:  # the two-argument form: verify PHOTO PERSON
        if len(paths) < 2 or paths[-1].exists():
            raise UsageError("say who is claimed: --person ID (or verify PHOTO PERSON)")
        person = str(paths.pop())
    photos = existing_photos(paths)
    gallery = _gallery(args, core, out)
    counts = _answer_each(out, photos, ("accepted", "rejected"), lambda result: result.match, _verification_text,
                          lambda photo: core.recognition.verify(photo, person, args.threshold, gallery=gallery))
    _summary(out, counts, f"{counts['photos']} photo(s): {counts['accepted']} accepted, "
                          f"{counts['rejected']} rejected, {counts['errors']} not usable")
    return 2 if counts["errors"] else 1 if counts["rejected"] else 0


def identify(args, core, out) -> int:
    photos = existing_photos(list(args.photos))
    gallery = _gallery(args, core, out)
    counts = _answer_each(out, photos, ("matched", "not_matched"), lambda result: result.matched,
                          _identification_text,
                          lambda photo: core.recognition.identify(photo, args.top, args.all_faces, args.threshold,
                                                                  gallery=gallery))
    _summary(out, counts, f"{counts['photos']} photo(s): {counts['matched']} matched, "
                          f"{counts['not_matched']} not in the database, {counts['errors']} not usable")
    return 2 if counts["errors"] else 1 if counts["not_matched"] else 0


def _answer_each(out, photos: list[Path], outcomes: tuple[str, str], is_yes, text, ask) -> dict:
    """Ask about each photo in turn and print each answer as it comes; a photo that cannot be used is
    reported and the run goes on. Returns the counts: photos, each outcome (yes, no), errors."""
    yes, no = outcomes
    counts = {"photos": len(photos), yes: 0, no: 0, "errors": 0}
    for path in photos:
        try:
            result = ask(Photo.from_path(path))
        except PhotoError as exc:
            counts["errors"] += 1
            out.error(exc.code, exc.message, photo=str(path))
            continue
        counts[yes if is_yes(result) else no] += 1
        out.line(result.to_json(), text(result))
    return counts


def _gallery(args, core, out):
    """The enrolled roster (None), or a folder of photos encoded now."""
    if args.roster is None:
        return None
    gallery, refused = core.recognition.folder_gallery(args.roster)
    for outcome in refused:
        out.note(f"warning: {outcome.photo} not used for {outcome.person}: {outcome.message}")
    if len(gallery) == 0:
        raise UsageError(f"no usable photo in roster folder {args.roster}")
    return gallery


def _summary(out, counts: dict, text: str) -> None:
    out.line({"summary": counts}, text if counts["photos"] > 1 else None)


def _verification_text(result: Verification) -> str:
    verdict = "ACCEPTED" if result.match else "REJECTED"
    others = f"; {result.faces_found - 1} other face(s) ignored" if result.faces_found > 1 else ""
    return (f"{verdict}: {result.photo} vs {result.person}: distance {result.distance:.4f} "
            f"({'<' if result.match else '>='} threshold {result.threshold:g}{others})")


def _identification_text(result: Identification) -> str:
    lines = []
    for face in result.faces:
        nearest = ", ".join(f"{c.person} {c.distance:.3f}" for c in face.candidates) or "nobody enrolled"
        answer = face.match or "not in the database"
        distance = "-" if face.distance is None else f"{face.distance:.4f}"
        lines.append(f"{result.photo}: {answer} (distance {distance}, threshold {result.threshold:g}; "
                     f"nearest: {nearest}; box {[round(v) for v in face.box]}, {result.faces_found} face(s) in photo)")
    return "\n".join(lines)
