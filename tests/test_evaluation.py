"""`facerec evaluate` / `calibrate` on real photos, each number checked against an independent computation.

scikit-learn (a test-only dependency) computes the ROC, AUC and rates from distances this file works
out itself from the encodings; identification is checked by brute force over the distance matrix.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.interpolate import interp1d
from scipy.optimize import brentq
from sklearn.metrics import roc_auc_score, roc_curve

from clustered_faces import ClusteredFaces, FaceModel
from service.errors import EvaluationInputError
from service.evaluation import metrics
from service.evaluation.datasets import Dataset, load_inputs
from service.evaluation.encodings import Encoded, EncodingCache
from service.evaluation.figures import histogram_counts, write_figures
from service.evaluation.metrics import PairDistances, all_pair_distances, count_below, rates, verification_report
from service.evaluation.report import build_report, calibration_report, encode_dataset, evaluation_of
from service.cli import EXIT_INPUT_ERROR, EXIT_MATCH, main
from service.config import load_config

THRESHOLD = 0.7


class CountingPipeline:
    """The real pipeline, counting the photos it is asked to locate and the faces it encodes."""

    def __init__(self, pipeline):
        self.pipeline, self.located, self.encoded = pipeline, 0, 0

    def locate(self, source):
        self.located += 1
        return self.pipeline.locate(source)

    def encode(self, faces):
        self.encoded += len(faces)
        return self.pipeline.encode(faces)

    @property
    def model_id(self):
        return self.pipeline.model_id

    def without_head(self):
        """Evaluation caches the network's own encodings: count those."""
        self.pipeline = self.pipeline.without_head()
        return self


def no_pipeline():
    raise AssertionError("the model was asked for although every photo should be cached")


@pytest.fixture(scope="module")
def eval_config(config):
    return dataclasses.replace(config, threshold=THRESHOLD)


@pytest.fixture(scope="module")
def celeb(eval_config, pipeline, celebrity_dir):
    """5-celebrity train + val encoded once through a counting wrapper, into the session home's cache."""
    counter = CountingPipeline(pipeline)
    data = load_inputs([celebrity_dir / "train", celebrity_dir / "val"])
    ev = encode_dataset(data, eval_config, lambda: counter, pipeline.model_id, progress=False,
                        head=pipeline.encoder.head)
    report = build_report(ev, eval_config, pipeline.model_id, strangers=0.2, seed=0)
    return ev, report, counter


def independent_pairs(ev):
    """Genuine/impostor labels and distances of every photo pair, computed here from the encodings."""
    d, same = [], []
    for i, j in itertools.combinations(range(len(ev.people)), 2):
        d.append(float(np.linalg.norm(ev.vectors[i].astype(np.float64) - ev.vectors[j])))
        same.append(ev.people[i] == ev.people[j])
    return np.array(d), np.array(same)


def sklearn_checks(report_ver, d, same, threshold):
    """Assert every verification number against sklearn / plain numpy on the same distances."""
    fpr, tpr, _ = roc_curve(same, -d)  # larger score = more alike
    assert report_ver["auc"] == pytest.approx(roc_auc_score(same, -d), abs=1e-9)
    accepted = d < threshold
    assert report_ver["accuracy"] == pytest.approx(np.mean(accepted == same))
    assert report_ver["tar"] == pytest.approx(accepted[same].mean())
    assert report_ver["far"] == pytest.approx(accepted[~same].mean())
    eer = brentq(lambda x: 1.0 - x - interp1d(fpr, tpr)(x), 0.0, 1.0)
    assert report_ver["eer"] == pytest.approx(eer, abs=1e-6)
    for item in report_ver["tar_at_far"]:
        assert item["tar"] == pytest.approx(tpr[fpr <= item["far_target"]].max())
        assert np.mean(d[~same] < item["threshold"]) <= item["far_target"]
    n_gen, n_imp = same.sum(), (~same).sum()
    best = ((tpr * n_gen + (1 - fpr) * n_imp) / (n_gen + n_imp)).max()
    assert report_ver["best_accuracy"] == pytest.approx(best)
    assert np.mean((d < report_ver["best_threshold"]) == same) == pytest.approx(best)


