"""Errors the service reports to its users.

Each carries a stable machine-readable ``code`` (used by the CLI's JSON output and, later, by the
HTTP API) and a human message. Nothing else in the project should raise bare ``ValueError`` for
input problems a user can cause.
"""


class FacerecError(Exception):
    """Base of every error a user can cause; ``code`` is stable, the message is for people."""

    code = "error"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ImageError(FacerecError):
    """The photo could not be used at all."""

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


class NoFace(FacerecError):
    code = "no_face"


class MultipleFaces(FacerecError):
    code = "multiple_faces"


class UnknownPerson(FacerecError):
    code = "unknown_person"


class ModelError(FacerecError):
    """The weights are missing, corrupt or do not match the network."""

    code = "model_error"


class ConfigError(FacerecError):
    code = "config_error"


class PersonExists(FacerecError):
    code = "person_exists"


class UnknownFace(FacerecError):
    code = "unknown_face"


class DuplicatePhoto(FacerecError):
    """The same photo (by sha256) is already enrolled for this person."""

    code = "duplicate"


class EvaluationInputError(FacerecError):
    """An evaluation or calibration input (folder, pairs file, option) cannot be used."""

    code = "bad_input"
