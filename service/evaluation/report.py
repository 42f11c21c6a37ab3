"""``facerec evaluate`` and ``facerec calibrate``: encode labelled photos (cached), measure how well
the pipeline verifies and identifies them, and pick the threshold that meets a target false-accept rate.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from service.config import Config, load_config
from service.errors import EvaluationInputError, FacerecError
from service.evaluation.datasets import Dataset, load_inputs
from service.evaluation.encodings import Encoded, EncodingCache, cache_key, encode_photos
from service.evaluation.identification import identification_report
from service.evaluation.metrics import (
    THRESHOLD_DECIMALS, PairDistances, all_pair_distances, count_below, pair_distances,
    rates, threshold_for_far, verification_report,
)


@dataclass
class Evaluation:
    """Encoded inputs: usable photos' vectors and labels, the verification pairs' distances, and the
    refused photos."""

    dataset: Dataset
    vectors: np.ndarray
    people: list[str | None]
    usable: list[int]  # dataset photo index of each row of ``vectors``
    pairs: PairDistances
    refused: list[dict]
    pairs_dropped: int


def encode_dataset(dataset: Dataset, config: Config, get_pipeline: Callable[[], object], model_id: str,
                   cache_path: Path | None = None, progress: bool = True, head=None) -> Evaluation:
    """Encode every photo (cached) and form the verification pairs from the usable ones; ``head``
    (the caller's trained head, read once, or None) is applied to the network's cached encodings."""
    path = cache_path if cache_path is not None else config.home / "cache" / "encodings.sqlite"
    try:
        cache = EncodingCache(path)
        try:
            results = encode_photos(dataset.photos, get_pipeline, cache, cache_key(config, model_id),
                                    config.model.batch_size, progress, head)
        finally:
            cache.close()
    except sqlite3.Error as exc:  # e.g. locked for longer than its timeout by another evaluation's writes
        raise EvaluationInputError(f"encoding cache {path}: {exc}") from None
    return evaluation_of(dataset, results)


def evaluation_of(dataset: Dataset, results: Sequence[Encoded]) -> Evaluation:
    """The usable photos and the distances of the pairs to verify, from each photo's encoding or refusal:
    the dataset's listed pairs, or else every unordered pair of photos."""
    usable = [n for n, r in enumerate(results) if r.encoding is not None]
    refused = [{"photo": str(dataset.photos[n]), "person": dataset.people[n], "code": r.code, "message": r.message}
               for n, r in enumerate(results) if r.encoding is None]
    vectors = np.stack([results[n].encoding for n in usable]) if usable else np.zeros((0, 128), np.float32)
    if not np.isfinite(vectors).all():
        raise EvaluationInputError("some encodings are not finite numbers; the encoding cache may be damaged")
    people = [dataset.people[n] for n in usable]
    if dataset.pairs is None:
        pairs, dropped = all_pair_distances(vectors, people), 0
    else:
        row = {n: m for m, n in enumerate(usable)}
        kept = [(row[a], row[b], s) for a, b, s in dataset.pairs if a in row and b in row]
        first, second = (np.array([pair[n] for pair in kept], dtype=np.int64) for n in (0, 1))
        same = np.array([pair[2] for pair in kept], dtype=bool)
        pairs = PairDistances.labelled(pair_distances(vectors, first, second), same)
        dropped = len(dataset.pairs) - len(kept)
    if not pairs.pairs:
        raise EvaluationInputError(f"no usable pairs: {len(usable)} of {len(dataset.photos)} photos could be used")
    return Evaluation(dataset, vectors, people, usable, pairs, refused, dropped)


def build_report(ev: Evaluation, config: Config, model_id: str, strangers: float = 0.2, seed: int = 0) -> dict:
    """The evaluation report (plain JSON types) at the configured threshold."""
    threshold = config.threshold
    identification = None
    if all(p is not None for p in ev.people):
        identification = identification_report(ev.vectors, ev.people, threshold, config.index_k, strangers, seed)
    return {
        "inputs": {"sources": ev.dataset.sources, "photos": len(ev.dataset.photos), "usable": len(ev.usable),
                   "people": len({p for p in ev.people if p is not None}) or None,
                   "pairs_file": ev.dataset.pairs is not None, "pairs_dropped": ev.pairs_dropped, "model": model_id},
        "verification": verification_report(ev.pairs, threshold),
        "identification": identification,
        "refused": ev.refused,
    }


def report_of(ev: Evaluation, config: Config, model_id: str, strangers: float = 0.2, seed: int = 0,
              figures: Path | None = None, draw: bool = True) -> dict:
    """``build_report``, with the figures written to ``figures`` (default <home>/reports) if ``draw``."""
    report = build_report(ev, config, model_id, strangers, seed)
    if draw:
        from service.evaluation.figures import write_figures

        folder = figures if figures is not None else config.home / "reports"
        report["figures"] = [str(p) for p in write_figures(ev.pairs, config.threshold, folder)]
    return report


def calibration_report(ev: Evaluation, target: float, current: float) -> dict:
    """The threshold meeting ``target`` FAR on these pairs, what it costs, and how far to trust it."""
    if not 0 < target < 1:
        raise EvaluationInputError(f"--far must be between 0 and 1, got {target}")
    n_gen, n_imp = len(ev.pairs.genuine), len(ev.pairs.impostor)
    if n_gen == 0 or n_imp == 0:
        raise EvaluationInputError(f"need both genuine and impostor pairs; got {n_gen} genuine, {n_imp} impostor")
    threshold = threshold_for_far(ev.pairs, target)
    at = rates(ev.pairs, threshold)
    needed = math.ceil(3 / target)
    return {"far_target": target, "threshold": threshold, "far": at["far"], "tar": at["tar"],
            "accuracy": at["accuracy"], "false_accepts": int(count_below(ev.pairs.impostor, threshold)),
            "impostor_pairs": n_imp, "genuine_pairs": n_gen, "reliable": n_imp >= needed,
            "impostor_pairs_needed": needed, "far_upper_bound_95": min(1.0, 3 / n_imp),
            "current_threshold": current, "current": rates(ev.pairs, current)}


def write_threshold(config_path: Path, threshold: float) -> Path:
    """Set ``threshold:`` in the config file, keeping every other line; returns the backup's path.

    The line is edited as text so comments and layout survive; the file is then re-read to prove it
    still parses and holds the new value.
    """
    text = config_path.read_text()
    pattern = re.compile(r"^(threshold:[ \t]*)([^\s#]+)", re.MULTILINE)
    if len(pattern.findall(text)) != 1:
        raise EvaluationInputError(f"{config_path} has no single top-level 'threshold:' line to update")
    backup = config_path.with_name(config_path.name + ".bak")
    shutil.copy2(config_path, backup)
    config_path.write_text(pattern.sub(lambda m: f"{m.group(1)}{threshold:.{THRESHOLD_DECIMALS}f}", text))
    env = {k: v for k, v in os.environ.items() if k != "FACEREC_THRESHOLD"}
    try:
        reloaded = load_config(config_path, env=env)
    except FacerecError:
        shutil.copy2(backup, config_path)  # never leave a config the service cannot start with
        raise
    if abs(reloaded.threshold - threshold) > 10 ** -THRESHOLD_DECIMALS:
        shutil.copy2(backup, config_path)
        raise EvaluationInputError(f"{config_path}: threshold did not take (read back {reloaded.threshold})")
    return backup


# ---- text output ---------------------------------------------------------------------------------

def format_report(report: dict) -> str:
    """The report as a readable terminal table."""
    inp, ver, ident = report["inputs"], report["verification"], report["identification"]
    people = f" of {inp['people']} people" if inp["people"] else ""
    lines = [f"evaluated {', '.join(inp['sources'])}: {inp['usable']} of {inp['photos']} photos usable{people}",
             f"model {inp['model']}"]
    if inp["pairs_dropped"]:
        lines.append(f"{inp['pairs_dropped']} listed pairs dropped (a photo could not be used)")
    lines += ["", f"verification: {ver['pairs']} pairs ({ver['genuine']} genuine, {ver['impostor']} impostor)",
              _row("threshold", f"{ver['threshold']:g}", "accept when distance < threshold"),
              _row("accuracy", f"{ver['accuracy']:.4f}", ""),
              _row("true-accept rate", f"{ver['tar']:.4f}", f"{round(ver['tar'] * ver['genuine'])}/{ver['genuine']} genuine pairs"),
              _row("false-accept rate", f"{ver['far']:.4f}", f"{round(ver['far'] * ver['impostor'])}/{ver['impostor']} impostor pairs"),
              _row("ROC AUC", f"{ver['auc']:.4f}", ""),
              _row("equal error rate", f"{ver['eer']:.4f}", f"at threshold {ver['eer_threshold']:.3f}")]
    for item in ver["tar_at_far"]:
        note = f"threshold {item['threshold']:.4f}" + ("" if item["reliable"] else
                                                        f"; unreliable: {ver['impostor']} impostor pairs < 3/FAR")
        lines.append(_row(f"TAR at FAR {item['far_target']:g}", f"{item['tar']:.4f}", note))
    lines.append(_row("best threshold", f"{ver['best_threshold']:.3f}", f"accuracy {ver['best_accuracy']:.4f}"))
    if ident:
        lines += ["", f"identification: leave-one-photo-out, {ident['probes']} probes of {ident['people']} people "
                      f"(nearest photo scores a person; k={ident['k']} nearest faces)",
                  _row("rank-1", f"{ident['rank1']:.4f}", f"{round(ident['rank1'] * ident['probes'])}/{ident['probes']}"),
                  _row("rank-5", f"{ident['rank5']:.4f}", f"{round(ident['rank5'] * ident['probes'])}/{ident['probes']}")]
        o = ident["open_set"]
        if o:
            lines += [f"open set: strangers {', '.join(o['strangers'])} (share {o['share']:g}, seed {o['seed']}), "
                      f"threshold {o['threshold']:g}",
                      _row("strangers let in", f"{o['stranger_let_in_rate']:.4f}",
                           f"{o['strangers_let_in']}/{o['stranger_probes']} stranger photos"),
                      _row("enrolled refused", f"{o['enrolled_refused_rate']:.4f}",
                           f"{o['enrolled_refused']}/{o['enrolled_probes']} enrolled photos"),
                      _row("enrolled as someone else", f"{o['enrolled_wrong_person']}", "")]
    elif ident is None and not report["inputs"]["people"]:
        lines += ["", "identification: not computed (the pairs file does not name people)"]
    lines += ["", f"photos not used: {len(report['refused'])}"]
    lines += [f"  {r['code']:<15} {r['message']}" for r in report["refused"]]  # the message names the photo
    for name in report.get("figures", []):
        lines.append(f"figure: {name}")
    return "\n".join(lines)


def format_calibration(cal: dict) -> str:
    """Calibration as text: the threshold, its cost, and a confidence note."""
    lines = [f"threshold for FAR <= {cal['far_target']:g}: {cal['threshold']:.4f} (accept when distance < threshold)",
             f"  at it: FAR {cal['far']:.4f} ({cal['false_accepts']}/{cal['impostor_pairs']} impostor pairs), "
             f"TAR {cal['tar']:.4f}, accuracy {cal['accuracy']:.4f} ({cal['genuine_pairs']} genuine pairs)",
             f"  current threshold {cal['current_threshold']:.4g}: FAR {cal['current']['far']:.4f}, "
             f"TAR {cal['current']['tar']:.4f}, accuracy {cal['current']['accuracy']:.4f}"]
    if cal["reliable"]:
        lines.append(f"  the estimate rests on {cal['impostor_pairs']} impostor pairs "
                     f"(at least 3/FAR = {cal['impostor_pairs_needed']} needed)")
    else:
        lines.append(f"  unreliable: the estimate rests on {cal['impostor_pairs']} impostor pairs; with no false "
                     f"accept in n pairs the 95% upper bound on FAR is about 3/n = {cal['far_upper_bound_95']:.2g}, "
                     f"above the target. Use at least {cal['impostor_pairs_needed']} impostor pairs.")
    return "\n".join(lines)


def _row(name: str, value: str, note: str) -> str:
    return f"  {name:<26}{value:>10}  {note}".rstrip()


# ---- command entry points ------------------------------------------------------------------------

def run_evaluate(inputs: Sequence[Path], config: Config, get_pipeline: Callable[[], object], model_id: str,
                 strangers: float = 0.2, seed: int = 0, figures: Path | None = None,
                 draw: bool = True, head=None) -> dict:
    """``facerec evaluate``: the report, with figures written to ``figures`` (default <home>/reports)."""
    if not 0 <= strangers < 1:
        raise EvaluationInputError(f"--strangers must be in [0, 1), got {strangers}")
    with _failures_explained("evaluate"):
        ev = encode_dataset(load_inputs(inputs), config, get_pipeline, model_id, head=head)
        return report_of(ev, config, model_id, strangers, seed, figures, draw)


def run_calibrate(inputs: Sequence[Path], config: Config, get_pipeline: Callable[[], object], model_id: str,
                  target: float = 1e-3, write: bool = False, head=None) -> dict:
    """``facerec calibrate``: the threshold for a target FAR; ``write`` stores it in the config file."""
    with _failures_explained("calibrate"):
        ev = encode_dataset(load_inputs(inputs), config, get_pipeline, model_id, head=head)
        cal = calibration_report(ev, target, config.threshold)
    if write:
        if config.source is None:
            raise EvaluationInputError("no config file to write the threshold to")
        cal["written"] = str(config.source)
        cal["backup"] = str(write_threshold(Path(config.source), cal["threshold"]))
    return cal


@contextmanager
def _failures_explained(command: str) -> Iterator[None]:
    """Running out of memory or disk is the size of the input meeting the machine, not a bug: said as
    an input error (the CLI prints it as one, and exits 2) rather than a traceback."""
    try:
        yield
    except MemoryError:
        raise EvaluationInputError(f"{command} ran out of memory; give fewer photos, or a pairs file listing "
                                   f"the pairs to verify") from None
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        raise EvaluationInputError(f"{command} could not read or write a file{where}: "
                                   f"{exc.strerror or exc}") from None
