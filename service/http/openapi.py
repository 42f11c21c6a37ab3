"""The OpenAPI 3 document of the service (a test checks it against the app's routes)."""

from __future__ import annotations

from service.http.people import REFUSAL_CODES




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
    if secured:
        op["security"] = [{"apiKey": []}]
        responses.setdefault("401", _error("missing or unknown API key"))
        responses.setdefault("403", _error("the key's role may not use this endpoint"))
    if body:
        op["requestBody"] = body
    if params:
        op["parameters"] = params
    return op


def _path_param(name: str, kind: str = "string") -> dict:
    return {"name": name, "in": "path", "required": True, "schema": {"type": kind}}


def _query(name: str, kind: str, description: str) -> dict:
    return {"name": name, "in": "query", "required": False, "schema": {"type": kind}, "description": description}


def _multipart(properties: dict, required: list[str]) -> dict:
    return {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "properties": properties, "required": required}}}}


def _json_body(schema: str) -> dict:
    return {"required": True, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}


BINARY = {"type": "string", "format": "binary"}
PHOTO_ERRORS = {"400": _error("malformed request"), "413": _error("body over the upload limit, or too many pixels"),
                "415": _error("the photo is not an image"),
                "422": _error("no face, several faces where one is needed, or an undecodable photo")}


def _schemas() -> dict:
    number, string = {"type": "number"}, {"type": "string"}
    nullable_string = {"type": "string", "nullable": True}
    return {
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["code", "message"], "properties": {"code": string, "message": string}}}},
        "NewPerson": {"type": "object", "required": ["id"], "properties": {
            "id": {"type": "string", "maxLength": 128}, "name": string, "metadata": {"type": "object"}}},
        "PersonUpdate": {"type": "object", "properties": {
            "name": nullable_string, "metadata": {"type": "object", "nullable": True}, "active": {"type": "boolean"}}},
        "Person": {"type": "object", "properties": {
            "id": string, "name": nullable_string, "metadata": {"type": "object", "nullable": True},
            "active": {"type": "boolean"}, "faces": {"type": "integer"},
            "created_at": string, "updated_at": string}},
        "PeoplePage": {"type": "object", "properties": {
            "people": {"type": "array", "items": {"$ref": "#/components/schemas/Person"}},
            "total": {"type": "integer"}, "offset": {"type": "integer"}, "limit": {"type": "integer"}}},
        "Face": {"type": "object", "properties": {
            "id": {"type": "integer"}, "box": {"type": "array", "items": number}, "score": number,
            "model": string, "photo_sha256": string, "created_at": string}},
        "Faces": {"type": "object", "properties": {
            "person": string, "faces": {"type": "array", "items": {"$ref": "#/components/schemas/Face"}}}},
        "Enrollment": {"type": "object", "properties": {
            "person": string, "accepted": {"type": "integer"}, "refused": {"type": "integer"},
            "photos": {"type": "array", "items": {"type": "object", "properties": {
                "photo": string, "status": {"type": "string", "enum": ["accepted", "refused"]},
                "face_id": {"type": "integer"},
                "reason": {"type": "string", "enum": sorted(set(REFUSAL_CODES.values()))},
                "message": string}}}}},
        "Verification": {"type": "object", "properties": {
            "person": string, "distance": number, "threshold": number, "match": {"type": "boolean"}}},
        "Identification": {"type": "object", "properties": {
            "threshold": number, "faces_found": {"type": "integer"},
            "faces": {"type": "array", "items": {"type": "object", "properties": {
                "box": {"type": "array", "items": {"type": "integer"}, "description": "x, y, width, height"},
                "match": nullable_string, "distance": {"type": "number", "nullable": True},
                "candidates": {"type": "array", "items": {"type": "object", "properties": {
                    "person": string, "distance": number}}}}}}}},
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
                           tag=people, params=[_query("offset", "integer", "default 0"),
                                               _query("limit", "integer", "1 to 1000, default 100")]),
            },
            "/v1/people/{person_id}": {
                "get": _op("One person (admin)", {"200": _ok("the person", "Person"), "404": _error("unknown person")},
                           tag=people, params=[person]),
                "patch": _op("Change name, metadata or active (admin)",
                             {"200": _ok("the person", "Person"), "400": _error("malformed"),
                              "404": _error("unknown person")},
                             tag=people, params=[person], body=_json_body("PersonUpdate")),
                "delete": _op("Delete a person with their encodings, crops and index entries (admin)",
                              {"200": _ok("deleted"), "404": _error("unknown person")}, tag=people, params=[person]),
            },
            "/v1/people/{person_id}/faces": {
                "post": _op("Enroll one or many photos (admin); each is accepted or refused with a reason",
                            {"201": _ok("at least one photo accepted", "Enrollment"),
                             "200": _ok("every photo refused", "Enrollment"), "400": _error("no photo sent"),
                             "404": _error("unknown person"), "413": _error("body over the upload limit")},
                            tag=people, params=[person],
                            body=_multipart({"photo": {"type": "array", "items": BINARY}}, ["photo"])),
                "get": _op("The person's faces (admin)", {"200": _ok("faces", "Faces"), "404": _error("unknown person")},
                           tag=people, params=[person]),
            },
            "/v1/people/{person_id}/faces/{face_id}": {
                "delete": _op("Delete one face (admin)", {"200": _ok("deleted"), "404": _error("unknown person or face")},
                              tag=people, params=[person, face]),
            },
            "/v1/verify": {
                "post": _op("Is the person in the photo who they claim to be? (client)",
                            {"200": _ok("the decision", "Verification"), "404": _error("unknown person"), **PHOTO_ERRORS},
                            tag="decisions", body=_multipart({"photo": BINARY, "person": {"type": "string"}},
                                                             ["photo", "person"])),
            },
            "/v1/identify": {
                "post": _op("Who is in the photo? (client)",
                            {"200": _ok("every face with its candidates and match", "Identification"), **PHOTO_ERRORS},
                            tag="decisions", body=_multipart({
                                "photo": BINARY, "top_k": {"type": "integer", "minimum": 1, "maximum": 50, "default": 3},
                                "all_faces": {"type": "boolean", "default": False}}, ["photo"])),
            },
            "/healthz": {"get": _op("Alive", {"200": _ok("alive")}, tag="ops", secured=False)},
            "/readyz": {"get": _op("Model loaded and index consistent with the database",
                                   {"200": _ok("ready"), "503": _ok("not ready")}, tag="ops", secured=False)},
            "/metrics": {"get": _op("Prometheus text metrics (per worker, labelled by pid)",
                                    {"200": {"description": "metrics", "content": {"text/plain": {}}}},
                                    tag="ops", secured=False)},
            "/openapi.json": {"get": _op("This document", {"200": _ok("OpenAPI 3")}, tag="ops", secured=False)},
        },
    }
