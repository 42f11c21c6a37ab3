"""The Flask app factory. The model and the index load when the app is created, in each worker
process after gunicorn forks it; importing this module loads nothing."""

from __future__ import annotations

import logging
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from flask import Flask, current_app, g, request
from flask.json.provider import DefaultJSONProvider

from service.app import Facerec
from service.app.results import finite_json
from service.config import Config
from service.http.auth import Authenticator
from service.http.errors import ApiError, install_error_handlers
from service.http.metrics import Metrics
from service.http.uploads import MAX_PHOTOS, PARSER_MEMORY_BYTES

log = logging.getLogger(__name__)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class State:
    """What every request works with, one per worker: the application core and the HTTP bookkeeping."""

    def __init__(self, config: Config):
        self.config = config
        self.auth = Authenticator(config.auth)
        self.metrics = Metrics()
        # In memory only: workers catch up from the database instead of racing to save one file.
        self.core = Facerec(config, persist_index=False, announce=log.warning)

    def load(self) -> None:
        """Load the networks and the roster's index (seconds); once per worker, side by side: the
        model is mostly TensorFlow's C++ and the index mostly file reading and hashing."""
        import faiss

        # Single queries on a flat index: OpenMP threads cost more than they bring on a small box,
        # and the worker's request threads already run in parallel.
        faiss.omp_set_num_threads(1)
        started = time.monotonic()
        index = self.core.roster.index  # made here, in one thread; its model id needs no model
        loading = ThreadPoolExecutor(1).submit(index.load)
        self.core.load_model().warm_up()
        loading.result()
        status = self.core.upkeep.status()
        log.warning("worker ready in %.1f s: %d faces indexed, generation %d",
                    time.monotonic() - started, status.indexed, status.generation)

    @property
    def ready(self) -> bool:
        return self.core.model_loaded

    def require_ready(self) -> Facerec:
        if not self.ready:
            raise ApiError(503, "not_ready", "the model is not loaded")
        return self.core


class StrictJSONProvider(DefaultJSONProvider):
    """JSON out as strict as JSON in: no NaN or Infinity ever (a value stored before they were refused
    goes out as null), keys in the order the answer builds them."""

    sort_keys = False

    def dumps(self, obj, **kwargs) -> str:
        kwargs.setdefault("allow_nan", False)
        try:
            return super().dumps(obj, **kwargs)
        except ValueError:
            return super().dumps(finite_json(obj), **kwargs)


def state() -> State:
    return current_app.extensions["facerec"]


def create_app(config: Config, load_model: bool = True) -> Flask:
    """The app; ``load_model=False`` leaves the model and roster unloaded (routes answer 503),
    for tools and tests that only need the routes."""
    from service.http.account import bp as account_bp
    from service.http.audit import bp as audit_bp
    from service.http.console import bp as console_bp
    from service.http.decisions import bp as decisions_bp
    from service.http.ops import bp as ops_bp
    from service.http.people import bp as people_bp

    app = Flask("facerec", static_folder=None)  # the console serves its own files (service.http.console)
    app.json = StrictJSONProvider(app)
    app.config["MAX_CONTENT_LENGTH"] = int(config.server.max_upload_mb * 2**20)
    app.config["MAX_FORM_MEMORY_SIZE"] = PARSER_MEMORY_BYTES
    app.config["MAX_FORM_PARTS"] = MAX_PHOTOS + 10
    app.extensions["facerec"] = facerec = State(config)
    if load_model:
        facerec.load()
    install_error_handlers(app)
    _install_request_hooks(app)
    for blueprint in (people_bp, decisions_bp, audit_bp, account_bp, ops_bp, console_bp):
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
