"""2 MB pages under the index (index.huge_pages, index/pages.py): the advised memory is backed by huge
pages, searches answer exactly as before, and the setting turns it off.

Real FAISS and the real kernel, read back from /proc/self/smaps. Where the kernel cannot do
it (transparent huge pages off, or older than Linux 6.1, which added MADV_COLLAPSE) the tests skip
and say why; the index then works on 4 KB pages.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clustered_faces import ClusteredFaces
from index import FaceIndex, IndexSpec
from service.config import load_config
from service.roster.roster import NewFace, NewPerson, Roster

MODEL = "synthetic-model@test"
FACES = 40_000  # 20 MB of vectors: several whole 2 MB pages, wherever the allocator put them
THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")
ROOT = Path(__file__).resolve().parents[1]


def thp_mode() -> str | None:
    """The bracketed word of the THP setting ("always", "madvise", "never"), or None without THP."""
    try:
        found = re.search(r"\[(\w+)\]", THP.read_text())
    except OSError:
        return None
    return found.group(1) if found else None


def kernel_collapses() -> bool:
    release = re.match(r"(\d+)\.(\d+)", os.uname().release)
    return bool(release) and (int(release.group(1)), int(release.group(2))) >= (6, 1)


def huge_bytes(index: FaceIndex) -> int:
    """The bytes on huge pages in the memory mappings holding ``index``'s vectors and links."""
    regions = [(start, start + size) for start, size in index.memory_regions() if size]
    total, mapping = 0, None
    for line in Path("/proc/self/smaps").read_text().splitlines():
        if found := re.match(r"([0-9a-f]+)-([0-9a-f]+) ", line):
            mapping = int(found.group(1), 16), int(found.group(2), 16)
        elif line.startswith("AnonHugePages:") and any(mapping[0] < end and start < mapping[1]
                                                       for start, end in regions):
            total += int(line.split()[1]) * 1024
    return total


needs_huge_pages = pytest.mark.skipif(
    thp_mode() in (None, "never") or not kernel_collapses(),
    reason=f"transparent huge pages {thp_mode() or 'absent'} on Linux {os.uname().release}: needs them on, and 6.1+")


@pytest.fixture(scope="module")
def faces():
    people = ClusteredFaces()
    return people.faces(FACES), people.probes(np.arange(0, FACES // 5, 20))


@needs_huge_pages
@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_an_index_moved_onto_huge_pages_answers_exactly_as_before(faces, kind):
    vectors, probes = faces
    index = FaceIndex.build(np.arange(FACES) * 3, vectors, spec=IndexSpec(kind=kind))
    distances, ids = index.search(probes, 50)

    advised = index.use_huge_pages()

    assert advised >= 8 * 2 ** 20  # the vectors (and hnsw's links) less at most a page at each end
    # Most of it, not all: where the heap reuses memory advised before, a mapping can end inside a
    # 2 MB page, and that page stays on 4 KB pages although the kernel accepted the conversion.
    assert huge_bytes(index) >= advised // 2
    again_distances, again_ids = index.search(probes, 50)
    np.testing.assert_array_equal(again_ids, ids)
    np.testing.assert_array_equal(again_distances, distances)


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_an_empty_or_tiny_index_is_left_alone(kind):
    empty = FaceIndex(spec=IndexSpec(kind=kind))  # no memory yet: an hnsw graph's links are a null pointer
    assert empty.use_huge_pages() == 0 and empty.use_huge_pages(collapse=False) == 0
    tiny = FaceIndex.build(np.arange(100), ClusteredFaces().faces(100), spec=IndexSpec(kind=kind))  # 51 KB
    assert tiny.use_huge_pages() == 0
    assert tiny.search(ClusteredFaces().probes(np.arange(3)), 5)[1].shape == (3, 5)


@pytest.fixture(scope="module")
def home(tmp_path_factory, faces):
    """A data home whose roster holds the 40,000 faces, with its index saved."""
    home = tmp_path_factory.mktemp("pages") / "home"
    roster = Roster(load_config(home=str(home), env={}), MODEL)
    crop = Image.new("RGB", (8, 8))
    vectors, _ = faces
    roster.add_faces([NewFace(NewPerson(f"P{n // 5:05d}"), f"{n:064x}", (0, 0, 8, 8), 0.99, crop, vector)
                      for n, vector in enumerate(vectors)])
    roster.index.load()
    roster.close()
    return home


def loaded_on_huge_pages(home: Path, setting: bool) -> int:
    """In this process: open the roster with index.huge_pages = ``setting``; its index's bytes on huge pages."""
    roster = Roster(load_config(home=str(home), env={"FACEREC_INDEX__HUGE_PAGES": str(setting).lower()}), MODEL,
                    persist_index=False)
    try:
        roster.index.load()
        assert len(roster.index) == FACES
        return huge_bytes(roster.index.face_index)
    finally:
        roster.close()


@needs_huge_pages
@pytest.mark.skipif(thp_mode() != "madvise", reason=f"transparent huge pages are {thp_mode()!r}: with 'always' "
                    "every big allocation gets them unasked, so turning the advice off cannot be seen")
@pytest.mark.parametrize("setting", [True, False])
def test_a_roster_loads_its_index_onto_huge_pages_unless_configured_not_to(home, setting):
    # A fresh process: memory this one advised earlier may be handed out again, huge pages and all.
    script = (f"import sys; sys.path[:0] = {[str(ROOT), str(ROOT / 'tests')]!r}; import test_index_pages as t; "
              f"print(t.loaded_on_huge_pages(t.Path({str(home)!r}), {setting!r}))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    on_huge_pages = int(done.stdout.split()[-1])
    assert on_huge_pages >= 16 * 2 ** 20 if setting else on_huge_pages == 0
