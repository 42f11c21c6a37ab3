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


def snapshot(folder: Path) -> dict:
    return {p: p.stat().st_mtime_ns for p in sorted(folder.rglob("*"))}


def test_true_claim_accepted_false_claim_rejected(capsys, pipeline, roster_dir, celebrity_dir):
    probe = val_photo(celebrity_dir, "ben_afflek")
    code, out, _ = run(capsys, pipeline, "verify", str(probe), "ben_afflek", "--roster", str(roster_dir), "--json")
    answer = json.loads(out)
    assert code == EXIT_MATCH and answer["match"] is True and answer["distance"] < answer["threshold"]
    code, out, _ = run(capsys, pipeline, "verify", str(probe), "madonna", "--roster", str(roster_dir), "--json")
    assert code == EXIT_NO_MATCH and json.loads(out)["match"] is False


def test_identify_json_shape(capsys, pipeline, roster_dir, celebrity_dir):
    probe = val_photo(celebrity_dir, "madonna")
    code, out, _ = run(capsys, pipeline, "identify", str(probe), "--roster", str(roster_dir), "--json", "--top", "2")
    face = json.loads(out)["faces"][0]
    assert code == EXIT_MATCH
    assert face["match"] == "madonna" and len(face["box"]) == 4
    assert [c["person"] for c in face["candidates"]] == ["madonna", "ben_afflek"]
    assert face["distance"] == face["candidates"][0]["distance"]


def test_stranger_is_not_in_the_database(capsys, pipeline, roster_dir, celebrity_dir):
    probe = val_photo(celebrity_dir, "elton_john")
    code, out, _ = run(capsys, pipeline, "identify", str(probe), "--roster", str(roster_dir))
    assert code == EXIT_NO_MATCH and "not in the database" in out


def two_faces(celebrity_dir, path):
    left = Image.open(val_photo(celebrity_dir, "ben_afflek")).convert("RGB").resize((300, 300))
    right = Image.open(val_photo(celebrity_dir, "madonna")).convert("RGB").resize((300, 300))
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
    before = snapshot(roster_dir), snapshot(tmp_path)
    code, out, err = run(capsys, pipeline, "verify", str(photo), "ben_afflek", "--roster", str(roster_dir), "--json")
    assert code == EXIT_INPUT_ERROR
    assert json.loads(out)["error"]["code"] == code_expected
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert (snapshot(roster_dir), snapshot(tmp_path)) == before


def test_unknown_person_and_missing_roster(capsys, pipeline, roster_dir, celebrity_dir, tmp_path):
    probe = str(val_photo(celebrity_dir, "madonna"))
    code, out, _ = run(capsys, pipeline, "verify", probe, "nobody", "--roster", str(roster_dir), "--json")
    assert code == EXIT_INPUT_ERROR and json.loads(out)["error"]["code"] == "unknown_person"
    code, _, err = run(capsys, pipeline, "verify", probe, "madonna", "--roster", str(tmp_path / "absent"))
    assert code == EXIT_INPUT_ERROR and "does not exist" in err


def test_detect_lists_every_face_with_box_and_score(capsys, pipeline, celebrity_dir, tmp_path):
    photo = two_faces(celebrity_dir, tmp_path / "pair.jpg")
    code, out, _ = run(capsys, pipeline, "detect", str(photo), "--json", "--encodings")
    faces = json.loads(out)["images"][0]["faces"]
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
    assert len(report["images"][0]["faces"]) == 1


def test_console_script_usage_errors_exit_2(tmp_path):
    done = subprocess.run([str(console_script()), "verify"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "usage" in done.stderr
    done = subprocess.run([str(console_script()), "detect", str(tmp_path / "absent.jpg")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "no such file" in done.stderr
