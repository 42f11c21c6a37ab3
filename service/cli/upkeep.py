"""``facerec reindex``, ``backup``, ``restore``, ``db ...`` and ``serve``: running and keeping the service."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path

from service.cli.parser import Commands, positive_int
from service.config import INDEX_KINDS


def register(commands: Commands) -> None:
    cmd = commands.add("reindex", reindex, "rebuild the search index from the database",
                       example="facerec reindex --reembed    # after a model change")
    cmd.add_argument("--reembed", action="store_true",
                     help="first re-encode, from its kept crop, every face made by another model")
    cmd.add_argument("--batch-size", type=positive_int, default=64, help="faces re-encoded and committed together")
    cmd.add_argument("--index-kind", choices=INDEX_KINDS,
                     help="build this kind instead of the configured index.kind (the same as "
                          "FACEREC_INDEX__KIND for this run: processes configured otherwise rebuild theirs)")

    cmd = commands.add("backup", backup, "copy the whole roster (people, faces, crops, audit) to a new file while "
                       "the service runs, from SQLite or PostgreSQL",
                       example="facerec backup backups/facerec-$(date +%F).db")
    cmd.add_argument("target", type=Path, metavar="FILE", help="the new file to write the copy to")
    cmd = commands.add("restore", restore, "make the roster what a backup file holds (into SQLite or PostgreSQL)",
                       example="facerec restore backups/facerec-2026-11-23.db --replace")
    cmd.add_argument("source", type=Path, metavar="FILE", help="a file written by `facerec backup`")
    cmd.add_argument("--replace", action="store_true",
                     help="replace what the roster holds now (without it, only an empty roster is restored into)")

    db = commands.group("db", "database maintenance")
    db.add("upgrade", upgrade_database, "apply the schema migrations (every start does it too)",
           example="facerec db upgrade")
    cmd = db.add("import-crops", import_crops, "copy crop files an earlier version kept on this host into the database",
                 example="facerec db import-crops    # on each host that ran a version before 0.2")
    cmd.add_argument("from_home", nargs="?", type=Path, metavar="HOME",
                     help="the data home holding crops/ (default: --home, FACEREC_HOME or the config's)")

    cmd = commands.add("serve", serve, "run the HTTP service (gunicorn) until stopped",
                       example="facerec serve --host 0.0.0.0 --port 8000 --workers 2")
    cmd.add_argument("--host", help="address to bind (default: server.host in the config)")
    cmd.add_argument("--port", type=int, help="port (default: server.port)")
    cmd.add_argument("--workers", type=positive_int, help="worker processes, each with its model (default: server.workers)")


def reindex(args, core, out) -> int:
    report = core.upkeep.reindex(args.reembed, args.batch_size, progress=_progress_bar)
    text = (f"reindexed {report.vectors} vectors into a {report.kind} index in {report.build_seconds:.2f} s "
            f"({report.vectors_per_second or '-'} vectors/s), generation {report.generation}")
    if args.reembed:
        text += f"; re-encoded {report.reembedded} face(s), {len(report.missing_crops)} without a kept crop"
    out.document(report.to_json(), text)
    if args.index_kind:
        # The saved index is this host's cache: whoever opens it next builds the kind its own
        # configuration names. Say so, lest a one-off flag be taken for a lasting switch.
        out.note(f"built {args.index_kind} for this run; a process whose configuration names another index.kind "
                 f"rebuilds the index to that kind when it opens it: set index.kind: {args.index_kind} "
                 f"(or FACEREC_INDEX__KIND={args.index_kind}) for the server and commands of this host")
    return 0


@contextmanager
def _progress_bar(description: str, total: int | None):
    from tqdm import tqdm

    with tqdm(total=total, unit="face", desc=description, file=sys.stderr, disable=None) as bar:
        yield bar.update


def upgrade_database(args, core, out) -> int:
    core.upkeep.upgrade_database()
    out.document({"database": "upgraded"}, "database is at the latest schema")
    return 0


def backup(args, core, out) -> int:
    report = core.upkeep.backup(args.target, progress=_progress_bar)
    out.document(report.to_json(), f"backed up {report.people} people, {report.faces} faces ({report.crops} crops) "
                                   f"and {report.audit_events} audit events to {report.file} in {report.seconds:.1f} s")
    return 0


def restore(args, core, out) -> int:
    report = core.upkeep.restore(args.source, args.replace, progress=_progress_bar)
    out.document(report.to_json(), f"restored {report.people} people, {report.faces} faces ({report.crops} crops) "
                                   f"and {report.audit_events} audit events from {report.file} in {report.seconds:.1f} s")
    return 0


def import_crops(args, core, out) -> int:
    copied, missing = core.upkeep.import_crops(args.from_home)
    out.document({"copied": copied, "not_found": missing},
                 f"copied {copied} crop(s) into the database; {missing} face(s) have a crop path with no file here")
    return 0


def serve(args, core, out) -> int:
    from service.http.server import serve as run_server

    return run_server(core.config, host=args.host, port=args.port, workers=args.workers)
