"""`facerec demo`: the Happy House front door, end to end, on the exercise's 18 photos."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

from service.config import PROJECT_ROOT
from service.errors import FacerecError
from service.roster import Photo, Roster
from service.api import FaceRecognizer
from service.recognition import Verification

DEFAULT_DATA = PROJECT_ROOT.parent / "shared" / "data" / "happy_house"


def run_happy_house(session, data: Path | None = None, as_json: bool = False) -> int:
    """Enroll the residents, run the published door checks and who-is-it on every camera shot.

    ``session`` offers ``config`` and a lazily loaded ``pipeline``.
    """
    data = Path(data) if data else DEFAULT_DATA
    expected_file = data / "expected.json"
    if not expected_file.is_file():
        raise FacerecError(f"Happy House data not found: {expected_file} is missing (pass --data DIR)")
    expected = json.loads(expected_file.read_text())
    config, pipeline = session.config, session.pipeline
    # The demo keeps its own roster (a SQLite file under <home>/demo) so it never mixes the
    # exercise's residents into a real one; re-running it finds them already enrolled.
    demo_config = replace(config, home=config.home / "demo", database_url="")
    roster = Roster(demo_config, pipeline.model_id)
    try:
        outcomes = [o for name, photo in expected["residents"].items()
                    for o in roster.enroll(pipeline, name, [Photo.from_path(data / photo)])]
        door_keeper = FaceRecognizer(pipeline, roster, config.threshold)
        door = [(check, _decision(lambda: door_keeper.verify(data / check["image"], check["claimed"])))
                for check in expected["verify"]]
        seen = [(photo.name, _decision(lambda: door_keeper.who_is_it(photo, top=1)))
                for photo in sorted(data.glob("camera_*.*"))]
        residents = [person.external_id for person, _ in roster.list_people()]
    finally:
        roster.close()
    refused = [o for o in outcomes if o.status == "refused"]
    report = {
        "pipeline": {"model": pipeline.model_id, "detect": config.detect, "threshold": config.threshold},
        "roster": str(demo_config.database),
        "residents": residents,
        "refused": [{"person": o.person, "photo": Path(o.photo).name, "reason": o.message} for o in refused],
        "door": [{"image": c["image"], "claimed": c["claimed"], **r,
                  "published_distance": c["distance"], "published_open": c["door_open"]} for c, r in door],
        "who_is_it": [{"image": name, **r, "truth": expected.get("camera_truth", {}).get(name)} for name, r in seen],
    }
    if as_json:
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        _print_report(report)
    agree = all(d["open"] == d["published_open"] for d in report["door"] if "open" in d)
    return 0 if agree and not refused else 1


def _decision(ask) -> dict:
    try:
        result = ask()
    except FacerecError as exc:
        return {"error": exc.message}
    if isinstance(result, Verification):
        return {"distance": round(result.distance, 4), "open": result.accepted}
    return {"distance": round(result.distance, 4), "identity": result.label}


def _print_report(report: dict) -> None:
    p = report["pipeline"]
    print(f"Happy House front door  (model {p['model']}, detection {'on' if p['detect'] else 'off'}, "
          f"threshold {p['threshold']})")
    print(f"Residents enrolled: {len(report['residents'])}: {', '.join(report['residents'])}")
    print(f"Roster: {report['roster']}")
    for r in report["refused"]:
        print(f"  not enrolled: {r['person']} ({r['photo']}): {r['reason']}")
    print("\nDoor checks (verify: is this who they claim to be?)")
    print(f"  {'camera':<13} {'claims':<10} {'distance':>8}  {'door':<7} {'published':>15}")
    for d in report["door"]:
        if "error" in d:
            print(f"  {d['image']:<13} {d['claimed']:<10} error: {d['error']}")
            continue
        pub = f"{d['published_distance']:.3f} {'open' if d['published_open'] else 'shut'}"
        mark = "" if d["open"] == d["published_open"] else "  <- differs"
        print(f"  {d['image']:<13} {d['claimed']:<10} {d['distance']:8.3f}  {'OPEN' if d['open'] else 'shut':<7} "
              f"{pub:>15}{mark}")
    print("\nWho is it? (identify each camera shot)")
    print(f"  {'camera':<13} {'answer':<21} {'distance':>8}  truth")
    for w in report["who_is_it"]:
        if "error" in w:
            print(f"  {w['image']:<13} error: {w['error']}")
            continue
        print(f"  {w['image']:<13} {w['identity']:<21} {w['distance']:8.3f}  {w['truth'] or '(not published)'}")
