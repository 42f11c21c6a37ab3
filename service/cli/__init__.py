"""The ``facerec`` command line: a thin front end over the application core (``service.app``).

Exit codes: 0 match / accepted / done, 1 no match / rejected / done with refusals, 2 usage or input
error, 3 an unexpected failure (a bug, or a broken environment such as an unreadable database). Text by
default; ``--json`` prints each result's one JSON form (the HTTP API's too).
"""

from __future__ import annotations

import logging
import os
import sys

from service.cli.output import Output
from service.cli.parser import build_parser
from service.errors import FacerecError, UsageError

EXIT_MATCH, EXIT_NO_MATCH, EXIT_INPUT_ERROR, EXIT_INTERNAL = 0, 1, 2, 3
log = logging.getLogger(__name__)


def main(argv: list[str] | None = None, pipeline=None) -> int:
    """Entry point of the ``facerec`` console script.

    ``pipeline``: an already loaded :class:`~service.pipeline.pipeline.Pipeline` to use instead of
    loading one (lets a long-lived caller, such as the test suite, run many commands on one load).
    """
    # TensorFlow's C++ start-up chatter would drown the answer on a terminal.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:  # usage errors respect --json too
        if "--json" not in argv:
            sys.stderr.write(exc.usage)
        Output("--json" in argv).error(exc.code, exc.message)
        return EXIT_INPUT_ERROR
    out = Output(args.json)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    core = None
    try:
        from service.app import Facerec

        core = Facerec(_config(args), pipeline=pipeline, announce=out.note)
        return args.handler(args, core, out)
    except FacerecError as exc:
        out.error(exc.code, exc.message)
        return EXIT_INPUT_ERROR
    except Exception as exc:  # noqa: BLE001 - never "no match" (exit 1) for a failure, and JSON even then
        log.info("unexpected error", exc_info=True)
        detail = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        out.error("internal", f"unexpected {type(exc).__name__}: {detail} (run with -v for the traceback)")
        return EXIT_INTERNAL
    finally:
        if core is not None:
            core.close()


def _config(args):
    from service.config import load_config

    overrides = {"detect": False} if getattr(args, "no_detect", False) else {}
    if args.home:
        overrides["home"] = str(args.home.resolve())
    if getattr(args, "index_kind", None):  # `reindex --index-kind`
        overrides["index__kind"] = args.index_kind
    return load_config(args.config, **overrides)
