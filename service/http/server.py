"""Production serving through gunicorn.

The master process never imports TensorFlow: each worker builds the app (and loads the model and
index) after the fork, because TensorFlow does not survive being forked once initialised.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import replace

from gunicorn.app.base import BaseApplication

from service.config import Config
from service.http.auth import check_startable

log = logging.getLogger(__name__)
# A worker loads TensorFlow, FaceNet and MTCNN before it answers: allow for a slow, busy machine.
WORKER_START_TIMEOUT = 180


class FacerecServer(BaseApplication):
    """gunicorn with its options from our config instead of its command line."""

    def __init__(self, config: Config, options: dict):
        self.config = config
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        # Runs in each worker after the fork (preload_app is off).
        from service.http.app import create_app

        return create_app(self.config)


def gunicorn_options(config: Config) -> dict:
    server = config.server
    return {
        "bind": f"[{server.host}]:{server.port}" if ":" in server.host else f"{server.host}:{server.port}",
        "workers": server.workers,
        "threads": server.threads,
        "worker_class": "service.http.worker.FacerecWorker",
        "preload_app": False,
        "timeout": WORKER_START_TIMEOUT,
        "graceful_timeout": 20,
        "errorlog": "-",
        "loglevel": "info",
        "accesslog": None,  # request counts and latencies are in /metrics; keys are never logged anyway
        "proc_name": "facerec",
        # gunicorn 27's control socket is one per user by default: two servers would fight over it.
        "control_socket_disable": True,
    }


def serve(config: Config, host: str | None = None, port: int | None = None, workers: int | None = None) -> int:
    """Apply migrations, check the auth setup, then run gunicorn until it is stopped."""
    from service.app import Facerec

    server = replace(config.server, **{k: v for k, v in (("host", host), ("port", port), ("workers", workers))
                                       if v is not None})
    config = replace(config, server=server)
    check_startable(config.auth, server.host)
    # Once here, before the fork: migrate (so the workers do not race to), and bring the saved index up to
    # date with the database, so each worker loads a file and catches up instead of reading every encoding.
    core = Facerec(config)
    try:
        core.upkeep.upgrade_database()
        started = time.monotonic()
        faces, generation = core.upkeep.prepare_index()
        log.warning("index of %d faces at generation %d ready for the workers in %.1f s", faces, generation,
                    time.monotonic() - started)
    finally:
        core.close()
    del core  # the master serves nothing: it must not hold the index while the workers run
    from service.http.worker import FacerecWorker

    FacerecWorker.request_timeout = config.server.request_timeout
    FacerecWorker.max_body = int(config.server.max_upload_mb * 2**20)  # as the app's MAX_CONTENT_LENGTH
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    FacerecServer(config, gunicorn_options(config)).run()
    return 0

