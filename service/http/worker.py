"""The gunicorn worker the service runs: gthread, made to stand clients that stall or send garbage.

- Requests are read whole before a thread takes them. gthread hands each connection to a thread as soon
  as it opens, and the thread then waits on the client: fifty clients that send half a request (or a
  body a byte at a time) would hold every thread. Here the worker's own poll loop reads each request,
  head and body (up to the upload limit), without a thread, and only a complete request goes to the
  thread pool; gunicorn's parser then reads it from memory (service/http/framing.py finds the end).
- A deadline (``server.request_timeout``) for a client to send its request, and another for a thread to
  answer it: a client that sends too slowly, or never reads the answer, loses its connection.
- gunicorn's own answers to malformed requests (a request line or headers too long, a broken request)
  come in the API's JSON error shape, not as an HTML page.

nginx in front (deploy/nginx.conf) buffers requests too, and holds slow clients with far less memory.
"""

from __future__ import annotations

import json
import os
import selectors
import socket
import threading
import time
from functools import partial

from gunicorn import util
from gunicorn.http.unreader import SocketUnreader
from gunicorn.workers.gthread import ThreadWorker

from service.http.framing import RequestFrame

CODES = {400: "bad_request", 403: "forbidden", 414: "uri_too_long", 417: "expectation_failed",
         431: "headers_too_large", 500: "internal", 501: "not_implemented"}
# Bytes a worker holds for requests still arriving. Past it, a request goes to a thread unfinished and
# the thread reads the rest (under the deadline): memory stays bounded whatever clients send.
PREREAD_BUDGET = 64 * 2**20
READ_SIZE, READ_PER_EVENT = 64 * 1024, 1024 * 1024  # one client does not hold the loop for long
STOP_LINGER = 2.0  # a stopping worker waits this long for a request on a connection that sent nothing yet
SWEEP_EVERY = 0.5  # seconds between two looks for connections past their deadline
OPEN, ENDED, FAILED = "open", "ended", "failed"  # a connection, after reading what it sent


def write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    body = json.dumps({"error": {"code": CODES.get(status_int, "bad_request"),
                                 "message": mesg or reason}}).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
    util.write_nonblock(sock, head + body)


