"""The OpenAPI 3 document of the service (a test checks it against the app's routes)."""

from __future__ import annotations

from service.app.inputs import (
    MAX_FACE_ID, MAX_METADATA_BYTES, MAX_METADATA_DEPTH, MAX_NAME, MAX_PAGE, MAX_PERSON_ID, MAX_THRESHOLD, MAX_TOP_K,
)
from service.http.uploads import MAX_PHOTOS
from service.app.results import ENROLLMENT_STATUSES, IDENTIFY_OUTCOMES, REFUSAL_REASONS, VERIFY_OUTCOMES
from service.http.errors import ERROR_CODES

# A person id: 1 to 128 characters with something other than white space, no slash, backslash or control
# character (service.app.inputs.person_id, which also trims white space at the ends, and refuses a lone
# surrogate: no regex engine of a JSON Schema validator can even spell one).
PERSON_ID = {"type": "string", "minLength": 1, "maxLength": MAX_PERSON_ID,
             "pattern": "^[^\\x00-\\x1f\\x7f-\\x9f/\\\\]*[^\\s\\x00-\\x1f\\x7f-\\x9f/\\\\][^\\x00-\\x1f\\x7f-\\x9f/\\\\]*$"}
# Text searched for: no control characters.
SEARCH = {"type": "string", "maxLength": MAX_NAME, "pattern": "^[^\\x00-\\x1f\\x7f-\\x9f]*$"}
METADATA = {"type": "object", "nullable": True,
            "description": f"any JSON object: at most {MAX_METADATA_BYTES:,} bytes as JSON and {MAX_METADATA_DEPTH} "
                           "levels deep, finite numbers (no NaN or Infinity)"}
THRESHOLD = {"type": "number", "exclusiveMinimum": True, "minimum": 0, "maximum": MAX_THRESHOLD,
             "description": "decide at this threshold instead of the configured one; a client key may only "
                            "tighten it (at most the configured threshold, else 403)"}


def _error(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _ok(description: str, schema: str | None = None) -> dict:
    body = {"description": description}
    if schema:
        body["content"] = {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}
    return body


def _op(summary: str, responses: dict, *, tag: str, secured: bool = True, body: dict | None = None,
        params: list | None = None) -> dict:
    op = {"summary": summary, "tags": [tag], "responses": responses}
    # Answered by the server before any endpoint runs (gunicorn's request-line and header limits).
    responses.setdefault("414", _error("the request line (path and query) is over 4,094 bytes"))
    responses.setdefault("431", _error("a header, or all headers together, over the server's limit"))
    if secured:
        op["security"] = [{"apiKey": []}]
        responses.setdefault("400", _error("a malformed request: a parameter or field out of its bounds"))
        responses.setdefault("401", _error("missing or unknown API key"))
        responses.setdefault("403", _error("the key's role may not use this endpoint"))
    if body:
        op["requestBody"] = body
    if params:
        op["parameters"] = params
    return op


def _path_param(name: str, kind: str = "string") -> dict:
    schema = {"type": "integer", "minimum": 1, "maximum": MAX_FACE_ID} if kind == "integer" else PERSON_ID
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _query(name: str, kind: str, description: str, **bounds) -> dict:
    return {"name": name, "in": "query", "required": False, "schema": {"type": kind, **bounds},
            "description": description}


def _multipart(properties: dict, required: list[str]) -> dict:
    return {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "properties": properties, "required": required}}}}


def _json_body(schema: str) -> dict:
    return {"required": True, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}


BINARY = {"type": "string", "format": "binary"}
PAGING = [_query("offset", "integer", "default 0", minimum=0, maximum=2**31 - 1),
          _query("limit", "integer", f"1 to {MAX_PAGE}, default 100", minimum=1, maximum=MAX_PAGE)]