def test_metrics_match_sklearn_on_synthetic_ties():
    rng = np.random.default_rng(3)
    d = np.round(np.concatenate([rng.normal(0.8, 0.2, 300), rng.normal(1.3, 0.15, 900)]), 2)  # many ties
    same = np.arange(1200) < 300
    sklearn_checks(verification_report(PairDistances.labelled(d, same), THRESHOLD), d, same, THRESHOLD)


def test_celebrity_verification_matches_sklearn(celeb):
    ev, report, _ = celeb
    d, same = independent_pairs(ev)
    ver = report["verification"]
    assert ver["pairs"] == len(d) and ver["genuine"] == same.sum() and ver["impostor"] == (~same).sum()
    assert ver["threshold"] == THRESHOLD
    sklearn_checks(ver, d, same, THRESHOLD)
    assert ver["auc"] > 0.99 and ver["far"] == 0.0  # README: nobody is let in as somebody else at 0.7


def test_celebrity_identification_matches_brute_force(celeb):
    ev, report, _ = celeb
    people = np.array(ev.people)
    dist = np.linalg.norm(ev.vectors[:, None].astype(np.float64) - ev.vectors[None], axis=-1)
    np.fill_diagonal(dist, np.inf)  # leave the probe itself out
    names = sorted(set(people))
    probes = [i for i in range(len(people)) if (people == people[i]).sum() >= 2]
    ranks = []
    for i in probes:
        scores = np.array([dist[i, people == n].min() for n in names])  # a person scores their nearest photo
        ranks.append(1 + int((scores < scores[names.index(people[i])]).sum()))
    ident = report["identification"]
    assert ident["probes"] == len(probes)
    assert ident["rank1"] == pytest.approx(np.mean(np.array(ranks) == 1))
    assert ident["rank5"] == pytest.approx(np.mean(np.array(ranks) <= 5))

    o = ident["open_set"]
    strangers = set(o["strangers"])
    assert len(strangers) == 1  # 0.2 of 5 people
    enrolled = ~np.isin(people, list(strangers))
    let_in = sum(dist[i, enrolled].min() < THRESHOLD for i in np.flatnonzero(~enrolled))
    refused = sum(dist[i, enrolled].min() >= THRESHOLD for i in np.flatnonzero(enrolled))
    assert (o["strangers_let_in"], o["stranger_probes"]) == (let_in, (~enrolled).sum())
    assert (o["enrolled_refused"], o["enrolled_probes"]) == (refused, enrolled.sum())


def test_unusable_photos_are_reported_with_reasons(celeb):
    ev, report, _ = celeb
    refused = report["refused"]
    assert len(ev.people) + len(refused) == report["inputs"]["photos"]
    assert refused and {r["code"] for r in refused} <= {"no_face", "multiple_faces"}
    assert all(r["photo"] in r["message"] and Path(r["photo"]).is_file() for r in refused)


def test_second_run_is_served_from_the_cache(celeb, eval_config, pipeline, celebrity_dir):
    ev, report, counter = celeb
    assert counter.located == report["inputs"]["photos"]  # each photo detected once
    assert counter.encoded == report["inputs"]["usable"]
    data = load_inputs([celebrity_dir / "train", celebrity_dir / "val"])
    again = encode_dataset(data, eval_config, no_pipeline, pipeline.model_id, progress=False,
                           head=pipeline.encoder.head)
    np.testing.assert_array_equal(again.vectors, ev.vectors)
    assert again.refused == ev.refused


def test_corrupt_cache_is_discarded_with_a_warning(tmp_path, capsys):
    path = tmp_path / "encodings.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    cache = EncodingCache(path)
    cache.put({"abc": Encoded(np.ones(128, np.float32))}, "m")
    assert cache.get(["abc"], "m")["abc"].encoding.shape == (128,)
    cache.close()
    assert "unreadable" in capsys.readouterr().err


