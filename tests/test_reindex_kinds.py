"""Switching a host's index kind: `facerec reindex --index-kind`, the upkeep service, and what processes
configured for another kind do with the saved index (rebuild their own: it is a per-host cache).

A real SQLite roster and real FAISS; synthetic encodings (tests/clustered_faces.py) under a fixed
model id, so no model is loaded.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from PIL import Image

from clustered_faces import ClusteredFaces
from index import read_manifest
from service.app import Facerec
from service.cli import EXIT_MATCH, main
from service.config import load_config
from service.roster.roster import NewFace, NewPerson, Roster

MODEL = "synthetic-model@test"
PEOPLE, PER_PERSON = 120, 5


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A data home holding 600 synthetic faces of 120 people (P000...), saved as a flat index."""
    monkeypatch.setattr("service.pipeline.model_id.configured_model_id", lambda config, head=None: MODEL)
    home = tmp_path / "home"
    roster = Roster(load_config(home=str(home), env={}), MODEL)
    crop = Image.new("RGB", (8, 8))
    vectors = ClusteredFaces().faces(PEOPLE * PER_PERSON)
    roster.add_faces([NewFace(NewPerson(f"P{n // PER_PERSON:03d}"), f"{n:064x}", (0, 0, 8, 8), 0.99, crop, vector)
                      for n, vector in enumerate(vectors)])
    roster.close()
    return home


def opened(home, persist=True, **settings) -> Roster:
    overrides = {f"index__{key}": value for key, value in settings.items()}
    roster = Roster(load_config(home=str(home), env={}, **overrides), MODEL, persist_index=persist)
    roster.index.load()
    return roster


def nearest(roster: Roster, probes: np.ndarray) -> list[str | None]:
    return [roster.nearest_faces(probe, 5)[0][1] for probe in probes]


def test_reindex_switches_the_kind_and_processes_configured_otherwise_rebuild_their_own(home, capsys, caplog):
    probes = ClusteredFaces().probes(np.arange(0, PEOPLE, 4))
    worker = opened(home, persist=False)  # a server worker configured flat, serving throughout
    assert read_manifest(home / "index").kind == "flat"
    answers = nearest(worker, probes)

    assert main(["reindex", "--index-kind", "hnsw", "--home", str(home), "--json"]) == EXIT_MATCH
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert report["kind"] == "hnsw" and report["vectors"] == PEOPLE * PER_PERSON
    assert "FACEREC_INDEX__KIND=hnsw" in err  # says the switch lasts only where configured
    manifest = read_manifest(home / "index")
    assert (manifest.kind, manifest.params, manifest.count) == ("hnsw", {"m": 48, "ef_construction": 80}, 600)
    assert nearest(worker, probes) == answers  # the worker's own index is untouched

    configured_hnsw = opened(home, kind="hnsw")  # loads the saved graph as it is
    assert configured_hnsw.index.face_index.spec.kind == "hnsw"
    assert read_manifest(home / "index").sha256 == manifest.sha256
    assert nearest(configured_hnsw, probes) == answers
    configured_hnsw.close()

    with caplog.at_level(logging.WARNING, logger="service.roster.face_index"):
        configured_flat = opened(home)  # finds a graph, wants a scan: rebuilds, and says why
    assert "built as hnsw (m=48, ef_construction=80), the configuration asks for flat" in caplog.text
    assert read_manifest(home / "index").kind == "flat"
    assert nearest(configured_flat, probes) == answers
    configured_flat.close()
    worker.close()


def test_upkeep_reindex_builds_the_configured_kind_and_a_changed_graph_is_rebuilt(home, monkeypatch):
    monkeypatch.setenv("FACEREC_INDEX__KIND", "hnsw")
    monkeypatch.setenv("FACEREC_INDEX__HNSW__M", "16")
    core = Facerec(load_config(home=str(home)))
    try:
        report = core.upkeep.reindex()
    finally:
        core.close()
    assert report.kind == "hnsw" and report.to_json()["kind"] == "hnsw" and report.vectors == 600
    assert read_manifest(home / "index").params == {"m": 16, "ef_construction": 80}

    roster = opened(home, kind="hnsw", hnsw={"ef_search": 64})  # m back to 48: another graph
    assert read_manifest(home / "index").params == {"m": 48, "ef_construction": 80}
    assert roster.index.face_index.spec.ef_search == 64
    roster.close()


def test_hnsw_roster_forgets_removed_people_and_rebuilds_when_they_pile_up(home):
    roster = opened(home, kind="hnsw")
    probes = ClusteredFaces().probes(np.arange(10))
    assert nearest(roster, probes[:1]) == ["P000"]
    removed = [face for p in range(10) for face in roster.remove_person(f"P{p:03d}")]
    assert len(removed) == 50
    assert not {face for probe in probes for _, face in roster.index.search(probe, 50)} & set(removed)
    assert "P000" not in nearest(roster, probes[:1])
    assert roster.index.face_index.removed_share == pytest.approx(50 / 600)  # under the rebuild share
    roster.close()

    for p in range(10, 20):
        roster = opened(home, kind="hnsw", persist=False)  # another process deletes; this one follows
        roster.remove_person(f"P{p:03d}")
        roster.close()
    reopened = opened(home, kind="hnsw")  # 100 of 600 nodes dead at load: past the share, rebuilt
    assert reopened.index.face_index.removed_share == 0 and len(reopened.index) == 500
    assert read_manifest(home / "index").count == 500
    reopened.close()
