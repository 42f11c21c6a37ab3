"""What the command line prints: JSON on stdout with ``--json`` (the results' one JSON form), text
otherwise; errors as one ``error: ...`` line on stderr (and the JSON error on stdout with ``--json``)."""

from __future__ import annotations

import json
import sys

from service.app.results import error_json, finite_json


class Output:
    def __init__(self, as_json: bool):
        self.as_json = as_json

    def document(self, payload: dict, text: str) -> None:
        """One answer: one line of JSON (compact: the C encoder, 20k people in 0.1 s), or the text."""
        if self.as_json:
            print(_strict(payload))
        else:
            print(text)

    def line(self, payload: dict, text: str | None) -> None:
        """One answer of many, printed as soon as it is known: a JSON line, or a line of text."""
        if self.as_json:
            print(_strict(payload), flush=True)
        elif text is not None:
            print(text, flush=True)

    def error(self, code: str, message: str, photo: str | None = None) -> None:
        """A failure: of the whole command, or (given ``photo``) of one photo in a run of many."""
        if self.as_json:  # one line either way: a whole document, or one line of a run of JSON lines
            payload = error_json(code, message) if photo is None else {"photo": photo, **error_json(code, message)}
            print(json.dumps(payload), flush=True)
        print(f"error: {message}", file=sys.stderr, flush=True)

    @staticmethod
    def note(message: str) -> None:
        """Progress and warnings: stderr, so stdout stays parseable."""
        print(message, file=sys.stderr, flush=True)


def _strict(payload: dict) -> str:
    """Strict JSON: a NaN or infinite number (say, a rate of nothing) is written as null."""
    try:
        return json.dumps(payload, allow_nan=False)
    except ValueError:
        return json.dumps(finite_json(payload), allow_nan=False)
