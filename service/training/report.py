"""``facerec train``: encode labelled photos once (cached), cross-validate a head over folds of people,
train the head on everyone, and save it with the record of how it was made."""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from service.config import Config
from service.errors import EvaluationInputError
from service.evaluation.encodings import EncodingCache, cache_key, encode_photos
from service.pipeline.head import save_head
from service.pipeline.model_id import base_model_id
from service.training.cross_validation import Encodings, cross_validate
from service.training.data import LabelledPhotos, load_labelled
from service.training.head_training import HeadSettings, train_head


def encode_labelled(data: LabelledPhotos, config: Config, get_pipeline: Callable[[], object], model_id: str,
                    progress: bool = True) -> tuple[Encodings, list[dict]]:
    """The network's own encodings of the usable photos (cached as ``evaluate`` caches them), and the
    photos that could not be used."""
    cache = EncodingCache(config.home / "cache" / "encodings.sqlite")
    try:
        results = encode_photos(data.photos, get_pipeline, cache, cache_key(config, model_id),
                                config.model.batch_size, progress)
    finally:
        cache.close()
    usable = [n for n, r in enumerate(results) if r.encoding is not None]
    if not usable:
        raise EvaluationInputError(f"none of the {len(data.photos)} photos could be used")
    row = {n: m for m, n in enumerate(usable)}
    pairs, dropped = None, 0
    if data.pairs is not None:
        pairs = {}
        for fold, listed in data.pairs.items():
            kept = [(row[a], row[b], same) for a, b, same in listed if a in row and b in row]
            dropped += len(listed) - len(kept)
            pairs[fold] = kept
    people = [data.people[n] for n in usable]
    encodings = Encodings(np.stack([results[n].encoding for n in usable]), people,
                          np.array([data.folds[p] for p in people]), pairs, dropped)
    refused = [{"photo": str(data.photos[n]), "person": data.people[n], "code": r.code, "message": r.message}
               for n, r in enumerate(results) if r.encoding is None]
    return encodings, refused


def run_train(inputs: Sequence[Path], config: Config, get_pipeline: Callable[[], object], model_id: str,
              out: Path, pairs: Path | None = None, folds: int = 5, settings: HeadSettings | None = None,
              validate: bool = True, command: str = "", progress: bool = True) -> dict:
    """Cross-validate (unless ``validate`` is false), train the head on every person, save it in ``out``."""
    settings = settings or HeadSettings(threshold=config.threshold)
    started = time.monotonic()
    out = _writable_folder(Path(out))  # before minutes of work, not after
    data = load_labelled(inputs, folds=folds, pairs=pairs)
    encodings, refused = encode_labelled(data, config, get_pipeline, model_id, progress)
    network_id = base_model_id(model_id)
    record = {
        "model_id": None, "network_model_id": network_id, "command": command, "seed": settings.seed,
        "settings": settings.as_json(),
        "data": {"sources": data.sources + ([str(pairs)] if pairs else []), "photos": len(data.photos),
                 "usable": len(encodings.people), "people": len(set(encodings.people)), "folds": len(set(encodings.folds.tolist())),
                 "pairs_dropped": encodings.pairs_dropped, "refused": len(refused)},
        "cross_validation": None,
    }
    if validate:
        cv = cross_validate(encodings, settings, progress)
        record["cross_validation"] = cv["report"]
        from service.evaluation.figures import write_side_by_side

        name = "lfw" if "lfw" in cv["distances"] else "all"
        before, after = cv["distances"][name]
        record["figures"] = [p.name for p in write_side_by_side(
            [("network alone", before), ("with the head", after)], settings.threshold, out)]
    trained = train_head(encodings.vectors, encodings.people, settings, progress)
    record["final"] = {"best_step": trained.best_step, "steps": trained.steps, "history": trained.history}
    record["model_id"] = f"{network_id}/{trained.head.head_id}"
    record["trained_on"] = {"python": platform.python_version(), "seconds": round(time.monotonic() - started, 1)}
    try:
        save_head(trained.head, out, record)
    except OSError as exc:
        raise EvaluationInputError(f"cannot save the head in {out}: {exc.strerror or exc}") from None
    return {**record, "head_id": trained.head.head_id, "head": str(out), "refused_photos": refused}


