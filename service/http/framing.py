"""Where an HTTP/1.x request ends, found as its bytes arrive, so the worker can read a request whole before
a thread takes it (service/http/worker.py).

This only decides when to stop waiting: gunicorn's parser still reads and judges every byte. So whenever
the framing is not plainly valid (a bare LF, two lengths, an unknown transfer coding, a head or chunk line
over gunicorn's limits, a body over the upload limit), the request is "ready" at once: gunicorn refuses it,
or the app does (413), without the worker waiting for more.
"""

from __future__ import annotations

HEX = frozenset(b"0123456789abcdefABCDEF")
MAX_DIGITS = 15  # a length of more digits is over any upload limit (and int() refuses 4,300 digits)

HEAD, LENGTH, CHUNKS, READY = "head", "length", "chunks", "ready"


class RequestFrame:
    """One request's framing at the start of a buffer that grows: call ``ready(buffer)`` after each read."""

    def __init__(self, max_line: int, max_head: int, max_body: int, max_fields: int = 100, max_field: int = 8190):
        self.max_line = max_line  # gunicorn's limit_request_line
        self.max_head = max_head  # request line + gunicorn's header buffer limit; also bounds trailers
        self.max_body = max_body  # the app's upload limit
        self.max_fields, self.max_field = max_fields, max_field  # gunicorn's limit_request_fields, _field_size
        self.state = HEAD
        self.searched = 0  # where the search for the head's end resumes
        self.body_end = 0  # LENGTH: where the body ends
        self.chunk_at = 0  # CHUNKS: where the next chunk-size line starts
        self.body_seen = 0  # CHUNKS: chunk bytes so far
        self.expects_continue = False  # the head asked for "100 Continue" and a body is still to come

    def ready(self, buffer: bytes | bytearray) -> bool:
        """True once the buffer holds the whole request (maybe more after it), or enough for it to be refused."""
        if self.state == HEAD:
            self._scan_head(buffer)
        if self.state == LENGTH and len(buffer) >= self.body_end:
            self.state = READY
        elif self.state == CHUNKS:
            self._scan_chunks(buffer)
        return self.state == READY

    def _scan_head(self, buffer: bytes | bytearray) -> None:
        start = max(0, self.searched - 3)  # a terminator may straddle the last read
        if start and buffer[start - 1:start] == b"\r":
            start -= 1  # never begin between the CR and LF of a line end
        end = buffer.find(b"\r\n\r\n", start)
        head = buffer[start:] if end < 0 else buffer[start:end + 4]
        if head.count(b"\n") != head.count(b"\r\n"):
            self.state = READY  # a bare LF: gunicorn refuses the request
            return
        if end < 0:
            first_line = buffer.find(b"\r\n")
            if (first_line < 0 and len(buffer) > self.max_line + 2) or first_line > self.max_line \
                    or len(buffer) > self.max_head:
                self.state = READY  # too long: gunicorn answers 414 or 431
            self.searched = len(buffer)
            return
        self._frame(bytes(buffer[:end]), end + 4)

    def _frame(self, head: bytes, body_start: int) -> None:
        lines = head.split(b"\r\n")
        if lines[0] == b"" and len(lines) > 1:
            lines = lines[1:]  # one empty line before the request line is allowed (RFC 9112 section 2.2)
        if len(lines[0]) > self.max_line or len(lines) - 1 > self.max_fields \
                or any(len(line) > self.max_field for line in lines[1:]):
            self.state = READY  # gunicorn answers 414 or 431 without waiting for a body
            return
        http11 = lines[0].endswith(b" HTTP/1.1")
        lengths, codings, expect = [], [], False
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon:
                continue  # gunicorn refuses it; the framing does not matter then
            name, value = name.upper(), value.strip(b" \t")
            if name == b"CONTENT-LENGTH":
                lengths.append(value)
            elif name == b"TRANSFER-ENCODING":
                codings += [coding.strip(b" \t").lower() for coding in value.split(b",")]
            elif name == b"EXPECT":
                expect = value.lower() == b"100-continue"
        if codings:
            if codings != [b"chunked"] or lengths or not http11:
                self.state = READY  # gunicorn refuses these, or reads them itself (other codings close)
                return
            self.state, self.chunk_at = CHUNKS, body_start
        elif lengths:
            value = lengths[0]
            if len(lengths) > 1 or not value.isdigit() or len(value) > MAX_DIGITS or int(value) > self.max_body:
                self.state = READY  # refused by gunicorn (400) or by the app (413) without reading the body
                return
            self.state, self.body_end = LENGTH, body_start + int(value)
        else:
            self.state = READY  # no body
            return
        self.expects_continue = expect and http11

    def _scan_chunks(self, buffer: bytes | bytearray) -> None:
        while True:
            line_end = buffer.find(b"\r\n", self.chunk_at)
            if line_end < 0:
                tail = buffer[self.chunk_at:]
                if len(tail) > self.max_head or b"\n" in tail:
                    self.state = READY  # a chunk line gunicorn refuses
                return
            line = bytes(buffer[self.chunk_at:line_end])
            size = line.split(b";", 1)[0].rstrip(b" \t") if b";" in line else line
            if b"\n" in line or not size or len(size) > MAX_DIGITS or not HEX.issuperset(size):
                self.state = READY  # gunicorn refuses the chunk size
                return
            size = int(size, 16)
            if size == 0:
                trailers = line_end + 2
                if buffer[trailers:trailers + 2] == b"\r\n" or buffer.find(b"\r\n\r\n", trailers) >= 0 \
                        or len(buffer) - trailers > self.max_head:
                    self.state = READY  # the last chunk and its trailers, or trailers too long
                return
            if self.body_seen + size > self.max_body:
                self.state = READY  # the app refuses it with 413 when its reading passes the limit
                return
            data_end = line_end + 2 + size
            if len(buffer) < data_end + 2:
                return
            if buffer[data_end:data_end + 2] != b"\r\n":
                self.state = READY  # gunicorn refuses a chunk without its CRLF
                return
            self.body_seen += size
            self.chunk_at = data_end + 2