def test_calibrated_threshold_meets_target_far(celeb):
    ev, _, _ = celeb
    d, same = independent_pairs(ev)
    imp = d[~same]
    for target in (1e-2, 1e-3):
        cal = calibration_report(ev, target, THRESHOLD)
        t = cal["threshold"]
        assert np.mean(imp < t) <= target
        assert np.mean(imp < t + 1e-4) > target  # the largest such threshold at the printed precision
        assert cal["tar"] == pytest.approx(np.mean(d[same] < t)) and cal["impostor_pairs"] == len(imp)
        assert cal["reliable"] == (len(imp) >= 3 / target)
    assert calibration_report(ev, 1e-4, THRESHOLD)["reliable"] is False  # 4994 < 30000 impostor pairs


def test_calibrate_write_updates_a_copy_of_the_config(tmp_path, project_root, eval_config, pipeline, celebrity_dir,
                                                      capsys, monkeypatch):
    if eval_config.model.head is not None:  # the copy's relative paths would resolve beside it
        monkeypatch.setenv("FACEREC_MODEL__HEAD", str(eval_config.model.head))
    config_file = tmp_path / "config.yaml"
    original = (project_root / "config.yaml").read_text()
    config_file.write_text(original)
    code = main(["calibrate", str(celebrity_dir / "train"), str(celebrity_dir / "val"), "--far", "1e-3", "--write",
                 "--config", str(config_file), "--home", str(eval_config.home), "--json"], pipeline=pipeline)
    out = json.loads(capsys.readouterr().out)
    assert code == EXIT_MATCH
    assert (tmp_path / "config.yaml.bak").read_text() == original
    new = config_file.read_text()
    comments = [line for line in original.splitlines() if line.lstrip().startswith("#")]
    assert comments and all(line in new.splitlines() for line in comments)
    assert len(new.splitlines()) == len(original.splitlines())
    assert load_config(config_file, env={}).threshold == pytest.approx(out["threshold"])
    assert out["threshold"] != THRESHOLD and out["far"] <= 1e-3


def test_evaluate_cli_json_and_figures(tmp_path, eval_config, pipeline, celebrity_dir, capsys, monkeypatch):
    monkeypatch.setenv("FACEREC_THRESHOLD", str(THRESHOLD))
    code = main(["evaluate", str(celebrity_dir / "train"), str(celebrity_dir / "val"), "--home", str(eval_config.home),
                 "--figures", str(tmp_path / "figs"), "--json"], pipeline=pipeline)
    report = json.loads(capsys.readouterr().out)
    assert code == EXIT_MATCH
    for key in ("accuracy", "threshold", "tar", "far", "auc", "best_threshold"):
        assert isinstance(report["verification"][key], float)
    assert report["identification"]["rank1"] == 1.0
    assert len(report["figures"]) == 2
    for figure in report["figures"]:
        data = Path(figure).read_bytes()
        assert data.startswith(b"\x89PNG") and 10_000 < len(data) < 200_000


def test_happy_house_pairs_csv(tmp_path, happy_house_dir, eval_config, pipeline):
    expected = json.loads((happy_house_dir / "expected.json").read_text())
    rows = ["reference photo;same person?;camera photo"]  # label in the middle, semicolons, free column names
    for check in expected["verify"]:
        same = expected["camera_truth"][check["image"]] == check["claimed"]
        rows.append(f"photos/{expected['residents'][check['claimed']]};{'yes' if same else 'no'};photos/{check['image']}")
    shutil.copytree(happy_house_dir, tmp_path / "photos")
    (tmp_path / "checks.csv").write_text("\n".join(rows) + "\n")
    data = load_inputs([tmp_path / "checks.csv"])
    ev = encode_dataset(data, eval_config, lambda: pipeline, pipeline.model_id, progress=False,
                        head=pipeline.encoder.head)
    report = build_report(ev, eval_config, pipeline.model_id)
    assert report["identification"] is None and report["refused"] == []
    d = np.array([np.linalg.norm(ev.vectors[data.photos.index(tmp_path / r.split(";")[0])].astype(np.float64)
                                 - ev.vectors[data.photos.index(tmp_path / r.split(";")[2])]) for r in rows[1:]])
    same = np.array([r.split(";")[1] == "yes" for r in rows[1:]])
    np.testing.assert_allclose(ev.pairs.genuine, np.sort(d[same]))
    np.testing.assert_allclose(ev.pairs.impostor, np.sort(d[~same]))
    ver = report["verification"]
    assert ver["pairs"] == 6 and ver["accuracy"] == 1.0  # every published door decision holds
    assert ver["auc"] == pytest.approx(roc_auc_score(same, -d))
    assert ver["tar"] == pytest.approx(np.mean(d[same] < THRESHOLD)) and ver["far"] == 0.0