PHOTO_ERRORS = {"400": _error("malformed request"), "413": _error("body over the upload limit, or too many pixels"),
                "415": _error("the photo is not an image"),
                "422": _error("no face, several faces where one is needed, or an undecodable photo")}


def _ref(schema: str) -> dict:
    return {"$ref": f"#/components/schemas/{schema}"}


def _schemas() -> dict:
    """The one JSON form of each answer (``service.app.results``) and its vocabulary."""
    number, string, integer = {"type": "number"}, {"type": "string"}, {"type": "integer"}
    nullable_string, nullable_number = {"type": "string", "nullable": True}, {"type": "number", "nullable": True}
    box = {"type": "array", "items": number, "minItems": 4, "maxItems": 4,
           "description": "x, y, width, height in the upright photo, pixels rounded to 0.1"}
    confidence = {"type": "number", "nullable": True,
                  "description": "the detector's confidence, 0 to 1 (null when detection is off)"}
    return {
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["code", "message"], "properties": {
                "code": {"type": "string", "enum": sorted(ERROR_CODES)}, "message": string}}}},
        "NewPerson": {"type": "object", "required": ["id"], "additionalProperties": False, "properties": {
            "id": PERSON_ID,
            "name": {"type": "string", "nullable": True, "maxLength": MAX_NAME},
            "metadata": METADATA}},
        "PersonUpdate": {"type": "object", "additionalProperties": False, "properties": {
            "name": {"type": "string", "nullable": True, "maxLength": MAX_NAME},
            "metadata": METADATA, "active": {"type": "boolean"}}},
        "Person": {"type": "object", "properties": {
            "id": string, "name": nullable_string, "metadata": {"type": "object", "nullable": True},
            "active": {"type": "boolean"}, "faces": integer, "created_at": string, "updated_at": string}},
        "PeoplePage": {"type": "object", "properties": {
            "people": {"type": "array", "items": _ref("Person")}, "total": integer, "offset": integer,
            "limit": {"type": "integer", "nullable": True}}},
        "Face": {"type": "object", "properties": {
            "id": integer, "person": string, "box": box, "confidence": confidence, "model": string,
            "photo_sha256": string, "created_at": string}},
        "Faces": {"type": "object", "properties": {"person": string, "faces": {"type": "array", "items": _ref("Face")}}},
        "Deletion": {"type": "object", "properties": {
            "deleted": {"type": "string", "enum": ["person", "face"]}, "person": string,
            "face_id": {"type": "integer", "nullable": True}, "faces_removed": integer,
            "audit_events_erased": {"type": "integer", "description": "with audit.erase_on_delete, the recorded "
                                    "decisions naming the person that were deleted with them"}}},
        "PersonExport": {"type": "object", "properties": {
            "person": _ref("Person"),
            "faces": {"type": "array", "items": {"allOf": [_ref("Face"), {"type": "object", "properties": {
                "encoding": {"type": "array", "items": number, "minItems": 128, "maxItems": 128},
                "crop_png_base64": {"type": "string", "nullable": True, "format": "byte",
                                    "description": "the aligned 160x160 crop kept, as PNG"}}}]}},
            "audit_events": {"type": "array", "items": _ref("AuditEvent")},
            "exported_at": string}},
        "PhotoOutcome": {"type": "object", "properties": {
            "photo": string, "person": string, "status": {"type": "string", "enum": list(ENROLLMENT_STATUSES)},
            "face_id": {"type": "integer", "nullable": True,
                        "description": "the new face; for a duplicate, the face the same photo already gave"},
            "reason": {"type": "string", "nullable": True, "enum": list(REFUSAL_REASONS) + [None]},
            "message": nullable_string,
            "faces_found": {"type": "integer", "nullable": True,
                            "description": "faces seen in the photo; the dominant one was enrolled"}}},
        "Enrollment": {"type": "object", "properties": {
            "person": string, "accepted": integer, "refused": integer,
            "photos": {"type": "array", "items": _ref("PhotoOutcome")}}},
        "Verification": {"type": "object", "properties": {
            "photo": nullable_string, "person": string, "match": {"type": "boolean"}, "distance": number,
            "threshold": {"type": "number", "description": "the threshold that decided: match iff distance < it"},
            "box": box, "confidence": confidence,
            "faces_found": {"type": "integer", "description": "faces seen; the dominant one was compared"}}},
        "Identification": {"type": "object", "properties": {
            "photo": nullable_string,
            "threshold": {"type": "number", "description": "the threshold that decided: match iff distance < it"},
            "faces_found": integer,
            "faces": {"type": "array", "items": {"type": "object", "properties": {
                "box": box, "confidence": confidence, "match": nullable_string, "distance": nullable_number,
                "candidates": {"type": "array", "items": {"type": "object", "properties": {
                    "person": string, "distance": number}}}}}}}},
        "AuditEvent": {"type": "object", "properties": {
            "id": integer, "time": string, "endpoint": {"type": "string", "enum": ["verify", "identify"]},
            "outcome": {"type": "string", "enum": sorted(set(VERIFY_OUTCOMES) | set(IDENTIFY_OUTCOMES))},
            "person": nullable_string, "distance": nullable_number, "code": nullable_string,
            "key_id": nullable_string, "request_id": nullable_string}},
        "AuditPage": {"type": "object", "properties": {
            "events": {"type": "array", "items": _ref("AuditEvent")}, "total": integer, "offset": integer,
            "limit": integer}},
        "Whoami": {"type": "object", "properties": {
            "key_id": string, "role": {"type": "string", "enum": ["admin", "client"]}, "threshold": number}},
        "Status": {"type": "object", "properties": {
            "ready": {"type": "boolean"}, "model_loaded": {"type": "boolean"},
            "index_consistent": {"type": "boolean"}, "faces": integer, "indexed": integer, "generation": integer}},
    }


