"""``facerec demo``: the Happy House front door, end to end, through the same services as the API.

The residents are enrolled on a roster of the demo's own (``<home>/demo/<scene>``, so they never mix
with a real one), then each door check is a verify and each camera shot an identify. The Happy House
photos come from ``../shared/data/happy_house`` with their published decisions; where they are absent
the same door runs on the 5-celebrity photos that set-up fetches, with the truth taken from the folders.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from service.app import Facerec, Photo
from service.app.photos import photos_by_person
from service.config import PROJECT_ROOT
from service.errors import FacerecError

HAPPY_HOUSE = PROJECT_ROOT.parent / "shared" / "data" / "happy_house"
RESIDENT_PHOTOS = 3  # celebrity scene: photos enrolled per resident


@dataclass
class Scene:
    name: str
    folder: Path
    residents: dict[str, list[Path]]
    door: list[dict]  # {"photo", "claimed", "open": expected}, plus "published_distance" for Happy House
    cameras: list[tuple[Path, str | None]]  # photo, who it shows (None: not published)


def run_demo(core: Facerec, out, scene: str = "auto", data: Path | None = None, threshold: float | None = None) -> int:
    """Run the door; 0 when every decision is the expected one (Happy House) or lets nobody in as
    someone else (celebrities), else 1."""
    chosen = _scene(core, scene, data)
    if chosen.name == "celebrities" and scene == "auto":
        out.note(f"Happy House photos not found at {data or HAPPY_HOUSE}: running the same door on the "
                 f"5-celebrity photos in {chosen.folder}")
    demo_config = replace(core.config, home=core.config.home / "demo" / chosen.name, database_url="")
    door = Facerec(demo_config, pipeline=core.pipeline)
    try:
        enrolled = [door.enrollment.enroll(person, [Photo.from_path(p) for p in photos])
                    for person, photos in chosen.residents.items()]
        checks = [{**check, "photo": check["photo"].name,
                   **_asked(lambda: door.recognition.verify(Photo(check["photo"].name, check["photo"]),
                                                            check["claimed"], threshold), "verification")}
                  for check in chosen.door]
        seen = [{"truth": truth, **_asked(lambda: door.recognition.identify(Photo(photo.name, photo), top_k=1,
                                                                            threshold=threshold), "identification")}
                for photo, truth in chosen.cameras]
        roster = str(door.config.database)
    finally:
        door.close()
    report = {"scene": chosen.name, "photos": str(chosen.folder), "model": door.model_id, "roster": roster,
              "residents": [e.to_json() for e in enrolled], "door": checks, "who_is_it": seen}
    if out.as_json:
        print(json.dumps(report, indent=2))
    else:
        _print(report, chosen)
    wrong_door = [c for c in checks if "verification" in c and c["verification"]["match"] != c["open"]]
    let_in = [c for c in checks if "verification" in c and c["verification"]["match"] and not c["open"]]
    return 1 if (wrong_door if chosen.name == "happy-house" else let_in) else 0


def _scene(core: Facerec, scene: str, data: Path | None) -> Scene:
    folder = Path(data) if data else HAPPY_HOUSE
    if scene == "happy-house" or (scene == "auto" and (folder / "expected.json").is_file()):
        if not (folder / "expected.json").is_file():
            raise FacerecError(f"Happy House data not found: {folder / 'expected.json'} is missing (pass --data DIR)")
        return _happy_house(folder)
    return _celebrities(core.config.model.celebrity_photos)


def _happy_house(folder: Path) -> Scene:
    expected = json.loads((folder / "expected.json").read_text())
    door = [{"photo": folder / c["image"], "claimed": c["claimed"], "open": c["door_open"],
             "published_distance": c["distance"]} for c in expected["verify"]]
    truth = expected.get("camera_truth", {})
    cameras = [(photo, truth.get(photo.name)) for photo in sorted(folder.glob("camera_*.*"))]
    return Scene("happy-house", folder, {name: [folder / photo] for name, photo in expected["residents"].items()},
                 door, cameras)


def _celebrities(folder: Path) -> Scene:
    """Each person's first train photos enrolled; their first val photo claims them, then the next person."""
    if not (folder / "val").is_dir():
        raise FacerecError(f"5-celebrity photos not found at {folder}: run `make models` to fetch them")
    residents = {person: photos[:RESIDENT_PHOTOS] for person, photos in photos_by_person(folder / "train").items()}
    visitors = photos_by_person(folder / "val")
    people = sorted(residents)
    door = []
    for n, person in enumerate(people):
        probe = visitors[person][0]
        door.append({"photo": probe, "claimed": person, "open": True})
        door.append({"photo": probe, "claimed": people[(n + 1) % len(people)], "open": False})
    cameras = [(photo, person) for person in people for photo in visitors[person][1:3]]
    return Scene("celebrities", folder, residents, door, cameras)


def _asked(ask, key: str) -> dict:
    try:
        return {key: ask().to_json()}
    except FacerecError as exc:
        return {"error": {"code": exc.code, "message": exc.message}}


def _print(report: dict, scene: Scene) -> None:
    print(f"{'Happy House' if scene.name == 'happy-house' else '5-celebrity'} front door  "
          f"(model {report['model']}; photos {report['photos']})")
    names = [e["person"] for e in report["residents"] if e["accepted"] or any(
        p["reason"] == "duplicate" for p in e["photos"])]
    print(f"Residents enrolled: {len(names)}: {', '.join(names)}")
    print(f"Roster: {report['roster']}")
    for enrollment in report["residents"]:
        for photo in enrollment["photos"]:
            if photo["status"] == "refused" and photo["reason"] != "duplicate":
                print(f"  not enrolled: {photo['person']} ({Path(photo['photo']).name}): {photo['message']}")
    published = scene.name == "happy-house"
    print("\nDoor checks (verify: is this who they claim to be?)")
    print(f"  {'camera':<28} {'claims':<15} {'distance':>8}  {'door':<5} {'expected':>16}")
    for check in report["door"]:
        expected = (f"{check['published_distance']:.3f} " if published else "") + ("open" if check["open"] else "shut")
        if "error" in check:
            print(f"  {check['photo'][:28]:<28} {check['claimed']:<15} error: {check['error']['message']}")
            continue
        v = check["verification"]
        mark = "" if v["match"] == check["open"] else "  <- differs"
        print(f"  {check['photo'][:28]:<28} {check['claimed']:<15} {v['distance']:8.3f}  "
              f"{'OPEN' if v['match'] else 'shut':<5} {expected:>16}{mark}  (threshold {v['threshold']:g})")
    print("\nWho is it? (identify each camera shot)")
    print(f"  {'camera':<28} {'answer':<21} {'distance':>8}  truth")
    for shot in report["who_is_it"]:
        if "error" in shot:
            print(f"  error: {shot['error']['message']}")
            continue
        ident = shot["identification"]
        face = ident["faces"][0]
        distance = "-" if face["distance"] is None else f"{face['distance']:.3f}"
        print(f"  {ident['photo'][:28]:<28} {face['match'] or 'not in the database':<21} {distance:>8}  "
              f"{shot['truth'] or '(not published)'}")
