"""Where a request ends (service/http/framing.py), fed as a slow client would send it: byte by byte. The
worker hands a request to a thread exactly when it is whole, or at once when gunicorn would refuse it."""

from __future__ import annotations

import pytest

from service.http.framing import RequestFrame

LIMITS = {"max_line": 4094, "max_head": 4096 + 100 * 8192, "max_body": 1000}


def ready_after(data: bytes, **limits) -> int | None:
    """How many bytes of DATA, arriving one at a time, make the request ready (None: never)."""
    frame = RequestFrame(**{**LIMITS, **limits})
    for count in range(1, len(data) + 1):
        if frame.ready(data[:count]):
            return count
    return None


HEAD = b"POST /v1/people HTTP/1.1\r\nHost: x\r\n"


@pytest.mark.parametrize("request_bytes", [
    b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /healthz HTTP/1.0\r\n\r\n",
    b"\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",  # one empty line first is allowed
    HEAD + b"Content-Length: 0\r\n\r\n",
    HEAD + b"Content-Length: 11\r\n\r\n{\"id\": \"a\"}",
    HEAD + b"content-length:11\r\n\r\n{\"id\": \"a\"}",
    HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\n{\"id\"\r\n6\r\n: \"a\"}\r\n0\r\n\r\n",
    HEAD + b"Transfer-Encoding: Chunked\r\n\r\nb;name=value\r\n{\"id\": \"a\"}\r\n0\r\nX-Trailer: 1\r\n\r\n",
    HEAD + b"Expect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
])
def test_a_whole_request_is_ready_at_its_last_byte_not_before(request_bytes):
    assert ready_after(request_bytes) == len(request_bytes)
    # and with the next request (pipelined) behind it, at the same byte
    assert ready_after(request_bytes + b"GET / HTTP/1.1\r\n") == len(request_bytes)


@pytest.mark.parametrize("request_bytes, why", [
    (b"GET / HTTP/1.1\nHost: x\n\n", "bare LF"),
    (HEAD + b"Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc", "two lengths"),
    (HEAD + b"Content-Length: +3\r\n\r\nabc", "a length that is not digits"),
    (HEAD + b"Content-Length: " + b"9" * 5000 + b"\r\n\r\nabc", "a length of 5,000 digits"),
    (HEAD + b"Content-Length: 1001\r\n\r\n" + b"x" * 1001, "a body over the upload limit"),
    (HEAD + b"Transfer-Encoding: gzip\r\n\r\nabc", "a coding that is not chunked"),
    (HEAD + b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", "chunked twice"),
    (HEAD + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", "chunked and a length"),
    (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "chunked HTTP/1.0"),
])
def test_framing_gunicorn_refuses_is_handed_over_with_the_head(request_bytes, why):
    head_end = request_bytes.index(b"\r\n\r\n") + 4 if b"\r\n\r\n" in request_bytes else None
    got = ready_after(request_bytes)
    assert got is not None and (head_end is None or got <= head_end), why


@pytest.mark.parametrize("body, why", [
    (b"zz\r\nab\r\n0\r\n\r\n", "a chunk size that is not hex"),
    (b"5 \r\nabcde\r\n0\r\n\r\n", "a space after the size without an extension"),
    (b"2\r\nabcd\r\n0\r\n\r\n", "a chunk longer than it said"),
    (b"3\nabc\r\n0\r\n\r\n", "a bare LF after the size"),
    (b"400\r\n" + b"x" * 1024 + b"\r\n0\r\n\r\n", "chunks over the upload limit"),
])
def test_bad_chunks_are_handed_over_where_they_go_wrong(body, why):
    request_bytes = HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + body
    got = ready_after(request_bytes)
    assert got is not None and got < len(request_bytes), why


def test_a_head_or_line_too_long_is_handed_over_without_its_end():
    assert ready_after(b"GET /" + b"a" * 5000) == 4094 + 3  # a request line over the limit, no CRLF yet
    assert ready_after(b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\n", max_line=4094) is not None
    many = b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * 1000
    assert ready_after(many, max_head=2000) == 2001
    chunk_line = HEAD + b"Transfer-Encoding: chunked\r\n\r\n1;" + b"e" * 3000
    assert ready_after(chunk_line, max_head=2000) is not None
    # whole heads gunicorn refuses (414, 431) are handed over without waiting for the body they announce
    for head in (b"POST /" + b"a" * 5000 + b" HTTP/1.1\r\nContent-Length: 9\r\n\r\n",
                 HEAD + b"X-Big: " + b"b" * 9000 + b"\r\nContent-Length: 9\r\n\r\n",
                 HEAD + b"X-A: b\r\n" * 101 + b"Content-Length: 9\r\n\r\n"):
        assert RequestFrame(**LIMITS).ready(head)  # arriving in one piece


def test_an_unfinished_request_is_not_ready():
    for partial in (b"GET / HTTP/1.1\r\nHost: x\r\n", HEAD + b"Content-Length: 10\r\n\r\nabc",
                    HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n0\r\n",
                    HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n0\r\nX-T: 1\r\n"):
        assert ready_after(partial) is None, partial


def test_100_continue_is_expected_only_for_a_body_still_to_come_over_http_1_1():
    frame = RequestFrame(**LIMITS)
    assert not frame.ready(HEAD + b"Expect: 100-continue\r\nContent-Length: 3\r\n\r\n") and frame.expects_continue
    frame = RequestFrame(**LIMITS)
    assert not frame.ready(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
    assert not frame.expects_continue
    frame = RequestFrame(**LIMITS)
    assert not frame.ready(HEAD + b"Content-Length: 3\r\n\r\n") and not frame.expects_continue
