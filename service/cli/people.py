"""``facerec people ...`` and ``facerec faces ...``: the roster's people and their faces. No model."""

from __future__ import annotations

from service.cli.parser import Commands, positive_int


def register(commands: Commands) -> None:
    people = commands.group("people", "list, show or remove enrolled people")
    cmd = people.add("list", list_people, "list enrolled people with their number of faces",
                     example="facerec people list --json")
    cmd.add_argument("--offset", type=int, default=0, help="skip this many people (ordered by id)")
    cmd.add_argument("--limit", type=positive_int, help="list at most this many")
    cmd = people.add("show", show_person, "one person: name, state, faces", example="facerec people show E042")
    cmd.add_argument("person", help="the person's id")
    cmd = people.add("export", export_person, "everything held about a person: record, faces with encodings "
                     "and crops, recorded decisions", example="facerec people export E042 --json > E042.json")
    cmd.add_argument("person", help="the person's id")
    cmd = people.add("remove", remove_person, "delete a person with their faces, kept crops and index entries",
                     example="facerec people remove E042")
    cmd.add_argument("person", help="the person's id")

    faces = commands.group("faces", "list or remove one person's enrolled faces")
    cmd = faces.add("list", list_faces, "a person's faces: box, detector confidence, model",
                    example="facerec faces list E042")
    cmd.add_argument("person", help="the person's id")
    cmd = faces.add("remove", remove_face, "delete one face by its id", example="facerec faces remove 117")
    cmd.add_argument("face_id", type=int, help="the face's id (see `facerec faces list`)")


def list_people(args, core, out) -> int:
    page = core.people.list(max(0, args.offset), args.limit)
    text = [f"{p.id:<24} {p.faces:>4} face(s)  {'' if p.active else '(inactive)  '}{p.name or ''}" for p in page.people]
    text.append(f"{len(page.people)} of {page.total} people")
    out.document(page.to_json(), "\n".join(text))
    return 0


def show_person(args, core, out) -> int:
    person = core.people.get(args.person)
    text = [f"{person.id}  {person.name or ''}  {'active' if person.active else 'inactive'}  "
            f"{person.faces} face(s)  enrolled {person.created_at:%Y-%m-%d %H:%M} UTC"]
    if person.metadata:
        text.append(f"  metadata: {person.metadata}")
    out.document(person.to_json(), "\n".join(text))
    return 0


def export_person(args, core, out) -> int:
    export = core.people.export(args.person)
    out.document(export.to_json(), f"{export.person.id}: {len(export.faces)} face(s) with encodings and crops, "
                                   f"{len(export.audit_events)} recorded decision(s); --json writes them all")
    return 0


def remove_person(args, core, out) -> int:
    deletion = core.people.remove(args.person)
    text = f"removed {deletion.person} and {deletion.faces_removed} face(s)"
    if deletion.audit_events_erased:
        text += f", and erased {deletion.audit_events_erased} recorded decision(s)"
    out.document(deletion.to_json(), text)
    return 0


def list_faces(args, core, out) -> int:
    faces = core.people.faces(args.person)
    text = [f"face {f.id}: box {[round(v) for v in f.box]}  confidence "
            f"{'-' if f.confidence is None else f'{f.confidence:.3f}'}  {f.model}" for f in faces.faces]
    text.append(f"{len(faces.faces)} face(s) of {faces.person}")
    out.document(faces.to_json(), "\n".join(text))
    return 0


def remove_face(args, core, out) -> int:
    deletion = core.people.remove_face(args.face_id)
    out.document(deletion.to_json(), f"removed face {deletion.face_id} of {deletion.person}")
    return 0
