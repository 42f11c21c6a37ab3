"""`facerec demo`: the Happy House door keeps every published decision; without those photos the same
door runs on the 5-celebrity photos and lets nobody in as someone else."""

from __future__ import annotations

import json

from service.cli import main


def run_demo(capsys, pipeline, home, *argv):
    code = main(["demo", "--home", str(home), "--json", *argv], pipeline=pipeline)
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err


def test_happy_house_door(capsys, pipeline, tmp_path, happy_house_dir):
    code, report, _ = run_demo(capsys, pipeline, tmp_path, "--data", str(happy_house_dir))
    assert code == 0 and report["scene"] == "happy-house"
    assert sum(e["accepted"] for e in report["residents"]) == 12
    assert [c["verification"]["match"] for c in report["door"]] == [c["open"] for c in report["door"]]
    assert all(c["verification"]["threshold"] == 0.7 for c in report["door"])
    code, again, _ = run_demo(capsys, pipeline, tmp_path, "--data", str(happy_house_dir))  # the roster is kept
    assert code == 0 and all(p["reason"] == "duplicate" for e in again["residents"] for p in e["photos"])


def test_without_happy_house_the_door_runs_on_the_celebrities(capsys, pipeline, tmp_path, celebrity_dir):
    code, report, err = run_demo(capsys, pipeline, tmp_path, "--data", str(tmp_path / "absent"))
    assert "Happy House photos not found" in err and "5-celebrity" in err
    assert report["scene"] == "celebrities" and len(report["residents"]) == 5
    assert len(report["door"]) == 10 and len(report["who_is_it"]) == 10
    let_in = [c for c in report["door"] if c["verification"]["match"] and not c["open"]]
    assert let_in == [] and code == 0
    for shot in report["who_is_it"]:
        assert shot["identification"]["faces"][0]["match"] in (shot["truth"], None)
