"""The Flask app factory. The model and the index load when the app is created, in each worker
process after gunicorn forks it; importing this module loads nothing."""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from contextlib import contextmanager
from typing import Iterator

from flask import Flask, current_app, g, request

from service.config import Config
from service.http.audit import AuditLog
from service.http.auth import Authenticator
from service.http.errors import ApiError, install_error_handlers
from service.http.metrics import Metrics

log = logging.getLogger(__name__)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class State:
    """What every request works with, one per worker: config, pipeline, roster and their bookkeeping."""

    def __init__(self, config: Config):
        self.config = config
        self.auth = Authenticator(config.auth)
        self.metrics = Metrics()
        self.audit = AuditLog(config.home / "audit.log")
        self.pipeline = None
        self.roster = None
        # Serialises this worker's roster writes with its catch-ups: both change the in-memory index.
        self.roster_lock = threading.RLock()

    def load(self) -> None:
        """Load the networks and the roster (seconds); once per worker."""
        import faiss

        from service.pipeline import build_pipeline
        from service.roster import Roster

        # Single queries on a flat index: OpenMP threads cost more than they bring on a small box,
        # and the worker's request threads already run in parallel.
        faiss.omp_set_num_threads(1)
        started = time.monotonic()
        self.pipeline = build_pipeline(self.config)
        self.roster = Roster(self.config, self.pipeline.model_id, persist_index=False)
        log.warning("worker ready in %.1f s: %d faces indexed, generation %d",
                    time.monotonic() - started, len(self.roster.index), self.roster.generation)

    @property
    def ready(self) -> bool:
        return self.pipeline is not None and self.roster is not None

    def require_ready(self) -> None:
        if not self.ready:
            raise ApiError(503, "not_ready", "the model is not loaded")

    def sync(self) -> None:
        """See writes made by any worker: catch up when the database generation moved."""
        self.require_ready()
        from service.store import current_generation

        with self.roster.Session() as session:
            moved = current_generation(session) != self.roster.generation
        if moved:
            with self.roster_lock:
                self.roster.sync()

    @contextmanager
    def writing(self) -> Iterator:
        """The roster, for a write; its index follows the write under the worker's roster lock."""
        self.require_ready()
        with self.roster_lock:
            self.roster.sync()  # start from the database's state, so the write's own follow-up applies
            yield self.roster


def state() -> State:
    return current_app.extensions["facerec"]


def create_app(config: Config, load_model: bool = True) -> Flask:
    """The app; ``load_model=False`` leaves the model and roster unloaded (routes answer 503),
    for tools and tests that only need the routes."""
    from service.http.decisions import bp as decisions_bp
    from service.http.ops import bp as ops_bp
    from service.http.people import bp as people_bp

    app = Flask("facerec", static_folder=None)  # a JSON API: no static files
    app.config["MAX_CONTENT_LENGTH"] = int(config.server.max_upload_mb * 2**20)
    app.json.sort_keys = False
    app.extensions["facerec"] = facerec = State(config)
    if load_model:
        facerec.load()
    install_error_handlers(app)
    _install_request_hooks(app)
    for blueprint in (people_bp, decisions_bp, ops_bp):
        app.register_blueprint(blueprint)
    return app


def _install_request_hooks(app: Flask) -> None:
    @app.before_request
    def _start():
        given = request.headers.get("X-Request-Id", "")
        g.request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex[:16]
        g.started = time.perf_counter()

    @app.after_request
    def _finish(response):
        endpoint = request.url_rule.rule if request.url_rule is not None else "unmatched"
        state().metrics.observe_request(endpoint, request.method, response.status_code,
                                        time.perf_counter() - g.get("started", time.perf_counter()))
        response.headers["X-Request-Id"] = g.get("request_id", "-")
        return response
