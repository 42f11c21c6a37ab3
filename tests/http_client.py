"""A small HTTP client for the end-to-end tests, and the photos they send (multipart bodies, PNGs,
faces pasted side by side)."""

from __future__ import annotations

import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from PIL import Image


class Client:
    def __init__(self, port: int):
        self.port = port

    def call(self, method: str, path: str, key: str | None = None, json_body=None, files=None, fields=None,
             raw: bytes | None = None, content_type: str | None = None, binary: bool = False):
        """(status, parsed JSON or text (bytes with ``binary``), headers)."""
        headers = {"X-API-Key": key} if key else {}
        body = raw
        if json_body is not None:
            body, content_type = json.dumps(json_body).encode(), "application/json"
        elif files is not None or fields is not None:
            body, content_type = multipart(files or [], fields or {})
        if content_type:
            headers["Content-Type"] = content_type
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            try:
                conn.request(method, path, body=body, headers=headers)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server may answer (413) before reading a large body: read what it said
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        if binary and response.status == 200:
            return response.status, data, dict(response.getheaders())
        text = data.decode("utf-8", "replace")
        is_json = response.getheader("Content-Type", "").startswith("application/json")
        return response.status, json.loads(text) if is_json else text, dict(response.getheaders())


def multipart(files: list[tuple[str, str, bytes]], fields: dict) -> tuple[bytes, str]:
    """A multipart/form-data body: ``files`` as (field, filename, bytes), ``fields`` as name -> value."""
    boundary = uuid.uuid4().hex
    out = io.BytesIO()
    for name, value in fields.items():
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for field, filename, data in files:
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
                  f'Content-Type: application/octet-stream\r\n\r\n'.encode())
        out.write(data + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def photo_file(path: Path, field: str = "photo") -> tuple[str, str, bytes]:
    return field, path.name, path.read_bytes()


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def assert_error(status_body, status: int, code: str | None = None):
    got, body, _ = status_body
    assert got == status, body
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    if code:
        assert body["error"]["code"] == code, body


# ---- ports -------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def with_bystander(main: Path, bystander: Path, scale: float = 0.35) -> bytes:
    """``main`` as it is, with a small copy of ``bystander`` pasted in a corner (a passer-by)."""
    photo = Image.open(main).convert("RGB")
    other = Image.open(bystander).convert("RGB")
    other = other.resize((max(1, int(other.width * scale)), max(1, int(other.height * scale))))
    canvas = Image.new("RGB", (photo.width + other.width, max(photo.height, other.height)), (255, 255, 255))
    canvas.paste(photo, (0, 0))
    canvas.paste(other, (photo.width, 0))
    return png(canvas)


def side_by_side(celebrity_dir: Path) -> bytes:
    """Two celebrity faces pasted next to each other."""
    a, b = (Image.open(sorted((celebrity_dir / "val" / p).iterdir())[1]).convert("RGB") for p in ("madonna", "jerry_seinfeld"))
    height = max(a.height, b.height)
    canvas = Image.new("RGB", (a.width + b.width, height), (255, 255, 255))
    canvas.paste(a, (0, 0))
    canvas.paste(b, (a.width, 0))
    return png(canvas)


# ---- the server --------------------------------------------------------------------------------------

START_TIMEOUT = 150


@contextmanager
def running_server(home: Path, port: int, env: dict, cwd: Path) -> Iterator["Client"]:
    """`facerec serve --home HOME --port PORT` with ``env`` added, until the block ends; its output
    in HOME/server.log. Fails with the log's tail if it exits or is not ready in START_TIMEOUT s.

    The server runs in a session of its own (``client.process``): killing that process group stops
    its master and workers at once, as a host failure would."""
    client = start_server(home, port, env, cwd)
    process = client.process
    try:
        yield client
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        client.log.close()


def start_server(home: Path, port: int, env: dict, cwd: Path, command: list[str] | None = None,
                 wait: bool = True) -> "Client":
    """Start `facerec serve --home HOME --port PORT` (or ``command`` with those arguments) in a session of
    its own, output in HOME/server.log (``client.log``), the process as ``client.process``; with
    ``wait``, once it is ready. Stopping it is the caller's business."""
    command = command or [str(Path(sys.executable).parent / "facerec")]
    log = open(home / "server.log", "ab")
    process = subprocess.Popen([*command, "serve", "--home", str(home), "--port", str(port)],
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **env}, stdout=log,
                               stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True)
    client = Client(port)
    client.process, client.log = process, log
    if wait:
        try:
            wait_ready(client, process, home)
        except BaseException:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            log.close()
            raise
    return client


def wait_ready(client: Client, process: subprocess.Popen, home: Path) -> None:
    """Until /readyz answers 200; fails with the log's tail if the server exits or takes too long."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}:\n"
                                 f"{(home / 'server.log').read_text()[-3000:]}")
        try:
            if client.call("GET", "/readyz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"server not ready in {START_TIMEOUT} s:\n{(home / 'server.log').read_text()[-3000:]}")
