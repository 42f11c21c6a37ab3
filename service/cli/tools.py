"""``facerec detect``, ``demo``, ``evaluate`` and ``calibrate``: looking at photos and measuring."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from service.app import inputs
from service.app import Photo
from service.app.results import error_json
from service.cli.enroll import existing_photos
from service.cli.parser import Commands, threshold
from service.errors import FacerecError

INPUTS_HELP = "folders of people (one sub-folder per person, merged by name) or one pairs file (CSV or LFW pairs.txt)"


def register(commands: Commands) -> None:
    cmd = commands.add("detect", detect, "find and encode the faces in photos (nothing is stored)", detects=True,
                       example="facerec detect group.jpg --json --encodings")
    cmd.add_argument("photos", nargs="+", type=Path, metavar="PHOTO|DIR", help="photos, or folders of photos")
    cmd.add_argument("--encodings", action="store_true", help="include the 128-d encodings in --json output")

    cmd = commands.add("demo", demo, "the Happy House front door, end to end, on real photos", detects=True,
                       example="facerec demo",
                       description="Enroll the residents on a roster of the demo's own (<home>/demo), run the "
                                   "door checks and identify every camera shot. The Happy House photos are read "
                                   "from ../shared/data/happy_house; where they are absent the same door runs on "
                                   "the 5-celebrity photos that set-up fetches.")
    cmd.add_argument("--scene", choices=("auto", "happy-house", "celebrities"), default="auto",
                     help="which photos (default auto: Happy House when present, else the celebrities)")
    cmd.add_argument("--data", type=Path, help="the Happy House folder (default: ../shared/data/happy_house)")
    cmd.add_argument("--threshold", type=threshold, help="decide at this threshold instead of the configured one")

    cmd = commands.add("evaluate", evaluate, "measure verification and identification accuracy on labelled photos",
                       detects=True, example="facerec evaluate photos/train photos/val --figures reports/")
    cmd.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help=INPUTS_HELP)
    cmd.add_argument("--strangers", type=float, default=0.2, help="share of people held out as strangers (default 0.2)")
    cmd.add_argument("--seed", type=int, default=0, help="seed choosing the strangers (default 0)")
    cmd.add_argument("--figures", type=Path, help="folder for the PNG figures (default: <home>/reports)")
    cmd.add_argument("--threshold", type=threshold, help="report at this threshold instead of the configured one")

    cmd = commands.add("calibrate", calibrate, "the threshold that meets a target false-accept rate", detects=True,
                       example="facerec calibrate site-photos/ --far 1e-3 --write")
    cmd.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help=INPUTS_HELP)
    cmd.add_argument("--far", type=float, default=1e-3, help="target false-accept rate (default 1e-3)")
    cmd.add_argument("--write", action="store_true", help="store the threshold in the config file (keeps a .bak)")


def detect(args, core, out) -> int:
    report, text = [], []
    for path in existing_photos(list(args.photos)):
        try:
            found = core.recognition.detect(Photo.from_path(path), encodings=args.encodings)
        except FacerecError as exc:
            report.append({"photo": str(path), **error_json(exc.code, exc.message)})
            text.append(f"{path}: error: {exc.message}")
            continue
        report.append(found.to_json())
        text.append(f"{path}: {len(found.faces)} face(s)")
        for box, confidence, _ in found.faces:
            shown = "" if confidence is None else f"  confidence {confidence:.3f}"
            text.append(f"  box x={box[0]:.0f} y={box[1]:.0f} w={box[2]:.0f} h={box[3]:.0f}{shown}")
    out.document({"model": core.model_id, "photos": report}, "\n".join(text))
    return 2 if any("error" in item for item in report) else 0


def demo(args, core, out) -> int:
    from service.demo import run_demo

    return run_demo(core, out, scene=args.scene, data=args.data, threshold=args.threshold)


def evaluate(args, core, out) -> int:
    from service.evaluation.report import format_report, run_evaluate

    config = replace(core.config, threshold=inputs.threshold(args.threshold, core.config.threshold))
    report = run_evaluate(args.inputs, config, lambda: core.pipeline, core.model_id,
                          strangers=args.strangers, seed=args.seed, figures=args.figures, head=core.head)
    out.document(report, format_report(report))
    return 0


def calibrate(args, core, out) -> int:
    from service.evaluation.report import format_calibration, run_calibrate

    result = run_calibrate(args.inputs, core.config, lambda: core.pipeline, core.model_id,
                           target=args.far, write=args.write, head=core.head)
    text = format_calibration(result)
    if args.write:
        text += f"\nwrote threshold {result['threshold']:.4f} to {result['written']} (previous file kept as {result['backup']})"
    out.document(result, text)
    return 0
