"""The ``facerec`` command line.

Exit codes: 0 match / accepted, 1 no match / rejected, 2 usage or input error.
Human-readable output by default, ``--json`` for scripts.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from service.config import Config, load_config
from service.errors import FacerecError

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
    try:
        _check_paths_exist(args)
        return args.handler(args, _Session(_config(args), pipeline))
    except FacerecError as exc:
        _fail(args, exc.code, exc.message)
        return EXIT_INPUT_ERROR


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, help="config file (default: FACEREC_CONFIG or the project's config.yaml)")
    common.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    common.add_argument("--no-detect", action="store_true", help="photos are face crops already: skip detection")
    common.add_argument("-v", "--verbose", action="store_true")

    parser = argparse.ArgumentParser(prog="facerec", description="Face verification and recognition with FaceNet.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    faces = sub.add_parser("faces", parents=[common], help="find and encode the faces in photos")
    faces.add_argument("images", nargs="+", type=Path)
    faces.add_argument("--encodings", action="store_true", help="include the 128-d encodings in --json output")
    faces.set_defaults(handler=_cmd_faces)

    verify = sub.add_parser("verify", parents=[common], help="is the person in IMAGE who they claim to be?")
    verify.add_argument("image", type=Path)
    verify.add_argument("person")
    verify.add_argument("--roster", type=Path, required=True,
                        help="folder with one sub-folder of photos per person (or one photo per person)")
    verify.set_defaults(handler=_cmd_verify)

    identify = sub.add_parser("identify", parents=[common], help="who is in IMAGE?")
    identify.add_argument("image", type=Path)
    identify.add_argument("--roster", type=Path, required=True,
                          help="folder with one sub-folder of photos per person (or one photo per person)")
    identify.add_argument("--top", type=int, default=3, help="candidates to list per face (default 3)")
    identify.add_argument("--all-faces", action="store_true", help="answer for every face, not just the most confident")
    identify.set_defaults(handler=_cmd_identify)

    demo = sub.add_parser("demo", parents=[common], help="the Happy House door story on its 18 photos")
    demo.add_argument("--data", type=Path, help="Happy House folder (default: ../shared/data/happy_house)")
    demo.set_defaults(handler=_cmd_demo)
    return parser


def _config(args) -> Config:
    overrides = {"detect": False} if args.no_detect else {}
    return load_config(args.config, **overrides)


def _check_paths_exist(args) -> None:
    """Fail in milliseconds, not after a model load, when a named photo is not there at all."""
    from service.errors import ImageNotFound

    for path in list(getattr(args, "images", [])) + [getattr(args, "image", None)]:
        if path is not None and not path.exists():
            raise ImageNotFound(f"no such file: '{path}'")


class _Session:
    """What a command works with: the config, and the pipeline loaded only when first needed."""

    def __init__(self, config: Config, pipeline=None):
        self.config = config
        self._pipeline = pipeline

    @property
    def pipeline(self):
        if self._pipeline is None:
            from service.pipeline import build_pipeline  # TensorFlow loads here, not at import

            self._pipeline = build_pipeline(self.config)
        return self._pipeline


def _cmd_faces(args, session: _Session) -> int:
    pipeline = session.pipeline
    report = []
    for image in args.images:
        try:
            found = pipeline.faces(image)
        except FacerecError as exc:
            report.append({"image": str(image), "error": {"code": exc.code, "message": exc.message}})
            continue
        report.append({"image": str(image), "faces": [_face_json(f, args.encodings) for f in found]})
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


def _cmd_verify(args, session: _Session) -> int:
    from service.recognition import verify

    config = session.config
    pipeline, roster = session.pipeline, _roster(args, session)
    result = verify(pipeline.single_face(args.image).encoding, args.person, roster, config.threshold)
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

    config = session.config
    pipeline, roster = session.pipeline, _roster(args, session)
    located = pipeline.locate(args.image)
    if not located:
        only_face(located, describe_source(args.image))  # raises NoFace with the photo's name
    faces = pipeline.encode(located if args.all_faces else located[:1])
    answers = [(face, identify(face.encoding, roster, config.threshold, args.top)) for face in faces]
    if args.json:
        _print_json({"faces": [{
            "box": _box(face), "match": result.person, "distance": round(result.distance, 6),
            "candidates": [{"person": c.person, "distance": round(c.distance, 6)} for c in result.candidates],
        } for face, result in answers]})
    else:
        for face, result in answers:
            others = ", ".join(f"{c.person} {c.distance:.3f}" for c in result.candidates)
            print(f"face at {_box(face)}: {result.label} (distance {result.distance:.4f}; nearest: {others})")
    return EXIT_MATCH if any(result.person for _, result in answers) else EXIT_NO_MATCH


def _cmd_demo(args, session: _Session) -> int:
    from service.demo import run_happy_house

    return run_happy_house(session, args.data, as_json=args.json)


def _roster(args, session: _Session):
    from service.folders import photos_by_person, roster_from_photos

    people = photos_by_person(args.roster)
    roster, refused = roster_from_photos(session.pipeline, people)
    for refusal in refused:
        print(f"warning: {refusal.photo} not enrolled for {refusal.person}: {refusal.reason}", file=sys.stderr)
    if len(roster) == 0:
        raise FacerecError(f"no usable photo in roster folder {args.roster}")
    return roster


def _box(face) -> list[int]:
    return [int(round(v)) for v in face.box]


def _face_json(face, with_encoding: bool) -> dict:
    item = {"box": _box(face), "confidence": None if face.confidence is None else round(face.confidence, 4)}
    if with_encoding:
        item["encoding"] = [round(float(v), 7) for v in face.encoding]
    return item


def _print_json(payload) -> None:
    json.dump(payload, sys.stdout, indent=2)
    sys.stdout.write("\n")


def _fail(args, code: str, message: str) -> None:
    if getattr(args, "json", False):
        _print_json({"error": {"code": code, "message": message}})
    print(f"error: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
