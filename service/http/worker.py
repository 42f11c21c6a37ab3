"""The gunicorn worker the service runs: gthread, made to stand clients that stall or send garbage.

- A deadline per request (``server.request_timeout``): a client that sends its request line, headers
  or body too slowly, or never reads the answer, loses its connection when the deadline passes, so a
  handful of stalled connections cannot hold every worker thread. (In production, nginx in front
  buffers whole requests first: deploy/nginx.conf.)
- gunicorn's own answers to malformed requests (a request line or headers too long, a broken request)
  come in the API's JSON error shape, not as an HTML page.
"""

from __future__ import annotations

import json
import socket
import threading

from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker

CODES = {400: "bad_request", 403: "forbidden", 414: "uri_too_long", 417: "expectation_failed",
         431: "headers_too_large", 500: "internal", 501: "not_implemented"}


def write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    body = json.dumps({"error": {"code": CODES.get(status_int, "bad_request"),
                                 "message": mesg or reason}}).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
    util.write_nonblock(sock, head + body)


class FacerecWorker(ThreadWorker):
    request_timeout = 30.0  # set from the config by service.http.server before the workers start

    def init_process(self) -> None:
        # gunicorn's worker base looks write_error up on its util module at each error.
        util.write_error = write_json_error
        super().init_process()

    def handle(self, conn):
        deadline = threading.Timer(self.request_timeout, _cut, args=(conn.sock,))
        deadline.daemon = True
        deadline.start()
        try:
            return super().handle(conn)
        finally:
            deadline.cancel()


def _cut(sock: socket.socket) -> None:
    """The request took too long: end the connection, which frees the thread reading or writing it."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
