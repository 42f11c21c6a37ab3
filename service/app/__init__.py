"""The application layer: every front end (CLI, HTTP, demo, evaluation) calls these services, which
own the decisions and the result types; below them sit the pipeline and the roster storage.

    from service.app import Facerec
    core = Facerec(load_config())
    core.recognition.identify(Photo.from_path(path))
"""

from service.app.core import Facerec
from service.app.photos import Photo

__all__ = ["Facerec", "Photo"]
