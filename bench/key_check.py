"""What checking an API key costs a request, now that every request also looks whether the keys file
changed; prints a table.

    .venv/bin/python bench/key_check.py [--keys 2 20 200] [--rounds 20000]

For each number of keys, in a throwaway data home: ``identify`` (what every request runs: hash the
presented key, compare it with every key) with the keys in the configuration only (no file: the
cost before the keys file was reread), with the same number in the keys file (one ``stat`` more per
request), and the cost of the reread itself, paid once per worker after each change (``keys add``).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from service.config import load_config  # noqa: E402
from service.http.auth import Authenticator  # noqa: E402
from service.http.keys import KeysFile  # noqa: E402


def per_call_us(function, rounds: int, repeats: int = 5) -> float:
    """The best of ``repeats`` timings of ``rounds`` calls: the machine is shared, so the least
    disturbed run is the one that says what the code costs."""
    function()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(rounds):
            function()
        best = min(best, (time.perf_counter() - started) / rounds)
    return best * 1e6


def measure(count: int, rounds: int) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory() as empty, tempfile.TemporaryDirectory() as home:
        fixed = [f"client:configured-key-{n:04d}-padding-to-43-characters-long" for n in range(count)]
        auth = load_config(home=empty, env={"FACEREC_API_KEYS": ",".join(fixed)}).auth
        config_only = Authenticator(replace(auth, keys_file=None))  # no file to look at: as before
        assert config_only.identify(fixed[-1][len("client:"):]) is not None
        before = per_call_us(lambda: config_only.identify(fixed[-1][len("client:"):]), rounds)

        keys = KeysFile(Path(home) / "api-keys.yaml")
        made = [keys.add("client", f"door {n}", lambda _: None)[1] for n in range(count)]
        from_file = Authenticator(load_config(home=home, env={}).auth)
        assert from_file.identify(made[-1]) is not None
        after = per_call_us(lambda: from_file.identify(made[-1]), rounds)

        def reread():
            from_file._seen = (object(), ())  # as after a change: the next call rereads
            from_file.file_keys()

        reread_us = per_call_us(reread, max(20, rounds // 100))
        return before, after, reread_us


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, nargs="+", default=[2, 20, 200])
    parser.add_argument("--rounds", type=int, default=10000)
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the reread's log line, thousands of times
    print(f"{'keys':>5} | {'identify, config keys (us)':>27} | {'identify, keys file (us)':>25} | "
          f"{'per request, added (us)':>23} | {'reread after a change (us)':>26}")
    print("-" * 119)
    for count in args.keys:
        before, after, reread_us = measure(count, args.rounds)
        print(f"{count:>5} | {before:>27.2f} | {after:>25.2f} | {after - before:>23.2f} | {reread_us:>26.0f}")


if __name__ == "__main__":
    main()
