"""The facerec command line on real photos: answers, exit codes, and one clear error per bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from service.cli import EXIT_INPUT_ERROR, EXIT_MATCH, EXIT_NO_MATCH, main


@pytest.fixture(scope="module")
def roster_dir(tmp_path_factory, celebrity_dir):
    """Two people, four training photos each."""
    root = tmp_path_factory.mktemp("roster")
    for person in ("ben_afflek", "madonna"):
        (root / person).mkdir()
        for photo in sorted((celebrity_dir / "train" / person).iterdir())[:4]:
            shutil.copy(photo, root / person / photo.name)
    return root


def val_photo(celebrity_dir, person, index=0):
    return sorted((celebrity_dir / "val" / person).iterdir())[index]


def run(capsys, pipeline, *argv):
    code = main(list(argv), pipeline=pipeline)
    out, err = capsys.readouterr()
    return code, out, err


def json_lines(out: str) -> tuple[list[dict], dict]:
    """The per-photo answers of a --json verify / identify run, and its closing summary."""
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert "summary" in rows[-1], rows
    return rows[:-1], rows[-1]["summary"]


def snapshot(folder: Path) -> dict:
    return {p: p.stat().st_mtime_ns for p in sorted(folder.rglob("*"))}


def test_true_claim_accepted_false_claim_rejected(capsys, pipeline, roster_dir, celebrity_dir):
    probe = val_photo(celebrity_dir, "ben_afflek")
    code, out, _ = run(capsys, pipeline, "verify", str(probe), "ben_afflek", "--roster", str(roster_dir), "--json")
    [answer], summary = json_lines(out)
    assert code == EXIT_MATCH and answer["match"] is True and answer["distance"] < answer["threshold"]
    assert answer["photo"] == str(probe) and summary == {"photos": 1, "accepted": 1, "rejected": 0, "errors": 0}
    code, out, _ = run(capsys, pipeline, "verify", str(probe), "--person", "madonna", "--roster", str(roster_dir),
                       "--json")
    assert code == EXIT_NO_MATCH and json_lines(out)[0][0]["match"] is False


def test_identify_json_shape(capsys, pipeline, roster_dir, celebrity_dir):
    probe = val_photo(celebrity_dir, "madonna")
    code, out, _ = run(capsys, pipeline, "identify", str(probe), "--roster", str(roster_dir), "--json", "--top", "2")
    [answer], _ = json_lines(out)
    assert answer["photo"] == str(probe) and answer["faces_found"] == 1 and answer["threshold"] == 0.7
    face = answer["faces"][0]
    assert code == EXIT_MATCH
    assert face["match"] == "madonna" and len(face["box"]) == 4
    assert [c["person"] for c in face["candidates"]] == ["madonna", "ben_afflek"]
    assert face["distance"] == face["candidates"][0]["distance"]


def test_stranger_is_not_in_the_database(capsys, pipeline, roster_dir, celebrity_dir):
    probe = val_photo(celebrity_dir, "elton_john")
    code, out, _ = run(capsys, pipeline, "identify", str(probe), "--roster", str(roster_dir))
    assert code == EXIT_NO_MATCH and "not in the database" in out


def two_faces(celebrity_dir, path):
    """Two faces of the same size side by side: neither dominates."""
    left = Image.open(val_photo(celebrity_dir, "ben_afflek")).convert("RGB").resize((300, 300))
    right = left.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    canvas = Image.new("RGB", (600, 300))
    canvas.paste(left, (0, 0))
    canvas.paste(right, (300, 0))
    canvas.save(path)
    return path


def truncated_jpeg(celebrity_dir, path):
    data = val_photo(celebrity_dir, "madonna").read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


BAD_INPUTS = {
    "missing": ("not_found", lambda d, p: p),
    "zero_bytes": ("empty", lambda d, p: (p.write_bytes(b""), p)[1]),
    "not_an_image": ("not_an_image", lambda d, p: (p.write_text("name,badge\nada,1\n"), p)[1]),
    "truncated": ("truncated", truncated_jpeg),
    "huge_png": ("too_large", lambda d, p: (Image.new("1", (20000, 20000)).save(p), p)[1]),
    "no_face": ("no_face", lambda d, p: (Image.new("RGB", (400, 300), (128, 128, 128)).save(p, "JPEG"), p)[1]),
    "two_faces": ("multiple_faces", two_faces),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_gets_its_own_error_and_changes_nothing(case, capsys, pipeline, roster_dir, celebrity_dir, tmp_path):
    code_expected, make = BAD_INPUTS[case]
    photo = make(celebrity_dir, tmp_path / f"{case}.jpg")
    home = tmp_path / "home"
    before = snapshot(roster_dir), snapshot(tmp_path)
    code, out, err = run(capsys, pipeline, "verify", str(photo), "--person", "ben_afflek", "--roster", str(roster_dir),
                         "--json", "--home", str(home))
    assert code == EXIT_INPUT_ERROR
    error = json.loads(out.splitlines()[0])["error"]  # a missing photo stops the run before any model load
    assert error["code"] == code_expected
    assert [line for line in err.splitlines() if not line.startswith("warning:")] == [f"error: {error['message']}"]
    assert (snapshot(roster_dir), snapshot(tmp_path)) == before and not home.exists()


def test_unknown_person_and_missing_roster(capsys, pipeline, roster_dir, celebrity_dir, tmp_path):
    probe = str(val_photo(celebrity_dir, "madonna"))
    code, out, _ = run(capsys, pipeline, "verify", probe, "nobody", "--roster", str(roster_dir), "--json")
    assert code == EXIT_INPUT_ERROR and json.loads(out)["error"]["code"] == "unknown_person"
    code, out, _ = run(capsys, pipeline, "verify", probe, "--roster", str(roster_dir), "--json")
    assert code == EXIT_INPUT_ERROR and json.loads(out)["error"]["code"] == "usage"  # who is claimed?
    code, _, err = run(capsys, pipeline, "verify", probe, "madonna", "--roster", str(tmp_path / "absent"))
    assert code == EXIT_INPUT_ERROR and "does not exist" in err


def test_detect_lists_every_face_with_box_and_score(capsys, pipeline, celebrity_dir, tmp_path):
    photo = two_faces(celebrity_dir, tmp_path / "pair.jpg")
    code, out, _ = run(capsys, pipeline, "detect", str(photo), "--json", "--encodings")
    faces = json.loads(out)["photos"][0]["faces"]
    assert code == EXIT_MATCH and len(faces) == 2
    assert all(f["confidence"] >= 0.9 and len(f["encoding"]) == 128 for f in faces)
    assert sorted(f["box"][0] < 300 for f in faces) == [False, True]  # one face on each side


def console_script() -> Path:
    return Path(sys.executable).parent / "facerec"


def test_console_script_end_to_end(happy_house_dir):
    """The installed `facerec` command, in its own process, loading the model itself."""
    done = subprocess.run([str(console_script()), "detect", str(happy_house_dir / "younes.jpg"), "--json"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["model"].startswith("facenet-keras-inception-resnet-v1@sha256:6acdd8fb3a3fb2b5")
    assert "loading the face model" in done.stderr and "model loaded in" in done.stderr  # says why it waits
    assert len(report["photos"][0]["faces"]) == 1


def test_console_script_usage_errors_exit_2(tmp_path):
    done = subprocess.run([str(console_script()), "verify"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "usage" in done.stderr
    done = subprocess.run([str(console_script()), "identify", "--top", "none", "--json"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and json.loads(done.stdout)["error"]["code"] == "usage"  # --json even here
    assert "--top" in json.loads(done.stdout)["error"]["message"]
    done = subprocess.run([str(console_script()), "detect", str(tmp_path / "absent.jpg")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "no such file" in done.stderr


def test_many_photos_in_one_run_one_answer_each(capsys, pipeline, roster_dir, celebrity_dir, tmp_path):
    """A folder and a file: one model load, one JSON line per photo naming it, then a summary."""
    folder = tmp_path / "probes"
    folder.mkdir()
    for person in ("ben_afflek", "madonna"):
        shutil.copy(val_photo(celebrity_dir, person, 1), folder / f"{person}.jpg")
    (folder / "notes.txt").write_text("not a photo")  # skipped: folders give their photos only
    blank = folder / "blank.png"
    Image.new("RGB", (200, 200), (128, 128, 128)).save(blank)
    stranger = val_photo(celebrity_dir, "elton_john")
    code, out, _ = run(capsys, pipeline, "identify", str(folder), str(stranger), "--roster", str(roster_dir), "--json")
    answers, summary = json_lines(out)
    assert [a["photo"] for a in answers] == [str(folder / "ben_afflek.jpg"), str(blank), str(folder / "madonna.jpg"),
                                             str(stranger)]
    assert answers[1]["error"]["code"] == "no_face"
    faces = [a["faces"][0] for a in answers if "faces" in a]
    assert [f["candidates"][0]["person"] for f in faces[:2]] == ["ben_afflek", "madonna"] and faces[2]["match"] is None
    matched = sum(f["match"] is not None for f in faces)
    assert summary == {"photos": 4, "matched": matched, "not_matched": 3 - matched, "errors": 1}
    assert code == EXIT_INPUT_ERROR

    code, out, _ = run(capsys, pipeline, "verify", str(folder / "madonna.jpg"), str(folder / "ben_afflek.jpg"),
                       "--person", "madonna", "--roster", str(roster_dir), "--json")
    answers, summary = json_lines(out)
    assert [a["person"] for a in answers] == ["madonna", "madonna"] and answers[1]["match"] is False
    assert answers[0]["distance"] < answers[1]["distance"]
    assert summary == {"photos": 2, "accepted": int(answers[0]["match"]), "rejected": 2 - int(answers[0]["match"]),
                       "errors": 0} and code == EXIT_NO_MATCH


def test_threshold_per_run_decides_and_is_reported(capsys, pipeline, roster_dir, celebrity_dir):
    probe = str(val_photo(celebrity_dir, "ben_afflek"))
    _, out, _ = run(capsys, pipeline, "verify", probe, "ben_afflek", "--roster", str(roster_dir), "--json")
    [loose], _ = json_lines(out)
    strict = round(loose["distance"] - 0.01, 4)  # just under this photo's distance: the claim now fails
    code, out, _ = run(capsys, pipeline, "verify", probe, "ben_afflek", "--roster", str(roster_dir), "--json",
                       "--threshold", str(strict))
    [answer], _ = json_lines(out)
    assert code == EXIT_NO_MATCH and answer["match"] is False and answer["threshold"] == strict
    code, out, _ = run(capsys, pipeline, "identify", probe, "--roster", str(roster_dir), "--json", "--threshold", "9")
    assert code == EXIT_INPUT_ERROR and json.loads(out)["error"]["code"] == "bad_request"


def test_every_command_has_help_an_example_and_only_its_options():
    from service.cli.parser import build_parser

    def leaves(parser, path=()):
        subs = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
        if not subs:
            yield path, parser
        for sub in subs:
            for name, child in sub.choices.items():
                yield from leaves(child, path + (name,))

    commands = dict(leaves(build_parser()))
    assert len(commands) == 27
    model_free = {("people", "list"), ("people", "show"), ("people", "export"), ("people", "remove"), ("faces", "list"),
                  ("faces", "remove"), ("db", "upgrade"), ("backup",), ("restore",), ("db", "import-crops"),
                  ("keys", "init"), ("keys", "add"), ("keys", "list"), ("keys", "revoke"), ("reindex",), ("serve",),
                  ("audit", "list"), ("audit", "purge")}
    for path, parser in commands.items():
        text = parser.format_help()
        assert "example:\n  facerec " + " ".join(path) in text, path
        for action in parser._actions:
            assert action.help, (path, action.dest)  # every argument says what it is
        assert ("--no-detect" in text) == (path not in model_free), path


def test_version():
    done = subprocess.run([str(console_script()), "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("facerec ")


def test_an_unexpected_failure_is_exit_3_with_a_json_error(capsys, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "facerec.db").write_bytes(b"this is not a database " * 100)
    code, out, err = run(capsys, None, "people", "list", "--home", str(home), "--json")
    error = json.loads(out)["error"]
    assert code == 3 and error["code"] == "internal" and "DatabaseError" in error["message"]
    assert "Traceback" not in err
