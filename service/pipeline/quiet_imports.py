"""OpenVINO and NNCF, imported without their usage reporting.

``import openvino`` sends an "import" event to a web analytics service and writes a client id and a
usage count under the home folder (~/intel), and NNCF reports each quantize call the same way, unless
the user has opted out with Intel's tool. A security product sends nothing anywhere unasked: both are
imported here with ``openvino_telemetry`` hidden, so each falls back to its own no-op stub. Import them
through these functions only (the stub holds for the rest of the process once a package is loaded).
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from types import ModuleType
from typing import Iterator


def import_openvino() -> ModuleType:
    """The ``openvino`` package, its telemetry a no-op."""
    with _no_telemetry():
        return importlib.import_module("openvino")


def import_nncf() -> ModuleType:
    """The ``nncf`` package, its telemetry a no-op (ImportError when it is not installed)."""
    with _no_telemetry():
        import_openvino()
        return importlib.import_module("nncf")


@contextlib.contextmanager
def _no_telemetry() -> Iterator[None]:
    absent = object()
    saved = sys.modules.get("openvino_telemetry", absent)
    sys.modules["openvino_telemetry"] = None  # makes `import openvino_telemetry` raise ImportError
    try:
        yield
    finally:
        if saved is absent:
            del sys.modules["openvino_telemetry"]
        else:
            sys.modules["openvino_telemetry"] = saved
