"""The malformed-photo corpus (tests/corpus.py) through the decoder, the CLI and the HTTP API: every file
gets an answer of the service's vocabulary, none a failure or a hang, and refused files change nothing.
How long each takes is bench/malformed_photos.py's to measure."""

from __future__ import annotations

import json

import pytest

from corpus import DECODES, corpus
from service.cli import main
from service.errors import FacerecError
from service.pipeline.decode import load_image


@pytest.fixture(scope="module")
def files(celebrity_dir):
    return corpus(sorted((celebrity_dir / "val" / "madonna").iterdir())[0])


def answers(expected: set[str]) -> set[str]:
    """What a decision may answer: the decoder's outcome, and for a decodable photo, its faces'."""
    return expected | ({"no_face", "multiple_faces"} if DECODES in expected else set())


def test_the_decoder_answers_every_file_with_its_code(files):
    for name, (data, expected) in files.items():
        try:
            image = load_image(data, max_pixels=40_000_000)
            outcome = DECODES
            assert image.mode == "RGB", name
        except FacerecError as exc:
            outcome = exc.code
        decoder_may = (expected - {"no_face"}) | ({DECODES} if "no_face" in expected else set())  # faces come later
        assert outcome in decoder_may, (name, outcome, expected)
    upright = load_image(files["exif orientation 1"][0]).size
    for orientation in range(5, 9):  # these turn the picture a quarter
        assert load_image(files[f"exif orientation {orientation}"][0]).size == upright[::-1]


def test_exif_orientations_are_turned_upright(celebrity_dir):
    """A camera stores the pixels as the sensor saw them and says in EXIF how to turn them: each of the 7
    turns, applied backwards to a face and tagged, decodes to the upright face. (The corpus's own files
    tag an upright square face, where a size check cannot tell a turn from none.)"""
    import numpy as np
    from PIL import Image

    from corpus import with_orientation

    face = Image.open(sorted((celebrity_dir / "val" / "madonna").iterdir())[0]).convert("RGB")
    face = face.crop((0, 0, face.width, face.height * 3 // 4))  # not square: a quarter turn shows in the size
    turn = Image.Transpose
    stored_as = {2: turn.FLIP_LEFT_RIGHT, 3: turn.ROTATE_180, 4: turn.FLIP_TOP_BOTTOM, 5: turn.TRANSPOSE,
                 6: turn.ROTATE_90, 7: turn.TRANSVERSE, 8: turn.ROTATE_270}
    for orientation, stored in stored_as.items():
        image = load_image(with_orientation(face.transpose(stored), orientation))
        assert image.size == face.size, orientation
        difference = np.abs(np.asarray(image, dtype=float) - np.asarray(face, dtype=float)).mean()
        assert difference < 3, (orientation, difference)  # JPEG noise only


def test_the_cli_answers_every_file_with_its_code(files, pipeline, tmp_path, capsys, celebrity_dir):
    home = tmp_path / "home"
    train = sorted((celebrity_dir / "train" / "madonna").iterdir())[:2]
    assert main(["enroll", "madonna", *map(str, train), "--home", str(home)], pipeline=pipeline) == 0
    capsys.readouterr()
    folder = tmp_path / "corpus"
    folder.mkdir()
    paths = {}
    for number, (name, (data, _)) in enumerate(files.items()):
        paths[name] = folder / f"{number:02d}.img"
        paths[name].write_bytes(data)
    for command in (["verify", "--person", "madonna"], ["identify"]):
        assert main([*command, *map(str, paths.values()), "--home", str(home), "--json"], pipeline=pipeline) in (0, 1, 2)
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        by_photo = {line["photo"]: line for line in lines[:-1]}
        assert lines[-1]["summary"]["photos"] == len(files)
        for name, path in paths.items():
            line = by_photo[str(path)]
            outcome = line["error"]["code"] if "error" in line else "ok"
            assert outcome in answers(files[name][1]), (command[0], name, outcome)
    refused = [str(paths[name]) for name, (_, expected) in files.items() if DECODES not in expected]
    assert main(["enroll", "madonna", *refused, "--home", str(home), "--json"], pipeline=pipeline) == 2
    outcomes = json.loads(capsys.readouterr().out)["photos"]
    assert all(o["status"] == "refused" for o in outcomes) and len(outcomes) == len(refused)
    main(["people", "show", "madonna", "--home", str(home), "--json"], pipeline=pipeline)
    assert json.loads(capsys.readouterr().out)["faces"] == 2  # the roster is as it was
