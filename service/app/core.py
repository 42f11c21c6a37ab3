"""The application core: one per process, shared by every front end.

It holds the configuration and makes the two expensive things only when a command needs them: the
roster (a database connection; its search index only on the first search) and the pipeline (the
networks, seconds to load). The services hang off it: ``people``, ``enrollment``, ``recognition``,
``upkeep`` and ``audit``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable

from service.config import Config

if TYPE_CHECKING:
    from service.pipeline.pipeline import Pipeline
    from service.roster.roster import Roster

Announce = Callable[[str], None]


class Facerec:
    def __init__(self, config: Config, pipeline: Pipeline | None = None, persist_index: bool = True,
                 announce: Announce | None = None):
        """``pipeline``: an already loaded one (a long-lived caller such as the test suite);
        ``persist_index=False``: keep the index in memory only (server workers);
        ``announce``: told when the model starts and finishes loading (the CLI prints it on stderr)."""
        from service.app.audit import AuditService
        from service.app.enrollment import EnrollmentService
        from service.app.people import PeopleService
        from service.app.recognition import RecognitionService
        from service.app.upkeep import UpkeepService

        self.config = config
        self._pipeline = pipeline
        self._head: tuple | None = None  # (Head or None,): read once, so the model id and the encoder agree
        self._roster: Roster | None = None
        self._persist_index = persist_index
        self._announce = announce or (lambda message: None)
        self.people = PeopleService(self)
        self.enrollment = EnrollmentService(self)
        self.recognition = RecognitionService(self)
        self.upkeep = UpkeepService(self)
        self.audit = AuditService(self)

    @property
    def model_loaded(self) -> bool:
        return self._pipeline is not None

    @property
    def pipeline(self) -> Pipeline:
        """The networks, loaded on first use (TensorFlow is imported here, not before)."""
        if self._pipeline is None:
            from service.pipeline.pipeline import build_pipeline

            self._announce("loading the face model (FaceNet and MTCNN; the first start also converts the "
                           "weights)...")
            started = time.monotonic()
            self._pipeline = build_pipeline(self.config, self.head)
            self._announce(f"model loaded in {time.monotonic() - started:.1f} s")
        return self._pipeline

    def load_model(self) -> Pipeline:
        """Load the networks now rather than on first use (a server worker, before it answers)."""
        return self.pipeline

    @property
    def model_id(self) -> str:
        """The id this configuration's encodings carry; known without loading the model."""
        if self._pipeline is not None:
            return self._pipeline.model_id
        from service.pipeline.model_id import configured_model_id

        return configured_model_id(self.config, self.head)

    @property
    def head(self):
        """The configured trained head (None without one), read once for the life of this core: a
        head file replaced meanwhile must not give encodings under the id of the one read first."""
        if self._head is None:
            from service.pipeline.head import configured_head

            self._head = (configured_head(self.config),)
        return self._head[0]

    @property
    def roster(self) -> Roster:
        """The persistent roster (database migrated on open); its model id is worked out only when a
        search or a write of encodings needs it."""
        if self._roster is None:
            from service.roster.roster import Roster

            self._roster = Roster(self.config, lambda: self.model_id, persist_index=self._persist_index)
        return self._roster

    def close(self) -> None:
        if self._roster is not None:
            self._roster.close()
            self._roster = None
