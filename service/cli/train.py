"""``facerec train``: learn a head that makes the configured threshold the right one."""

from __future__ import annotations

import shlex
import sys
from dataclasses import replace
from pathlib import Path

from service.cli.parser import Commands, positive_int
from service.errors import UsageError


def register(commands: Commands) -> None:
    cmd = commands.add(
        "train", train, "train an encoding head with the triplet loss on labelled photos", detects=True,
        example="facerec train ../shared/data/lfw/people.txt --pairs ../shared/data/lfw/pairs.txt --out models/heads/mine",
        description="Encode labelled photos once with the network (cached, as evaluate does), cross-validate a "
                    "head over folds of people (each fold measured by a head that never saw its people), then "
                    "train the head on everyone and save it, with its record and figures, in --out. Select it "
                    "with model.head in the config, then `facerec reindex --reembed` moves a roster onto it.")
    cmd.add_argument("inputs", nargs="+", type=Path, metavar="INPUT",
                     help="folders of people (one sub-folder per person) or one LFW people.txt (its own folds)")
    cmd.add_argument("--out", type=Path, required=True, help="folder to save the head in (created; replaced if it holds one)")
    cmd.add_argument("--pairs", type=Path, help="an LFW pairs.txt of the same people: also report LFW's own protocol")
    cmd.add_argument("--folds", type=positive_int, default=5,
                     help="folds for folders of people (default 5; an LFW people.txt brings its own)")
    cmd.add_argument("--seed", type=int, default=0, help="seed for batches and held-out people (default 0)")
    cmd.add_argument("--max-steps", type=positive_int, default=3000, help="training steps at most (default 3000)")
    cmd.add_argument("--no-cross-validation", action="store_true",
                     help="train on everyone without first measuring the head on held-out folds")


def train(args, core, out) -> int:
    from service.training.head_training import HeadSettings
    from service.training.report import format_training, run_train

    from service.pipeline.model_id import configured_model_id
    from service.pipeline.pipeline import build_pipeline

    settings = replace(HeadSettings(threshold=core.config.threshold), seed=args.seed, max_steps=args.max_steps)
    # The network's own encodings are trained on: a configured head is neither needed (even when its
    # file is missing) nor stacked on.
    config = replace(core.config, model=replace(core.config.model, head=None))
    if core.config.model.head is not None and args.out.resolve() == core.config.model.head.resolve():
        raise UsageError(f"--out {args.out} is the configured head (model.head), which servers may be using: "
                         "train into another folder, then point model.head at it")
    get_pipeline = (lambda: core.pipeline.without_head()) if core.model_loaded else (lambda: build_pipeline(config))
    result = run_train(args.inputs, config, get_pipeline, configured_model_id(config), args.out,
                       pairs=args.pairs, folds=args.folds, settings=settings,
                       validate=not args.no_cross_validation, command=shlex.join(["facerec", *sys.argv[1:]]))
    out.document(result, format_training(result))
    return 0
