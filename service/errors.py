"""Errors a user can cause, each with a stable machine-readable ``code`` and a message for people.

The codes are the project's one vocabulary of failures: the CLI prints them in ``--json`` output and
the HTTP API in its error bodies (``service.http.errors`` maps each to a status). Nothing else in the
project should raise bare ``ValueError`` for input problems a user can cause.
"""


class FacerecError(Exception):
    """Base of every error a user can cause: an input that is malformed or cannot be used."""

    code = "bad_request"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class UsageError(FacerecError):
    """A command line that does not parse (unknown option, missing argument)."""

    code = "usage"
    usage = ""  # the command's usage line, shown with the error on a terminal


class PhotoError(FacerecError):
    """Something about one photo: it cannot be read, or holds no face that can be used. In a batch,
    it refuses that photo only."""


class ImageError(PhotoError):
    """The photo could not be read at all (an I/O error)."""

    code = "unreadable"


class ImageNotFound(ImageError):
    code = "not_found"


class EmptyImage(ImageError):
    code = "empty"


class NotAnImage(ImageError):
    code = "not_an_image"


class TruncatedImage(ImageError):
    code = "truncated"


class ImageTooLarge(ImageError):
    code = "too_large"


class NoFace(PhotoError):
    code = "no_face"


class MultipleFaces(PhotoError):
    """Several faces where one is needed, and none clearly dominates."""

    code = "multiple_faces"


class UnknownPerson(FacerecError):
    code = "unknown_person"


class UnknownFace(FacerecError):
    code = "unknown_face"


class UnknownKey(FacerecError):
    """No API key with that id in the keys file (``facerec keys revoke``)."""

    code = "unknown_key"


class PersonExists(FacerecError):
    code = "person_exists"


class DuplicatePhoto(FacerecError):
    """The same photo (by sha256) is already enrolled for this person."""

    code = "duplicate"


class Forbidden(FacerecError):
    """Allowed to others, not to this caller (e.g. a client key loosening the threshold)."""

    code = "forbidden"


class ModelError(FacerecError):
    """The weights are missing, corrupt or do not match the network."""

    code = "model_error"


class ConfigError(FacerecError):
    code = "config_error"


class EvaluationInputError(FacerecError):
    """An evaluation or calibration input (folder, pairs file, option) cannot be used."""
