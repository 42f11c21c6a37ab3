"""Training a head: folds of people, the anchored loss, the training step, the artefact and its model
id, `facerec train` end to end, and a roster moved onto a new head by `reindex --reembed`."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from clustered_faces import ClusteredFaces, FaceModel
from service.errors import EvaluationInputError, ModelError
from service.pipeline.head import Head, load_head, save_head

LFW = Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw"
SMALL = dict(people_per_batch=16, photos_per_person=4, max_steps=400, check_every=50, patience=4)


def synthetic(people: int = 240, per_person: int = 5, seed: int = 0):
    """Clustered encodings fitted to real FaceNet distances (tests/clustered_faces.py), with names."""
    faces = ClusteredFaces(FaceModel(faces_per_person=per_person, seed=seed))
    vectors = faces.faces(people * per_person)
    names = [f"p{n // per_person:04d}" for n in range(len(vectors))]
    return vectors, names


# ---- data: folds of people -----------------------------------------------------------------------

def test_lfw_people_folds_are_disjoint_and_pairs_stay_in_their_fold():
    from service.training.data import load_labelled

    if not (LFW / "people.txt").is_file():
        pytest.skip(f"LFW lists not found at {LFW}")
    data = load_labelled([LFW / "people.txt"], pairs=LFW / "pairs.txt")
    assert len(data.photos) == 6165 and len(data.folds) == 2835 and data.fold_count == 5
    assert all(photo.parent.name == person for photo, person in zip(data.photos, data.people))
    for fold, pairs in data.pairs.items():
        assert len(pairs) == 600
        assert {data.folds[data.people[i]] for a, b, _ in pairs for i in (a, b)} == {fold}


def test_folders_get_folds_by_name_and_malformed_lists_are_refused(tmp_path, celebrity_dir):
    from service.training.data import load_labelled

    first = load_labelled([celebrity_dir / "train"], folds=3)
    again = load_labelled([celebrity_dir / "train", celebrity_dir / "val"], folds=3)
    assert first.folds == {p: again.folds[p] for p in first.folds}  # a person's fold is theirs alone
    bad = tmp_path / "people.txt"
    for text in ("two\n", "2\n1\nAlice\n", "1\n1\nAlice x\n", "1\n2\nAlice 1\nAlice 2\n", "1\n3\nAlice 1\n",
                 "1\n1\nAlice 999999999\n"):
        bad.write_text(text)
        with pytest.raises(EvaluationInputError):
            load_labelled([bad])
    with pytest.raises(EvaluationInputError, match="at least 2"):
        load_labelled([celebrity_dir / "train"], folds=1)


# ---- the loss ------------------------------------------------------------------------------------

def test_anchored_loss_matches_its_definition():
    from service.training.losses import anchored_batch_hard_loss

    rng = np.random.default_rng(3)
    y = rng.normal(size=(12, 128)).astype(np.float32)
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 3, 4, 4, 5])
    d2 = ((y[:, None] - y[None]) ** 2).sum(-1)
    expected = []
    for i in range(len(y)):
        same, other = labels == labels[i], labels != labels[i]
        negative = d2[i][other].min()
        term = max(0.49 + 0.2 * 0.2 - negative, 0)
        if same.sum() > 1:
            positive = max(d2[i][j] for j in np.flatnonzero(same) if j != i)
            term += max(positive - negative + 0.2, 0) + max(positive - (0.49 - 0.8 * 0.2), 0)
        expected.append(term)
    got = float(anchored_batch_hard_loss(y, labels, alpha=0.2, threshold=0.7, above_share=0.2))
    assert got == pytest.approx(np.mean(expected), rel=1e-5)


# ---- training and cross-validation ---------------------------------------------------------------

def test_training_lowers_the_loss_and_repeats_for_a_seed():
    from service.training.head_training import HeadSettings, batch_loss, train_head

    vectors, names = synthetic(160)
    settings = HeadSettings(**SMALL)
    first = train_head(vectors, names, settings, progress=False)
    assert first.history[0]["train_loss"] > first.history[-1]["train_loss"]
    assert batch_loss(first.head, vectors, names, settings) < batch_loss(None, vectors, names, settings) / 2
    assert train_head(vectors, names, settings, progress=False).head.sha256 == first.head.sha256
    other = train_head(vectors, names, replace(settings, seed=1), progress=False)
    assert other.head.sha256 != first.head.sha256


def test_a_run_shorter_than_one_check_still_trains():
    from service.training.head_training import HeadSettings, train_head

    vectors, names = synthetic(60)
    trained = train_head(vectors, names, HeadSettings(**{**SMALL, "max_steps": 20}), progress=False)
    assert trained.steps == 20 and trained.best_step == 20 and len(trained.history) == 1
    assert not np.allclose(trained.head.weight, np.eye(128))


def test_held_out_people_are_never_trained_on():
    from service.training.head_training import split_people

    names = [f"p{n // 3}" for n in range(300)]
    fit, held = split_people(names, 0.1, seed=0)
    assert {names[i] for i in fit}.isdisjoint({names[i] for i in held})
    assert len({names[i] for i in held}) == 10 and len(fit) + len(held) == 300


def test_cross_validation_measures_each_fold_with_a_head_that_never_saw_it(monkeypatch):
    from service.training import cross_validation
    from service.training.head_training import HeadSettings

    vectors, names = synthetic(240)
    folds = np.array([int(name[1:]) % 3 for name in names])
    seen = []
    real_train = cross_validation.train_head

    def recording(v, people, settings, progress):
        seen.append(set(people))
        return real_train(v, people, settings, progress)

    monkeypatch.setattr(cross_validation, "train_head", recording)
    data = cross_validation.Encodings(vectors, names, folds)
    result = cross_validation.cross_validate(data, HeadSettings(**SMALL), progress=False)
    for fold, trained_on in enumerate(seen):
        held = {n for n, f in zip(names, folds) if f == fold}
        assert trained_on.isdisjoint(held) and len(trained_on) == 160
    report = result["report"]["all"]
    # The synthetic people sit on FaceNet's own scale, so 0.7 refuses many genuine pairs before.
    assert report["after"]["accuracy"] > report["before"]["accuracy"]
    assert report["after"]["tar"] > report["before"]["tar"] + 0.1
    assert result["report"]["loss"]["after"] < result["report"]["loss"]["before"]


# ---- the artefact and the model id ---------------------------------------------------------------

def test_head_hash_names_the_numbers_and_enters_the_model_id(tmp_path, config):
    from service.pipeline.model_id import base_model_id, configured_model_id

    rng = np.random.default_rng(0)
    head = Head(np.eye(128, dtype=np.float32) + rng.normal(0, 0.01, (128, 128)).astype(np.float32),
                rng.normal(0, 0.1, 128).astype(np.float32))
    path = save_head(head, tmp_path / "h", {"seed": 0})
    loaded = load_head(tmp_path / "h")
    assert loaded.sha256 == head.sha256 and path.name == "head.npz"
    assert json.loads((tmp_path / "h" / "training.json").read_text())["head_id"] == head.head_id
    with_head = configured_model_id(replace(config, model=replace(config.model, head=tmp_path / "h")))
    without = configured_model_id(replace(config, model=replace(config.model, head=None)))
    assert with_head == f"{without}/{head.head_id}" and base_model_id(with_head) == without
    nudged = Head(head.weight, head.bias + np.float32(1e-6))
    assert nudged.head_id != head.head_id
    out = loaded.apply(rng.normal(size=(4, 128)))
    assert np.allclose(np.linalg.norm(out, axis=1), 1, atol=1e-5)


def test_a_missing_or_malformed_head_is_a_clear_model_error(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_head(tmp_path / "nowhere")
    np.savez(tmp_path / "head.npz", weight=np.eye(3), bias=np.zeros(3))
    with pytest.raises(ModelError, match="128x128"):
        load_head(tmp_path)
    (tmp_path / "head.npz").write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="unreadable"):
        load_head(tmp_path)
    save_head(Head(np.eye(128, dtype=np.float32), np.zeros(128, np.float32)), tmp_path, {})
    whole = (tmp_path / "head.npz").read_bytes()
    for cut in (len(whole) // 2, len(whole) - 30):  # a copy that stopped short
        (tmp_path / "head.npz").write_bytes(whole[:cut])
        with pytest.raises(ModelError, match="unreadable"):
            load_head(tmp_path)


def test_a_head_trained_on_another_network_is_refused(tmp_path, config):
    from service.pipeline.head import configured_head

    save_head(Head(np.eye(128, dtype=np.float32), np.zeros(128, np.float32)), tmp_path / "h",
              {"network_model_id": "facenet-keras-inception-resnet-v1@sha256:6acdd8fb3a3fb2b5/divide255"})
    odd = replace(config, model=replace(config.model, head=tmp_path / "h", normalization="standardize"))
    with pytest.raises(ModelError, match="trained on encodings of"):
        configured_head(odd)
    assert configured_head(replace(odd, model=replace(odd.model, normalization="divide255", flip=False))) is not None


def test_the_shipped_head_is_the_one_its_record_describes(project_root):
    shipped = project_root / "models" / "heads" / "lfw-folds-1-5"
    head = load_head(shipped)
    record = json.loads((shipped / "training.json").read_text())
    assert record["sha256"] == head.sha256 and record["model_id"].endswith(head.head_id)
    assert record["command"].startswith("facerec train") and record["seed"] == 0


# ---- end to end ----------------------------------------------------------------------------------

def test_train_command_saves_a_head_with_its_record(tmp_path, celebrity_dir, pipeline, monkeypatch, capsys):
    from service.cli import main

    monkeypatch.setenv("FACEREC_HOME", str(tmp_path / "home"))
    out = tmp_path / "head"
    code = main(["train", str(celebrity_dir / "train"), str(celebrity_dir / "val"), "--folds", "5",
                 "--out", str(out), "--max-steps", "200", "--json"], pipeline=pipeline)
    result = json.loads(capsys.readouterr().out)
    assert code == 0, result
    head = load_head(out)
    assert result["head_id"] == head.head_id and result["model_id"].endswith(f"/{head.head_id}")
    assert "/head@" not in result["network_model_id"]  # trained on the network's own encodings
    record = json.loads((out / "training.json").read_text())
    assert record["data"]["people"] == 5 and len(record["cross_validation"]["folds"]) == record["data"]["folds"] >= 2
    assert all((out / name).is_file() for name in record["figures"])
    code = main(["train", str(tmp_path / "absent"), "--out", str(out), "--json"], pipeline=pipeline)
    assert code == 2 and json.loads(capsys.readouterr().out)["error"]["code"]
    (tmp_path / "a-file").write_text("")
    code = main(["train", str(celebrity_dir / "train"), "--out", str(tmp_path / "a-file" / "head"), "--json"],
                pipeline=pipeline)
    assert code == 2 and "--out" in json.loads(capsys.readouterr().out)["error"]["message"]


def test_train_needs_no_configured_head_and_never_overwrites_it(tmp_path, celebrity_dir, pipeline, monkeypatch,
                                                              capsys):
    from service.cli import main

    monkeypatch.setenv("FACEREC_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FACEREC_MODEL__HEAD", str(tmp_path / "live-head"))  # configured, and absent
    code = main(["train", str(celebrity_dir / "train"), "--out", str(tmp_path / "live-head"), "--json"],
                pipeline=pipeline)
    assert code == 2 and "configured head" in json.loads(capsys.readouterr().out)["error"]["message"]
    code = main(["train", str(celebrity_dir / "train"), str(celebrity_dir / "val"), "--out", str(tmp_path / "new"),
                 "--no-cross-validation", "--max-steps", "100", "--json"])  # loads its own, head-less network
    result = json.loads(capsys.readouterr().out)
    assert code == 0, result
    assert "/head@" not in result["network_model_id"] and (tmp_path / "new" / "head.npz").is_file()


def test_a_fold_of_one_photo_does_not_sink_the_report(tmp_path, monkeypatch):
    from service.training import cross_validation
    from service.training.head_training import HeadSettings

    vectors, names = synthetic(120)
    folds = np.array([int(name[1:]) % 2 for name in names])
    vectors, names, folds = np.vstack([vectors, vectors[:1]]), names + ["loner"], np.append(folds, 2)
    data = cross_validation.Encodings(vectors, names, folds)
    report = cross_validation.cross_validate(data, HeadSettings(**SMALL), progress=False)["report"]
    assert "all" not in report["folds"][2] and report["all"]["after"]["pairs"] > 0
    from service.pipeline.head import save_head as save

    save(Head(np.eye(128, dtype=np.float32), np.zeros(128, np.float32)), tmp_path, {"report": report,
                                                                                     "nan": float("nan")})
    assert json.loads((tmp_path / "training.json").read_text(), parse_constant=lambda c: 1 / 0)["nan"] is None


def test_reembed_moves_a_roster_onto_a_new_head(tmp_path, config, pipeline, celebrity_dir, make_core):
    from service.app import Facerec, Photo
    from service.pipeline.encoder import Encoder
    from service.pipeline.pipeline import Pipeline

    rng = np.random.default_rng(5)
    head = Head((np.eye(128) + rng.normal(0, 0.02, (128, 128))).astype(np.float32),
                rng.normal(0, 0.3, 128).astype(np.float32))
    save_head(head, tmp_path / "new-head", {})
    home = tmp_path / "home"
    old = make_core(home)
    people = sorted(p.name for p in (celebrity_dir / "train").iterdir())[:2]
    for person in people:
        old.enrollment.enroll(person, [Photo.from_path(p) for p in sorted((celebrity_dir / "train" / person).iterdir())[:2]])
    probe = Photo.from_path(sorted((celebrity_dir / "val" / people[0]).iterdir())[0])
    assert old.recognition.identify(probe).to_json()["faces"][0]["candidates"][0]["person"] == people[0]
    enrolled = old.roster.state()[0]
    old.close()

    moved_config = replace(config, home=home, model=replace(config.model, head=tmp_path / "new-head"))
    moved_pipeline = Pipeline(Encoder(pipeline.encoder.facenet, config.model.normalization, config.model.batch_size,
                                      config.model.flip, head), pipeline.detector, moved_config)

    new = Facerec(moved_config, pipeline=moved_pipeline)
    try:
        assert new.model_id.endswith(head.head_id) and new.model_id != old.model_id
        assert enrolled >= 3 and new.roster.count_stale_faces() == enrolled  # not comparable: not searched
        assert new.roster.state()[0] == 0
        report = new.upkeep.reindex(reembed=True)
        assert report.reembedded == enrolled and new.roster.count_stale_faces() == 0
        answer = new.recognition.identify(probe).to_json()["faces"][0]
        assert answer["candidates"][0]["person"] == people[0]
        expected = head.apply(pipeline.without_head().faces(probe.source)[0].encoding[None])[0]
        assert np.allclose(new.pipeline.faces(probe.source)[0].encoding, expected, atol=1e-5)
    finally:
        new.close()


def test_evaluate_applies_the_cores_head_to_the_networks_encodings(tmp_path, celebrity_dir, pipeline, project_root,
                                                                    monkeypatch, capsys):
    from service.cli import main
    from service.pipeline.encoder import Encoder
    from service.pipeline.pipeline import Pipeline

    shipped = project_root / "models" / "heads" / "lfw-folds-1-5"
    network = pipeline.without_head()
    encoder = network.encoder
    headed = Pipeline(Encoder(encoder.facenet, encoder.normalization, encoder.batch_size, encoder.flip,
                              load_head(shipped)), network.detector, network.config)
    monkeypatch.setenv("FACEREC_HOME", str(tmp_path / "home"))  # one cache for both runs
    reports = {}
    for name, used, head in (("network", network, ""), ("head", headed, str(shipped))):
        monkeypatch.setenv("FACEREC_MODEL__HEAD", head)
        code = main(["evaluate", str(celebrity_dir / "train"), str(celebrity_dir / "val"), "--json"], pipeline=used)
        reports[name] = json.loads(capsys.readouterr().out)
        assert code == 0, reports[name]
    assert reports["head"]["inputs"]["model"].endswith(load_head(shipped).head_id)
    assert "/head@" not in reports["network"]["inputs"]["model"]
    plain, trained = (reports[n]["verification"]["genuine_distance"] for n in ("network", "head"))
    assert plain != trained  # the head was applied to the cached encodings, not skipped
