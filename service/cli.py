"""The ``facerec`` command line.

Exit codes: 0 match / accepted / done, 1 no match / rejected / done with refusals, 2 usage or input
error. Human-readable output by default, ``--json`` for scripts.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from service.config import Config, load_config
from service.errors import FacerecError, ImageNotFound

EXIT_MATCH, EXIT_NO_MATCH, EXIT_INPUT_ERROR = 0, 1, 2


def main(argv: list[str] | None = None, pipeline=None) -> int:
    """Entry point of the ``facerec`` console script.

    ``pipeline``: an already loaded :class:`~service.pipeline.Pipeline` to use instead of loading one
    (lets a long-lived caller, such as the test suite, run many commands on one model load).
    """
    # TensorFlow's C++ start-up chatter would drown the answer on a terminal.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    session = None
    try:
        _check_paths_exist(args)
        session = _Session(_config(args), pipeline)
        return args.handler(args, session)
    except FacerecError as exc:
        _fail(args, exc.code, exc.message)
        return EXIT_INPUT_ERROR
    finally:
        if session is not None:
            session.close()


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, help="config file (default: FACEREC_CONFIG or the project's config.yaml)")
    common.add_argument("--home", type=Path, help="data home holding the roster (default: FACEREC_HOME or config)")
    common.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    common.add_argument("--no-detect", action="store_true", help="photos are face crops already: skip detection")
    common.add_argument("-v", "--verbose", action="store_true")

    parser = argparse.ArgumentParser(prog="facerec", description="Face verification and recognition with FaceNet.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, handler, help):
        cmd = sub.add_parser(name, parents=[common], help=help, description=help)
        cmd.set_defaults(handler=handler)
        return cmd

    roster_help = "use a folder (one sub-folder of photos per person) instead of the enrolled roster"
    cmd = command("enroll", _cmd_enroll, "enroll one person from one or several photos")
    cmd.add_argument("person")
    cmd.add_argument("images", nargs="+", type=Path)
    cmd.add_argument("--name", help="display name")

    cmd = command("import", _cmd_import, "enroll a folder with one sub-folder of photos per person")
    cmd.add_argument("folder", type=Path)
    cmd.add_argument("--batch-size", type=int, default=32, help="photos encoded and committed together")

    cmd = command("verify", _cmd_verify, "is the person in IMAGE who they claim to be?")
    cmd.add_argument("image", type=Path)
    cmd.add_argument("person")
    cmd.add_argument("--roster", type=Path, help=roster_help)

    cmd = command("identify", _cmd_identify, "who is in IMAGE?")
    cmd.add_argument("image", type=Path)
    cmd.add_argument("--top", type=int, default=3, help="candidates to list per face (default 3)")
    cmd.add_argument("--all-faces", action="store_true", help="answer for every face, not just the most confident")
    cmd.add_argument("--roster", type=Path, help=roster_help)

    cmd = command("people", _cmd_people, "list, show or remove enrolled people")
    cmd.add_argument("action", choices=["list", "show", "remove"])
    cmd.add_argument("person", nargs="?")

    cmd = command("faces", _cmd_faces, "remove one enrolled face by its id")
    cmd.add_argument("action", choices=["remove"])
    cmd.add_argument("face_id", type=_face_id)

    cmd = command("reindex", _cmd_reindex, "rebuild the search index from the database")
    cmd.add_argument("--reembed", action="store_true",
                     help="first re-encode every face made by another model from its kept crop")
    cmd.add_argument("--batch-size", type=int, default=64)

    cmd = command("db", _cmd_db, "database maintenance")
    cmd.add_argument("action", choices=["upgrade"])

    cmd = command("detect", _cmd_detect, "find and encode the faces in photos (nothing is stored)")
    cmd.add_argument("images", nargs="+", type=Path)
    cmd.add_argument("--encodings", action="store_true", help="include the 128-d encodings in --json output")

    cmd = command("demo", _cmd_demo, "the Happy House door story on its 18 photos")
    cmd.add_argument("--data", type=Path, help="Happy House folder (default: ../shared/data/happy_house)")

    cmd = command("serve", _cmd_serve, "run the HTTP service (gunicorn) until stopped")
    cmd.add_argument("--host", help="address to bind (default: server.host in the config)")
    cmd.add_argument("--port", type=int, help="port (default: server.port)")
    cmd.add_argument("--workers", type=int, help="worker processes, each with its model (default: server.workers)")

    cmd = command("keys", _cmd_keys, "API keys: `init` writes an admin and a client key if none is configured")
    cmd.add_argument("action", choices=["init"])

    inputs_help = "folders of people (one sub-folder per person, merged by name) or one pairs file (CSV or LFW pairs.txt)"
    cmd = command("evaluate", _cmd_evaluate, "measure verification and identification accuracy on labelled photos")
    cmd.add_argument("inputs", nargs="+", type=Path, help=inputs_help)
    cmd.add_argument("--strangers", type=float, default=0.2, help="share of people held out as strangers (default 0.2)")
    cmd.add_argument("--seed", type=int, default=0, help="seed choosing the strangers (default 0)")
    cmd.add_argument("--figures", type=Path, help="folder for the PNG figures (default: <home>/reports)")

    cmd = command("calibrate", _cmd_calibrate, "the threshold that meets a target false-accept rate")
    cmd.add_argument("inputs", nargs="+", type=Path, help=inputs_help)
    cmd.add_argument("--far", type=float, default=1e-3, help="target false-accept rate (default 1e-3)")
    cmd.add_argument("--write", action="store_true", help="store the threshold in the config file (keeps a .bak)")
    return parser


def _face_id(text: str) -> int:
    """A face id as the database can hold it (argparse turns the ValueError into a usage error)."""
    value = int(text)
    if not 0 < value < 2**63:
        raise ValueError(text)
    return value


def _config(args) -> Config:
    overrides = {"detect": False} if args.no_detect else {}
    if args.home:
        overrides["home"] = str(args.home.resolve())
    return load_config(args.config, **overrides)


def _check_paths_exist(args) -> None:
    """Fail in milliseconds, not after a model load, when a named photo is not there at all."""
    paths = list(getattr(args, "images", None) or []) + [getattr(args, "image", None)]
    for path in paths:
        if path is not None and not path.exists():
            raise ImageNotFound(f"no such file: '{path}'")


class _Session:
    """What a command works with: config, and the pipeline and roster loaded only when needed."""

    def __init__(self, config: Config, pipeline=None):
        self.config = config
        self._pipeline = pipeline
        self._roster = None

    @property
    def pipeline(self):
        if self._pipeline is None:
            from service.pipeline import build_pipeline  # TensorFlow loads here, not at import

            self._pipeline = build_pipeline(self.config)
        return self._pipeline

    @property
    def model_id(self) -> str:
        if self._pipeline is not None:
            return self._pipeline.model_id
        from service.model_id import configured_model_id

        return configured_model_id(self.config)

    @property
    def roster(self):
        if self._roster is None:
            from service.roster import Roster

            self._roster = Roster(self.config, self.model_id)
        return self._roster

    def close(self) -> None:
        if self._roster is not None:
            self._roster.close()


# ---- enrollment ----------------------------------------------------------------------------------

def _cmd_enroll(args, session: _Session) -> int:
    from service.roster import Photo

    photos = [Photo.from_path(p) for p in args.images]
    outcomes = session.roster.enroll(session.pipeline, args.person, photos, name=args.name)
    _report_outcomes(args, outcomes)
    enrolled = sum(o.status != "refused" for o in outcomes)
    return EXIT_MATCH if enrolled == len(outcomes) else EXIT_NO_MATCH if enrolled else EXIT_INPUT_ERROR


def _cmd_import(args, session: _Session) -> int:
    from tqdm import tqdm

    from service.folders import photos_by_person
    from service.roster import Photo, valid_person_id

    people = photos_by_person(args.folder)
    invalid = [pid for pid in people if not valid_person_id(pid)]
    if invalid:  # before anything is written
        raise FacerecError(f"folder names that cannot be person ids (1 to 128 characters, no slashes): {invalid[:5]}")
    roster, pipeline = session.roster, session.pipeline
    existing = roster.person_ids()
    persons = {pid: roster.ensure_person(pid) for pid in people}
    work = [(persons[pid], Photo.from_path(p)) for pid, paths in people.items() for p in paths]
    started, counts, refused = time.monotonic(), {"enrolled": 0, "skipped": 0, "refused": 0}, []
    with tqdm(total=len(work), unit="photo", desc="import", file=sys.stderr, disable=None) as bar:
        for outcome in roster.enroll_batches(pipeline, work, batch_size=max(1, args.batch_size)):
            counts[outcome.status] += 1
            if outcome.status == "refused":
                refused.append(outcome)
            _print_outcome(args, outcome)  # printed only once committed: what it says is durable
            bar.update(1)
    dropped = roster.drop_if_faceless(p for pid, p in persons.items() if pid not in existing)
    elapsed = time.monotonic() - started
    summary = {**counts, "people": len(people) - dropped, "photos": len(work), "seconds": round(elapsed, 1)}
    if args.json:
        print(json.dumps({"summary": summary}))  # JSON lines, like the outcomes above
    else:
        print(f"imported {args.folder}: {counts['enrolled']} enrolled, {counts['skipped']} already enrolled, "
              f"{counts['refused']} refused, of {len(work)} photos of {len(people)} people in {elapsed:.1f} s")
        for code in sorted({o.code for o in refused}):
            print(f"  refused ({code}): {sum(o.code == code for o in refused)}")
    return EXIT_NO_MATCH if refused else EXIT_MATCH


def _print_outcome(args, outcome) -> None:
    if args.json:
        print(json.dumps({"person": outcome.person, "photo": outcome.photo, "status": outcome.status,
                          "face_id": outcome.face_id, "code": outcome.code, "message": outcome.message}), flush=True)
    elif outcome.status == "refused":
        print(f"refused  {outcome.person}  {outcome.photo}: {outcome.message}", flush=True)
    else:
        extra = f"face {outcome.face_id}" if outcome.face_id else "already enrolled"
        print(f"{outcome.status:<8} {outcome.person}  {outcome.photo} ({extra})", flush=True)


def _report_outcomes(args, outcomes) -> None:
    if args.json:
        _print_json({"photos": [{"photo": o.photo, "status": o.status, "face_id": o.face_id, "code": o.code,
                                 "message": o.message} for o in outcomes]})
    else:
        for outcome in outcomes:
            _print_outcome(args, outcome)


# ---- decisions -----------------------------------------------------------------------------------

def _cmd_verify(args, session: _Session) -> int:
    from service.recognition import verify

    roster = _folder_roster(args, session) if args.roster else session.roster
    result = verify(session.pipeline.single_face(args.image).encoding, args.person, roster, session.config.threshold)
    if args.json:
        _print_json({"person": result.person, "distance": round(result.distance, 6),
                     "threshold": result.threshold, "match": result.accepted})
    else:
        verdict = "ACCEPTED" if result.accepted else "REJECTED"
        print(f"{verdict}: {args.image} vs {result.person}: distance {result.distance:.4f} "
              f"({'<' if result.accepted else '>='} threshold {result.threshold})")
    return EXIT_MATCH if result.accepted else EXIT_NO_MATCH


def _cmd_identify(args, session: _Session) -> int:
    from service.imageio import describe_source
    from service.pipeline import only_face
    from service.recognition import identify

    roster = _folder_roster(args, session) if args.roster else session.roster
    pipeline = session.pipeline
    located = pipeline.locate(args.image)
    if not located:
        only_face(located, describe_source(args.image))  # raises NoFace naming the photo
    faces = pipeline.encode(located if args.all_faces else located[:1])
    answers = [(face, identify(face.encoding, roster, session.config.threshold, args.top)) for face in faces]
    if args.json:
        _print_json({"faces": [{
            "box": _box(face), "match": result.person, "distance": _finite(result.distance),
            "candidates": [{"person": c.person, "distance": round(c.distance, 6)} for c in result.candidates],
        } for face, result in answers]})
    else:
        for face, result in answers:
            others = ", ".join(f"{c.person} {c.distance:.3f}" for c in result.candidates) or "nobody enrolled"
            print(f"face at {_box(face)}: {result.label} (distance {result.distance:.4f}; nearest: {others})")
    return EXIT_MATCH if any(result.person for _, result in answers) else EXIT_NO_MATCH


def _folder_roster(args, session: _Session):
    from service.folders import photos_by_person, roster_from_photos

    roster, refused = roster_from_photos(session.pipeline, photos_by_person(args.roster))
    for refusal in refused:
        print(f"warning: {refusal.photo} not enrolled for {refusal.person}: {refusal.reason}", file=sys.stderr)
    if len(roster) == 0:
        raise FacerecError(f"no usable photo in roster folder {args.roster}")
    return roster


# ---- roster maintenance --------------------------------------------------------------------------

def _cmd_people(args, session: _Session) -> int:
    roster = session.roster
    if args.action == "list":
        people = roster.list_people()
        if args.json:
            _print_json({"people": [_person_json(p, n) for p, n in people]})
        else:
            for person, faces in people:
                print(f"{person.external_id:<24} {faces:>4} face(s)  {person.name or ''}")
            print(f"{len(people)} people")
        return EXIT_MATCH
    if not args.person:
        raise FacerecError(f"`facerec people {args.action}` needs a person id")
    if args.action == "show":
        person, faces = roster.get_person(args.person), roster.faces_of(args.person)
        if args.json:
            _print_json({**_person_json(person, len(faces)), "faces": [_face_json(f) for f in faces]})
        else:
            print(f"{person.external_id}  {person.name or ''}  {'active' if person.active else 'inactive'}  "
                  f"enrolled {person.created_at:%Y-%m-%d %H:%M} UTC")
            for face in faces:
                print(f"  face {face.id}: box {[round(v) for v in (face.box_x, face.box_y, face.box_w, face.box_h)]}"
                      f" score {face.score if face.score is None else round(face.score, 3)}  {face.model_id}")
        return EXIT_MATCH
    removed = roster.remove_person(args.person)
    _say(args, {"removed": args.person, "faces": removed}, f"removed {args.person} and {removed} face(s)")
    return EXIT_MATCH


def _cmd_faces(args, session: _Session) -> int:
    face = session.roster.remove_face(args.face_id)
    _say(args, {"removed_face": face.id}, f"removed face {face.id}")
    return EXIT_MATCH


def _cmd_reindex(args, session: _Session) -> int:
    from tqdm import tqdm

    roster = session.roster
    started = time.monotonic()
    reembedded, missing = 0, []
    if args.reembed:
        stale = roster.count_stale_faces()
        encoder = session.pipeline.encoder
        with tqdm(total=stale, unit="face", desc="re-encode", file=sys.stderr, disable=None) as bar:
            reembedded, missing = roster.reembed(encoder.encode, args.batch_size, bar.update)
    build_started = time.monotonic()
    with tqdm(unit="face", desc="reindex", file=sys.stderr, disable=None) as bar:
        index, generation = roster.rebuild_index(progress=bar.update)
    build = time.monotonic() - build_started
    report = {"vectors": len(index), "generation": generation, "seconds": round(time.monotonic() - started, 2),
              "vectors_per_second": round(len(index) / build) if build > 0 else None,
              "reembedded": reembedded, "missing_crops": missing}
    text = (f"reindexed {len(index)} vectors in {build:.2f} s ({report['vectors_per_second'] or '-'} vectors/s), "
            f"generation {generation}")
    if args.reembed:
        text += f"; re-encoded {reembedded} face(s), {len(missing)} without a kept crop"
    _say(args, report, text)
    return EXIT_MATCH


def _cmd_db(args, session: _Session) -> int:
    from service.store import make_engine, upgrade_database

    engine = make_engine(session.config.database)
    upgrade_database(engine)
    engine.dispose()
    _say(args, {"database": "upgraded"}, "database is at the latest schema")
    return EXIT_MATCH


# ---- one-off tools -------------------------------------------------------------------------------

def _cmd_detect(args, session: _Session) -> int:
    pipeline = session.pipeline
    report = []
    for image in args.images:
        try:
            found = pipeline.faces(image)
        except FacerecError as exc:
            report.append({"image": str(image), "error": {"code": exc.code, "message": exc.message}})
            continue
        report.append({"image": str(image), "faces": [_found_json(f, args.encodings) for f in found]})
    if args.json:
        _print_json({"model": pipeline.model_id, "images": report})
    else:
        for item in report:
            if "error" in item:
                print(f"{item['image']}: error: {item['error']['message']}")
                continue
            print(f"{item['image']}: {len(item['faces'])} face(s)")
            for face in item["faces"]:
                conf = "" if face["confidence"] is None else f"  confidence {face['confidence']:.3f}"
                print(f"  box x={face['box'][0]} y={face['box'][1]} w={face['box'][2]} h={face['box'][3]}{conf}")
    return EXIT_INPUT_ERROR if any("error" in item for item in report) else EXIT_MATCH


def _cmd_demo(args, session: _Session) -> int:
    from service.demo import run_happy_house

    return run_happy_house(session, args.data, as_json=args.json)


def _cmd_evaluate(args, session: _Session) -> int:
    from service.evaluation import format_report, run_evaluate

    report = run_evaluate(args.inputs, session.config, lambda: session.pipeline, session.model_id,
                          strangers=args.strangers, seed=args.seed, figures=args.figures)
    _say(args, report, format_report(report))
    return EXIT_MATCH


def _cmd_calibrate(args, session: _Session) -> int:
    from service.evaluation import format_calibration, run_calibrate

    result = run_calibrate(args.inputs, session.config, lambda: session.pipeline, session.model_id,
                           target=args.far, write=args.write)
    text = format_calibration(result)
    if args.write:
        text += f"\nwrote threshold {result['threshold']:.4f} to {result['written']} (previous file kept as {result['backup']})"
    _say(args, result, text)
    return EXIT_MATCH


# ---- HTTP service --------------------------------------------------------------------------------

def _cmd_serve(args, session: _Session) -> int:
    from service.http.server import serve

    return serve(session.config, host=args.host, port=args.port, workers=args.workers)


def _cmd_keys(args, session: _Session) -> int:
    from service.http.server import init_keys

    path = init_keys(session.config)
    if path is None:
        _say(args, {"created": None}, "API keys already configured (or auth disabled): nothing to do")
    else:
        _say(args, {"created": str(path)}, f"created {path} (mode 0600) with one admin and one client key; "
                                           "send one in the X-API-Key header")
    return EXIT_MATCH


# ---- output --------------------------------------------------------------------------------------

def _box(face) -> list[int]:
    return [int(round(v)) for v in face.box]


def _finite(distance: float):
    return round(distance, 6) if distance != float("inf") else None


def _found_json(face, with_encoding: bool) -> dict:
    item = {"box": _box(face), "confidence": None if face.confidence is None else round(face.confidence, 4)}
    if with_encoding:
        item["encoding"] = [round(float(v), 7) for v in face.encoding]
    return item


def _person_json(person, faces: int) -> dict:
    return {"id": person.external_id, "name": person.name, "active": person.active, "faces": faces,
            "created_at": person.created_at.isoformat()}


def _face_json(face) -> dict:
    return {"id": face.id, "box": [face.box_x, face.box_y, face.box_w, face.box_h], "score": face.score,
            "model": face.model_id, "photo_sha256": face.photo_sha256}


def _say(args, payload: dict, text: str) -> None:
    _print_json(payload) if args.json else print(text)


def _print_json(payload) -> None:
    json.dump(payload, sys.stdout, indent=2)
    sys.stdout.write("\n")


def _fail(args, code: str, message: str) -> None:
    if getattr(args, "json", False):
        _print_json({"error": {"code": code, "message": message}})
    print(f"error: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
