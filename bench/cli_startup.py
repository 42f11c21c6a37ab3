"""Wall time of light `facerec` commands on a large roster, in fresh processes; prints a table.

    .venv/bin/python bench/cli_startup.py [--faces 100000] [--runs 5] [--against OTHER_CHECKOUT]

Writes a synthetic roster of FACES faces (5 per person, random unit encodings under the configured
model id) into a temporary data home, then runs each command RUNS times after one warm-up run and
reports the median wall time, and whether the process imported TensorFlow (one more run under
``python -X importtime``). ``--against DIR`` runs the same commands from another checkout of this
project (``PYTHONPATH=DIR python -m service.cli``, same interpreter and packages) in the same run,
so the two columns are side by side on the same machine state.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from service.config import load_config  # noqa: E402
from service.pipeline.model_id import configured_model_id  # noqa: E402
from synthetic_roster import write_roster  # noqa: E402

FACES_PER_PERSON = 5


def commands(probe: Path) -> list[tuple[str, list[str]]]:
    return [
        ("--help", ["--help"]),
        ("people list --json", ["people", "list", "--json"]),
        ("people show E0000001 --json", ["people", "show", "E0000001", "--json"]),
        ("db upgrade", ["db", "upgrade"]),
        ("verify PHOTO nobody (unknown person)", ["verify", str(probe), "nobody", "--json"]),
    ]


def run(project: Path, argv: list[str], home: Path, importtime: bool = False) -> tuple[float, int, str]:
    env = {**os.environ, "PYTHONPATH": str(project), "FACEREC_HOME": str(home), "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [sys.executable, *(["-X", "importtime"] if importtime else []), "-m", "service.cli", *argv]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=project, capture_output=True, text=True, timeout=600)
    return time.perf_counter() - started, done.returncode, done.stderr


def measure(project: Path, argv: list[str], home: Path, runs: int) -> tuple[float, bool, int]:
    run(project, argv, home)  # warm-up: page cache, and whatever a first run writes
    times, code = [], 0
    for _ in range(runs):
        seconds, code, _ = run(project, argv, home)
        times.append(seconds)
    _, _, stderr = run(project, argv, home, importtime=True)
    loads_tf = any(line.startswith("import time:") and line.rsplit("|", 1)[-1].strip() == "tensorflow"
                   for line in stderr.splitlines())
    return statistics.median(times), loads_tf, code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--against", type=Path, help="another checkout of this project to time alongside")
    args = parser.parse_args()
    probe = sorted((ROOT / "models" / "data" / "5-celebrity" / "val" / "madonna").iterdir())[0]
    projects = [("this checkout", ROOT)] + ([("against", args.against.resolve())] if args.against else [])
    with tempfile.TemporaryDirectory(prefix="facerec-cli-bench-") as home:
        config = load_config(home=home)
        seconds = write_roster(config.database, args.faces, 0, configured_model_id(config), FACES_PER_PERSON)
        print(f"facerec CLI start-up: {args.faces:,} faces of {args.faces // FACES_PER_PERSON:,} people "
              f"(written in {seconds:.1f} s), {os.cpu_count()} cores; median wall of {args.runs} fresh runs "
              f"after a warm-up; TF = the process imported tensorflow")
        header = "| command | " + " | ".join(f"{name} s | TF | exit" for name, _ in projects) + " |"
        print(header)
        print("|" + "|".join("---" for _ in header.split("|")[1:-1]) + "|")
        for label, argv in commands(probe):
            cells = []
            for _, project in projects:
                median, loads_tf, code = measure(project, argv, Path(home), args.runs)
                cells.append(f"{median:.2f} | {'yes' if loads_tf else 'no'} | {code}")
            print(f"| {label} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