def test_lfw_pairs_txt_reuses_cached_encodings(tmp_path, celeb, eval_config, pipeline):
    ev, _, _ = celeb
    sources = {}
    for person in ("ben_afflek", "madonna"):
        usable = [ev.dataset.photos[n] for n, p in zip(ev.usable, ev.people) if p == person][:3]
        (tmp_path / person).mkdir()
        for k, photo in enumerate(usable, start=1):
            shutil.copy(photo, tmp_path / person / f"{person}_{k:04d}.jpg")
            sources[(person, k)] = photo
    lines = ["1 4", "ben_afflek 1 2", "madonna 1\t3", "ben_afflek 1 madonna 2", "ben_afflek 3 madonna 1"]
    (tmp_path / "pairs.txt").write_text("\n".join(lines) + "\n")
    data = load_inputs([tmp_path / "pairs.txt"])
    assert [s for _, _, s in data.pairs] == [True, True, False, False]
    got = encode_dataset(data, eval_config, no_pipeline, pipeline.model_id, progress=False,
                         head=pipeline.encoder.head)  # same bytes
    vector = {ev.dataset.photos[n]: ev.vectors[m] for m, n in enumerate(ev.usable)}
    want = [np.linalg.norm(vector[sources[a]].astype(np.float64) - vector[sources[b]])
            for a, b in [(("ben_afflek", 1), ("ben_afflek", 2)), (("madonna", 1), ("madonna", 3)),
                         (("ben_afflek", 1), ("madonna", 2)), (("ben_afflek", 3), ("madonna", 1))]]
    np.testing.assert_allclose(got.pairs.genuine, sorted(want[:2]))  # the file's two same-person pairs
    np.testing.assert_allclose(got.pairs.impostor, sorted(want[2:]))
    report = build_report(got, eval_config, pipeline.model_id)
    assert report["identification"]["probes"] == 6  # LFW names the people: 3 photos each of two


@pytest.mark.parametrize("content, message", [
    ("a,b,c\nx.jpg,y.jpg,maybe\n", "no column holds only labels"),
    ("a,b\nx.jpg,y.jpg\n", "two photo paths and a label"),
    ("2\nname 1\n", "line 2"),
    ("", "empty"),
])
def test_bad_pairs_files_exit_2(tmp_path, capsys, pipeline, content, message):
    (tmp_path / "pairs.csv").write_text(content)
    code = main(["evaluate", str(tmp_path / "pairs.csv"), "--home", str(tmp_path), "--json"], pipeline=pipeline)
    error = json.loads(capsys.readouterr().out)["error"]
    assert code == EXIT_INPUT_ERROR and error["code"] == "bad_request" and message in error["message"]


def test_missing_folder_and_no_usable_pairs_exit_2(tmp_path, capsys, pipeline):
    code = main(["evaluate", str(tmp_path / "nowhere"), "--home", str(tmp_path)], pipeline=pipeline)
    assert code == EXIT_INPUT_ERROR and "no such file or folder" in capsys.readouterr().err
    (tmp_path / "people" / "someone").mkdir(parents=True)
    (tmp_path / "people" / "someone" / "x.jpg").write_bytes(b"not a jpeg")
    code = main(["evaluate", str(tmp_path / "people"), "--home", str(tmp_path)], pipeline=pipeline)
    assert code == EXIT_INPUT_ERROR and "no usable pairs" in capsys.readouterr().err


# ---- all pairs in blocks: the same numbers as one dense array of every pair, in bounded memory ----