def _writable_folder(out: Path) -> Path:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".facerec-write-check"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise EvaluationInputError(f"--out {out}: cannot write a head there ({exc.strerror or exc})") from None
    return out


def format_training(result: dict) -> str:
    """The before/after table of a training run, as text."""
    data = result["data"]
    lines = [f"trained on {', '.join(data['sources'])}: {data['usable']} of {data['photos']} photos usable, "
             f"{data['people']} people in {data['folds']} folds",
             f"head {result['head_id']} saved in {result['head']}", f"model {result['model_id']}"]
    cv = result.get("cross_validation")
    if cv:
        lines += ["", f"cross-validated over {len(cv['folds'])} folds: each fold measured by a head trained "
                      f"without its people; threshold {cv['threshold']:g}"]
        for name, title in (("lfw", "LFW pairs of each held-out fold"), ("all", "every pair of each held-out fold")):
            if name in cv:
                lines += ["", title] + _table(cv[name]["before"], cv[name]["after"])
        if cv["loss"]["before"] is not None:
            lines.append(f"  {'triplet loss (held out)':<26}{cv['loss']['before']:>16.4f}{cv['loss']['after']:>16.4f}")
        if cv.get("identify"):
            ident = cv["identify"]
            lines += ["", f"identify in each held-out fold (its people the gallery, {ident['strangers_share']:g} of them "
                          f"held out as strangers), at {cv['threshold']:g}"]
            for key, title in (("stranger_let_in_rate", "strangers let in"), ("enrolled_refused_rate", "enrolled refused"),
                               ("rank1", "rank-1 (nearest right)")):
                lines.append(f"  {title:<26}{ident['before'][key]:>16.4f}{ident['after'][key]:>16.4f}")
            lines.append(f"  {'enrolled as someone else':<26}{ident['before']['enrolled_wrong_person']:>16}"
                         f"{ident['after']['enrolled_wrong_person']:>16}")
        lines += ["", "  fold  people  steps  accuracy before -> after  false accepts"]
        for row in cv["folds"]:
            part = row.get("lfw") or row.get("all")
            if part is None:
                continue
            lines.append(f"  {row['fold']:>4}  {row['held_out_people']:>6}  {row['best_step']:>5}  "
                         f"{part['before']['accuracy']:>15.4f} -> {part['after']['accuracy']:.4f}  "
                         f"{part['before']['false_accepts']} -> {part['after']['false_accepts']} "
                         f"of {part['after']['impostor_pairs']}")
    for name in result.get("figures", []):
        lines.append(f"figure: {Path(result['head']) / name}")
    return "\n".join(lines)


def _table(before: dict, after: dict) -> list[str]:
    def far_row(report, target):
        return next(item for item in report["tar_at_far"] if item["far_target"] == target)

    rows = [("pairs (genuine/impostor)", f"{before['genuine']}/{before['impostor']}", ""),
            (f"accuracy at {before['threshold']:g}", f"{before['accuracy']:.4f}", f"{after['accuracy']:.4f}"),
            (f"TAR at {before['threshold']:g}", f"{before['tar']:.4f}", f"{after['tar']:.4f}"),
            (f"FAR at {before['threshold']:g}", f"{before['far']:.5f}", f"{after['far']:.5f}"),
            ("best threshold", f"{before['best_threshold']:.3f}", f"{after['best_threshold']:.3f}"),
            ("accuracy at best", f"{before['best_accuracy']:.4f}", f"{after['best_accuracy']:.4f}"),
            ("ROC AUC", f"{before['auc']:.5f}", f"{after['auc']:.5f}"),
            ("EER", f"{before['eer']:.4f}", f"{after['eer']:.4f}"),
            ("TAR at FAR 1e-3", f"{far_row(before, 1e-3)['tar']:.4f}", f"{far_row(after, 1e-3)['tar']:.4f}")]
    if "protocol_accuracy" in before:
        rows.append(("accuracy, other folds' best", _mean_se(before["protocol_accuracy"]), _mean_se(after["protocol_accuracy"])))
    return [f"  {'':<26}{'before':>16}{'after':>16}"] + [f"  {a:<26}{b:>16}{c:>16}" for a, b, c in rows]


def _mean_se(accuracy: dict) -> str:
    return f"{accuracy['mean']:.4f}+-{accuracy['standard_error']:.4f}"