class FacerecWorker(ThreadWorker):
    # Set from the config by service.http.server before the workers start.
    request_timeout = 30.0
    max_body = 10 * 2**20

    def init_process(self) -> None:
        # gunicorn's worker base looks write_error up on its util module at each error.
        util.write_error = write_json_error
        self.reading: dict = {}  # connections whose request is arriving, registered with the poller
        self.buffered = 0  # their bytes
        self.next_sweep = 0.0
        self.stopping_since = None
        cfg = self.cfg
        # Pre-reading needs plain HTTP/1 bytes: TLS, PROXY protocol, uWSGI and HTTP/2 are left to gunicorn.
        self.prereading = (not cfg.is_ssl and getattr(cfg, "protocol", "http") == "http"
                           and getattr(cfg, "proxy_protocol", "off") == "off"
                           and getattr(cfg, "http2_cleartext", "off") == "off")
        line = cfg.limit_request_line if cfg.limit_request_line > 0 else 1024 * 1024
        fields = cfg.limit_request_fields if 0 < cfg.limit_request_fields <= 32768 else 32768
        field_size = cfg.limit_request_field_size if cfg.limit_request_field_size > 0 else 8190
        self.limits = {"max_line": line, "max_head": line + 2 + fields * (field_size + 2) + 4,
                       "max_body": self.max_body, "max_fields": fields, "max_field": field_size}
        super().init_process()

    # ---- reading requests in the poll loop (main thread only) ------------------------------------

    def enqueue_req(self, conn) -> None:
        """Read CONN's next request in the poll loop; a thread gets it once it is all here."""
        if not self.prereading:
            return super().enqueue_req(conn)
        # Bytes of this request read along with the last one (pipelining) are in gunicorn's parser.
        conn.preread = bytearray(conn.parser.unreader.take_buffered() if conn.parser is not None else b"")
        conn.frame = RequestFrame(**self.limits)
        conn.continued = False
        conn.read_deadline = time.monotonic() + self.request_timeout
        conn.counted = len(conn.preread)  # its share of self.buffered
        self.buffered += conn.counted
        self._advance(conn)

    def _advance(self, conn, _sock=None) -> None:
        """Read what CONN sent; hand its request to a thread if whole, else wait for more in the poller."""
        try:
            if conn not in self.reading:
                conn.sock.setblocking(False)
            state = self._receive(conn)
            if state == FAILED or (state == ENDED and not conn.preread):
                self._drop(conn)  # reset, or closed before sending a byte of a request
                return
            if state == ENDED or conn.frame.ready(conn.preread) or self.buffered > PREREAD_BUDGET:
                self._stop_reading(conn)  # complete, refused, closed half-way, or over the budget
                conn.data_ready = True
                super().enqueue_req(conn)
                return
            if conn.frame.expects_continue and not conn.continued:
                conn.continued = True  # the client waits for this before it sends the body
                try:
                    conn.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")
                except OSError:
                    pass  # its buffer is full or it is gone: the body, or the hang-up, comes anyway
            if conn not in self.reading:
                self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._advance, conn))
                self.reading[conn] = True
        except Exception:  # noqa: BLE001 - the poll loop must outlive any one connection
            self.log.exception("reading a request failed")
            self._drop(conn)

    def _receive(self, conn) -> str:
        """Append what CONN has sent to its buffer; say whether the connection is OPEN, ENDED or FAILED."""
        got = 0
        while got < READ_PER_EVENT:
            try:
                data = conn.sock.recv(READ_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                return FAILED
            if not data:
                return ENDED
            conn.preread += data
            conn.counted += len(data)
            self.buffered += len(data)
            got += len(data)
        return OPEN

    def _stop_reading(self, conn) -> None:
        self.buffered -= conn.counted
        conn.counted = 0
        if self.reading.pop(conn, None):
            self.poller.unregister(conn.sock)

    def _drop(self, conn) -> None:
        """Close CONN without an answer."""
        try:
            self._stop_reading(conn)
        except (KeyError, ValueError, OSError):
            pass  # never registered, or its socket is gone already
        self.nr_conns -= 1
        conn.close()

    def murder_pending(self) -> None:
        """Also end the connections whose request has not arrived by the deadline (without an answer)."""
        super().murder_pending()
        now = time.monotonic()
        if now < self.next_sweep or not self.reading:
            return
        self.next_sweep = now + SWEEP_EVERY
        if not self.alive and self.stopping_since is None:
            self.stopping_since = now
        for conn in list(self.reading):
            deadline = conn.read_deadline
            if self.stopping_since is not None and not conn.preread:
                deadline = min(deadline, self.stopping_since + STOP_LINGER)
            if now >= deadline:
                self._drop(conn)

    # ---- answering (in a thread) -------------------------------------------------------------------

    def handle(self, conn):
        preread = getattr(conn, "preread", None)
        if preread is not None:
            conn.preread = None
            conn.sock.setblocking(True)
            conn.init()
            conn.parser.unreader = PrereadUnreader(conn.sock, preread)  # gunicorn parses it from memory
        deadline = threading.Timer(self.request_timeout, _cut, args=(conn.sock,))
        deadline.daemon = True
        deadline.start()
        try:
            return super().handle(conn)
        finally:
            deadline.cancel()
            unreader = getattr(conn.parser, "unreader", None)
            if isinstance(unreader, PrereadUnreader):
                unreader.settle()

    def handle_request(self, req, conn):
        if getattr(conn, "continued", False):
            conn.continued = False
            req._expected_100_continue = False  # the poll loop said "100 Continue" already: not twice
        return super().handle_request(req, conn)


class PrereadUnreader(SocketUnreader):
    """gunicorn's socket reader, serving first the bytes the poll loop read, in the pieces a socket would.

    (Handing them to gunicorn with unread() would do too, but its buffer copies what is left on every
    read: a 10 MB body read 64 KB at a time cost 0.2 s of copying.)"""

    def __init__(self, sock, data: bytearray):
        super().__init__(sock)
        self.pending, self.at = memoryview(data), 0

    def chunk(self, size_hint=None):
        if self.at >= len(self.pending):
            return super().chunk(size_hint)
        size = min(size_hint, self.max_body_chunk) if size_hint and size_hint > self.mxchunk else self.mxchunk
        piece = bytes(self.pending[self.at:self.at + size])
        self.at += len(piece)
        return piece

    def settle(self) -> None:
        """Move bytes not read yet (a pipelined next request) to the buffer, where gunicorn looks for them."""
        rest = bytes(self.pending[self.at:])
        self.pending, self.at = memoryview(b""), 0
        if rest:
            self.buf.seek(0, os.SEEK_END)
            self.buf.write(rest)


def _cut(sock: socket.socket) -> None:
    """The request took too long: end the connection, which frees the thread reading or writing it."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
