"""``facerec audit list`` and ``facerec audit purge``: the record of decisions in the database. No model."""

from __future__ import annotations

from service.app import inputs
from service.cli.parser import Commands, positive_int


def register(commands: Commands) -> None:
    audit = commands.group("audit", "the record of verify and identify decisions")
    cmd = audit.add("list", list_events, "decisions in a time range, of one person, newest first",
                    example="facerec audit list --since 2026-11-23T08:00 --person E042")
    cmd.add_argument("--since", type=inputs.moment, help="from this time on (ISO 8601; no zone means UTC)")
    cmd.add_argument("--until", type=inputs.moment, help="before this time (ISO 8601)")
    cmd.add_argument("--person", help="only decisions about this person (claimed or matched)")
    cmd.add_argument("--offset", type=int, default=0, help="skip this many (newest first)")
    cmd.add_argument("--limit", type=positive_int, default=100, help="list at most this many (default 100)")
    cmd = audit.add("purge", purge_events, "delete the recorded decisions older than the retention",
                    example="facerec audit purge    # audit.retention_days in the config, 90 by default")
    cmd.add_argument("--older-than-days", type=int, help="instead of audit.retention_days")


def list_events(args, core, out) -> int:
    page = core.audit.list(args.since, args.until, args.person, max(0, args.offset), args.limit)
    text = [f"{e.time:%Y-%m-%d %H:%M:%S} UTC  {e.endpoint:<8} {e.outcome:<9} {e.person or '-':<24} "
            f"{'-' if e.distance is None else f'{e.distance:.4f}':>8}  {e.code or ''}  {e.key_id or ''}"
            for e in page.events]
    text.append(f"{len(page.events)} of {page.total} decisions")
    out.document(page.to_json(), "\n".join(text))
    return 0


def purge_events(args, core, out) -> int:
    purged = core.audit.purge(args.older_than_days)
    out.document(purged.to_json(), f"deleted {purged.purged} decision(s) recorded before "
                                   f"{purged.before:%Y-%m-%d %H:%M} UTC")
    return 0