def dense_report(d, same, threshold):
    """The dense computation the blocked one replaced (every pair's distance in one array, the ROC at
    every distinct distance), kept here as the reference."""
    gen, imp = np.sort(d[same]), np.sort(d[~same])
    cuts = np.append(np.unique(d), np.inf)
    tar, far = np.searchsorted(gen, cuts) / len(gen), np.searchsorted(imp, cuts) / len(imp)
    gap = far - (1.0 - tar)
    k = int(np.argmax(gap >= 0))
    w = 0.0 if gap[k] == 0 else -gap[k - 1] / (gap[k] - gap[k - 1])
    eer = (far[k], cuts[k]) if gap[k] == 0 else (far[k - 1] + w * (far[k] - far[k - 1]),
                                                 cuts[k - 1] + w * (min(cuts[k], 2.0) - cuts[k - 1]))
    accuracy = (tar * len(gen) + (1 - far) * len(imp)) / len(d)
    b = int(np.argmax(accuracy))

    def at(t):
        return {"accuracy": np.mean((d < t) == same), "tar": np.mean(gen < t), "far": np.mean(imp < t)}

    def for_far(target):
        allowed = math.floor(target * len(imp) + 1e-9)
        return max(math.floor(min(imp[allowed] if allowed < len(imp) else 2.0, 2.0) * 1e4) / 1e4, 1e-4)

    summary = {name: {"min": v.min(), "median": np.median(v), "max": v.max(), "mean": v.mean()}
               for name, v in (("genuine_distance", gen), ("impostor_distance", imp))}
    return {"pairs": len(d), "genuine": len(gen), "impostor": len(imp), **at(threshold),
            "auc": np.trapezoid(tar, far), "eer": eer[0], "eer_threshold": eer[1],
            "tar_at_far": [{"threshold": for_far(t), **at(for_far(t))} for t in (1e-2, 1e-3)],
            "best_threshold": ((cuts[b - 1] if b else 0.0) + min(cuts[b], 2.0)) / 2, "best_accuracy": accuracy[b],
            **summary}


