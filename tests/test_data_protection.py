"""Data-subject requests: everything held about a person, exported (core, CLI and HTTP alike); and, when
the site chooses, a person's recorded decisions erased with them."""

from __future__ import annotations

import base64
import io
import json
from dataclasses import replace

from PIL import Image

from service.app import Photo
from service.cli import main
from service.config import AuditConfig


def enroll(core, celebrity_dir, person: str, count: int = 2) -> None:
    paths = sorted((celebrity_dir / "train" / person).iterdir())[:count]
    core.enrollment.enroll(person, [Photo(p.name, p.read_bytes()) for p in paths])


def test_an_export_holds_everything_kept_of_a_person_and_nothing_of_others(make_core, database_url, celebrity_dir,
                                                                             tmp_path):
    core = make_core(tmp_path / "home", database_url=database_url)
    enroll(core, celebrity_dir, "madonna")
    enroll(core, celebrity_dir, "elton_john", 1)
    core.people.update("madonna", metadata={"badge": 7})
    core.audit.record("verify", "accepted", "madonna", 0.4, key_id="client:1")
    core.audit.record("identify", "match", "madonna", 0.5)
    core.audit.record("verify", "rejected", "elton_john", 0.9)

    export = core.people.export("madonna").to_json()
    assert export["person"] == core.people.get("madonna").to_json()
    faces = core.people.faces("madonna").to_json()["faces"]
    assert [{k: v for k, v in f.items() if k not in ("encoding", "crop_png_base64")} for f in export["faces"]] == faces
    stored = core.roster.encodings_of("madonna")
    assert [f["encoding"] for f in export["faces"]] == [[float(v) for v in row] for row in stored]
    for face in export["faces"]:
        crop = Image.open(io.BytesIO(base64.b64decode(face["crop_png_base64"])))
        assert crop.format == "PNG" and crop.size == (160, 160)
    assert [(e["endpoint"], e["outcome"]) for e in export["audit_events"]] == [("verify", "accepted"),
                                                                                ("identify", "match")]
    assert json.loads(json.dumps(export, allow_nan=False)) == export  # strict JSON


def test_erasing_a_persons_decisions_is_the_sites_choice(make_core, database_url, celebrity_dir, tmp_path):
    url = database_url or f"sqlite:///{tmp_path / 'roster.db'}"  # one database, two processes' settings
    keeping = make_core(tmp_path / "keeps", database_url=url)
    for person in ("madonna", "elton_john"):
        keeping.people.create(person)
        keeping.audit.record("verify", "accepted", person, 0.4)
    assert keeping.people.remove("madonna").to_json()["audit_events_erased"] == 0
    assert keeping.audit.list(person="madonna").total == 1  # off by default: the record stays whole

    erasing = make_core(tmp_path / "erases", database_url=url,
                        audit=replace(AuditConfig(), erase_on_delete=True))
    erasing.people.create("madonna")
    erasing.audit.record("verify", "accepted", "madonna", 0.4)
    erasing.audit.record("identify", "match", "madonna", 0.4)
    deletion = erasing.people.remove("madonna").to_json()
    assert deletion["audit_events_erased"] == 3  # the two here and the one the first core kept (one database)
    assert erasing.audit.list(person="madonna").total == 0 and erasing.audit.list(person="elton_john").total == 1


def test_the_cli_exports_and_says_what_a_delete_erased(make_core, celebrity_dir, tmp_path, capsys, monkeypatch):
    home = tmp_path / "home"
    core = make_core(home, database_url="")
    enroll(core, celebrity_dir, "madonna", 1)
    core.audit.record("verify", "accepted", "madonna", 0.4)
    assert main(["people", "export", "madonna", "--home", str(home), "--json"]) == 0
    export = json.loads(capsys.readouterr().out)
    assert export == json.loads(json.dumps(core.people.export("madonna").to_json() | {"exported_at": export["exported_at"]}))
    assert main(["people", "export", "nobody", "--home", str(home), "--json"]) != 0
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "unknown_person"
    monkeypatch.setenv("FACEREC_AUDIT__ERASE_ON_DELETE", "true")
    assert main(["people", "remove", "madonna", "--home", str(home)]) == 0
    assert "erased 1 recorded decision" in capsys.readouterr().out
