"""nginx in front of `facerec serve` replicas for the benches: deploy/nginx.conf as shipped, with the
bench's own ports, pid and temp paths. Needs nginx (Debian: apt-get install nginx)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]


def nginx_config(folder: Path, listen: int, replicas: list[int]) -> Path:
    """deploy/nginx.conf with this run's ports, pid and temp paths: the directives that matter unchanged."""
    text = (ROOT / "deploy" / "nginx.conf").read_text()
    servers = "\n".join(f"        server 127.0.0.1:{port} max_fails=1 fail_timeout=10s;" for port in replicas)
    text = re.sub(r"(?m)^        server 127\.0\.0\.1:\d+ .*\n(        server 127\.0\.0\.1:\d+ .*\n)*", servers + "\n", text)
    text = re.sub(r"listen \d+;", f"listen 127.0.0.1:{listen};", text)
    paths = "\n".join(f"    {kind}_temp_path {folder / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi",
                                                                           "scgi"))
    text = text.replace("http {\n", f"http {{\n    access_log off;\n{paths}\n", 1)
    config = folder / "nginx.conf"
    config.write_text(f"pid {folder / 'nginx.pid'};\nerror_log {folder / 'error.log'};\n" + text)
    return config


@contextmanager
def running_nginx(folder: Path, listen: int, replicas: list[int]) -> Iterator[subprocess.Popen]:
    """nginx on 127.0.0.1:LISTEN in front of REPLICAS (loopback ports) until the block ends."""
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o777)  # nginx's workers (user nobody when run as root) write temp files there
    config = nginx_config(folder, listen, replicas)
    nginx = subprocess.Popen(["nginx", "-c", str(config), "-g", "daemon off;"], stderr=subprocess.PIPE)
    try:
        time.sleep(1)
        if nginx.poll() is not None:
            raise RuntimeError(f"nginx exited: {nginx.stderr.read().decode(errors='replace')}")
        yield nginx
    finally:
        if nginx.poll() is None:
            nginx.send_signal(signal.SIGQUIT)
            try:
                nginx.wait(timeout=30)
            except subprocess.TimeoutExpired:
                nginx.kill()
                nginx.wait()