def lfw_like(photos, seed=5):
    """Clustered synthetic encodings of people with 1 to 5 photos each, and their names."""
    persons = np.repeat(np.arange(photos // 3), np.random.default_rng(seed).integers(1, 6, photos // 3))[:photos]
    return ClusteredFaces(FaceModel(seed=seed)).probes(persons), [f"p{p}" for p in persons]


def assert_same_report(got, want, d, tolerance):
    """Counts equal; rates equal where no distance is within 1e-6 of the threshold; the rest within
    ``tolerance`` (the rounding of distances)."""
    def clear_of(t):
        return not np.any(np.abs(d - t) < 1e-6)

    assert (got["pairs"], got["genuine"], got["impostor"]) == (want["pairs"], want["genuine"], want["impostor"])
    assert clear_of(got["threshold"])
    assert all(got[key] == want[key] for key in ("accuracy", "tar", "far"))
    for key in ("auc", "eer", "eer_threshold", "best_threshold", "best_accuracy"):
        assert got[key] == pytest.approx(want[key], abs=tolerance), key
    for name in ("genuine_distance", "impostor_distance"):
        assert got[name] == pytest.approx(want[name], abs=tolerance), name
    for mine, theirs in zip(got["tar_at_far"], want["tar_at_far"]):
        assert mine["threshold"] == pytest.approx(theirs["threshold"], abs=1.01e-4)  # floored to 4 decimals
        if mine["threshold"] == theirs["threshold"] and clear_of(mine["threshold"]):
            assert all(mine[key] == theirs[key] for key in ("accuracy", "tar", "far"))


@pytest.mark.parametrize("exact_pairs", [metrics.EXACT_PAIRS, 0], ids=["float64", "float32"])
@pytest.mark.parametrize("threshold", [0.7, 1.1])
def test_blocked_pairs_give_the_dense_numbers(exact_pairs, threshold):
    vectors, people = lfw_like(400)
    first, second = np.triu_indices(len(people), 1)
    d = np.linalg.norm(vectors[first].astype(np.float64) - vectors[second], axis=1)
    same = np.array(people)[first] == np.array(people)[second]
    pairs = all_pair_distances(vectors, people, exact_pairs=exact_pairs, rows=64)  # several blocks
    assert pairs.impostor.dtype == (np.float64 if exact_pairs else np.float32)
    np.testing.assert_allclose(pairs.genuine, np.sort(d[same]), atol=1e-12 if exact_pairs else 1e-7, rtol=0)
    np.testing.assert_allclose(pairs.impostor, np.sort(d[~same]), atol=1e-12 if exact_pairs else 1e-7, rtol=0)
    assert_same_report(verification_report(pairs, threshold), dense_report(d, same, threshold), d,
                       1e-12 if exact_pairs else 1e-6)


def test_folder_evaluation_forms_every_pair():
    vectors, people = lfw_like(120)
    dataset = Dataset([Path(f"{n}.jpg") for n in range(len(people) + 1)], people + ["nobody"], None, ["synthetic"])
    ev = evaluation_of(dataset, [Encoded(v) for v in vectors] + [Encoded(None, "no_face", "no face in 120.jpg")])
    assert ev.pairs.pairs == len(people) * (len(people) - 1) // 2 and ev.usable == list(range(len(people)))
    assert len(ev.pairs.genuine) == sum(c * (c - 1) // 2 for c in np.unique(people, return_counts=True)[1])
    assert ev.refused[0]["code"] == "no_face"


def test_thresholds_compare_in_float64_on_float32_distances():
    stored = np.array([np.float32(0.7)], np.float32)  # 0.699999988..., below 0.7 in float64 but not in float32
    assert count_below(stored, 0.7) == 1 and count_below(stored, float(np.float32(0.7))) == 0
    assert count_below(stored, float(np.float32(0.7)), inclusive=True) == 1
    pairs = PairDistances(np.array([0.5]), stored)
    assert rates(pairs, 0.7)["far"] == 1.0 and rates(pairs, float(np.float32(0.7)))["far"] == 0.0


def test_histograms_and_roc_from_sorted_distances(tmp_path):
    rng = np.random.default_rng(1)
    values = np.sort(rng.uniform(0, 2, 10_000)).astype(np.float32)
    edges = np.linspace(0, 2, 81)
    np.testing.assert_array_equal(histogram_counts(values, edges), np.histogram(values, edges)[0])
    pairs = PairDistances(np.sort(rng.normal(0.7, 0.1, 500)), values)
    paths = write_figures(pairs, 0.7, tmp_path / "figs")
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in paths)
    (tmp_path / "a-file").write_text("")
    with pytest.raises(EvaluationInputError, match="cannot write the figures"):
        write_figures(pairs, 0.7, tmp_path / "a-file")


def test_pairs_that_cannot_fit_are_refused_before_allocating(monkeypatch):
    vectors, people = lfw_like(300)
    monkeypatch.setattr(metrics, "_available_memory", lambda: 100_000)
    with pytest.raises(EvaluationInputError, match="MB of memory"):
        all_pair_distances(vectors, people)


def test_running_out_of_memory_is_an_input_error_not_a_traceback(monkeypatch, celeb, eval_config, pipeline,
                                                                 celebrity_dir, capsys):
    def exhausted(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr("service.evaluation.report.all_pair_distances", exhausted)
    code = main(["evaluate", str(celebrity_dir / "train"), str(celebrity_dir / "val"), "--home", str(eval_config.home),
                 "--json"], pipeline=pipeline)
    error = json.loads(capsys.readouterr().out)["error"]
    assert code == EXIT_INPUT_ERROR and "ran out of memory" in error["message"]


@pytest.mark.slow  # 35 s on an idle 2-core machine, most of it identifying 13,000 probes one at a time
def test_lfw_sized_evaluation_peaks_under_2gb(project_root):
    """13,000 photos of ~2,800 people (84M pairs) through the evaluate path after encoding, in a process
    of its own: bench/evaluate_memory.py's "after" row, which reports its own peak RSS."""
    done = subprocess.run([sys.executable, str(project_root / "bench" / "evaluate_memory.py"), "--child", "after",
                           "--photos", "13000"], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert done.returncode == 0, done.stderr[-2000:]
    row = json.loads(done.stdout.strip().splitlines()[-1])
    assert row["pairs"] == 13000 * 12999 // 2 and row["people"] > 2500
    assert row["peak_rss_mb"] < 2048, row
