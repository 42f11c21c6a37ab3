"""Schemathesis hooks for tests/test_schema.py (loaded through SCHEMATHESIS_HOOKS).

Schemathesis leaves a ``%`` in a path parameter as it is, taking ``%C3%B9`` for text already
percent-encoded. A person id may contain ``%`` (the API allows it; tests/test_http.py checks such an
id end to end), but when the stateful phase creates a person whose id is the text ``%C3%B9`` and then
follows the link to ``/v1/people/{id}``, it asks for ``ù`` and reports the new person missing. New
people's ids are generated without ``%`` so the links it follows name the person it created.
"""

import schemathesis


@schemathesis.hook
def filter_body(context, body):
    return not (isinstance(body, dict) and isinstance(body.get("id"), str) and "%" in body["id"])