def document() -> dict:
    """The whole document; built on call so nothing runs at import."""
    person, face = _path_param("person_id"), _path_param("face_id", "integer")
    people = "people"
    return {
        "openapi": "3.0.3",
        "info": {"title": "facerec", "version": "1",
                 "description": "FaceNet face verification and recognition. Keys go in the X-API-Key header: "
                                "role admin for people and faces (and decisions), role client for decisions."},
        "components": {"securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
                       "schemas": _schemas()},
        "paths": {
            "/v1/people": {
                "post": _op("Create a person (admin)", {"201": _ok("created", "Person"), "400": _error("malformed"),
                                                        "409": _error("the id exists")},
                            tag=people, body=_json_body("NewPerson")),
                "get": _op("List people, paged (admin)", {"200": _ok("a page", "PeoplePage"), "400": _error("bad paging")},
                           tag=people, params=[{**_query("q", "string", "only people whose id or name contains this, "
                                                                        "in any case"), "schema": SEARCH},
                                               *PAGING]),
            },
            "/v1/people/{person_id}": {
                "get": _op("One person (admin)", {"200": _ok("the person", "Person"), "404": _error("unknown person")},
                           tag=people, params=[person]),
                "patch": _op("Change name, metadata or active (admin)",
                             {"200": _ok("the person", "Person"), "400": _error("malformed"),
                              "404": _error("unknown person")},
                             tag=people, params=[person], body=_json_body("PersonUpdate")),
                "delete": _op("Delete a person with their encodings, crops and index entries (admin)",
                              {"200": _ok("deleted", "Deletion"), "404": _error("unknown person")}, tag=people,
                              params=[person]),
            },
            "/v1/people/{person_id}/export": {
                "get": _op("Everything held about a person: the record, each face's encoding and crop, every "
                           "recorded decision naming them (admin; a data-subject access request)",
                           {"200": _ok("the export", "PersonExport"), "404": _error("unknown person")},
                           tag=people, params=[person]),
            },
            "/v1/people/{person_id}/faces": {
                "post": _op("Enroll one or many photos (admin); each is accepted or refused with a reason",
                            {"201": _ok("at least one photo accepted", "Enrollment"),
                             "200": _ok("every photo refused", "Enrollment"), "400": _error("no photo sent"),
                             "404": _error("unknown person"), "413": _error("body over the upload limit")},
                            tag=people, params=[person],
                            body=_multipart({"photo": {"type": "array", "items": BINARY, "minItems": 1,
                                                       "maxItems": MAX_PHOTOS}}, ["photo"])),
                "get": _op("The person's faces (admin)", {"200": _ok("faces", "Faces"), "404": _error("unknown person")},
                           tag=people, params=[person]),
            },
            "/v1/people/{person_id}/faces/{face_id}/crop.jpg": {
                "get": _op("The face's aligned 160x160 crop as a JPEG, a thumbnail (admin)",
                           {"200": {"description": "the crop", "content": {"image/jpeg": {"schema": BINARY}}},
                            "404": _error("unknown person or face, or no kept crop")},
                           tag=people, params=[person, face]),
            },
            "/v1/people/{person_id}/faces/{face_id}": {
                "delete": _op("Delete one face (admin)",
                              {"200": _ok("deleted", "Deletion"), "404": _error("unknown person or face")},
                              tag=people, params=[person, face]),
            },
            "/v1/verify": {
                "post": _op("Is the person in the photo who they claim to be? (client)",
                            {"200": _ok("the decision", "Verification"), "404": _error("unknown person"),
                             **PHOTO_ERRORS, "403": _error("the key's role may not use this endpoint, or a client "
                                                          "key asked for a looser threshold")},
                            tag="decisions", body=_multipart({
                                "photo": BINARY, "person": PERSON_ID,
                                "threshold": THRESHOLD}, ["photo", "person"])),
            },
            "/v1/identify": {
                "post": _op("Who is in the photo? (client)",
                            {"200": _ok("the most prominent face (or every face) with its candidates and match",
                                        "Identification"), **PHOTO_ERRORS,
                             "403": _error("the key's role may not use this endpoint, or a client key asked for "
                                           "a looser threshold")},
                            tag="decisions", body=_multipart({
                                "photo": BINARY,
                                "top_k": {"type": "integer", "minimum": 1, "maximum": MAX_TOP_K, "default": 3},
                                "all_faces": {"type": "boolean", "default": False}, "threshold": THRESHOLD},
                                ["photo"])),
            },
            "/v1/whoami": {
                "get": _op("The key's id and role, and the configured threshold (client)",
                           {"200": _ok("who is asking", "Whoami")}, tag="keys"),
            },
            "/v1/audit": {
                "get": _op("Recorded decisions, newest first, by time range and person (admin)",
                           {"200": _ok("a page of decisions", "AuditPage"), "400": _error("bad time or paging")},
                           tag="audit", params=[
                               _query("since", "string", "from this time on, ISO 8601 (no zone: UTC)",
                                      format="date-time"),
                               _query("until", "string", "before this time, ISO 8601", format="date-time"),
                               {**_query("person", "string", "decisions about this person (claimed or matched)"),
                                "schema": PERSON_ID},
                               *PAGING]),
            },
            "/healthz": {"get": _op("Alive", {"200": _ok("alive")}, tag="ops", secured=False)},
            "/readyz": {"get": _op("Model loaded and index consistent with the database",
                                   {"200": _ok("ready", "Status"), "503": _ok("not ready", "Status")}, tag="ops",
                                   secured=False)},
            "/metrics": {"get": _op("Prometheus text metrics (per worker, labelled by pid)",
                                    {"200": {"description": "metrics", "content": {"text/plain": {}}}},
                                    tag="ops", secured=False)},
            "/openapi.json": {"get": _op("This document", {"200": _ok("OpenAPI 3")}, tag="ops", secured=False)},
        },
    }
