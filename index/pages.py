"""Backing an index's vectors and graph links with huge pages (Linux transparent huge pages).

A search reads a few hundred vectors (hnsw) or all of them (flat) scattered over gigabytes, and with
4 KB pages nearly every read misses the TLB. On 2 MB pages, hnsw searches at 1M and 10M faces ran
about 15% faster and flat scans 4-9% (docs/performance.md, "2 MB pages").

Where transparent huge pages are "madvise" only (Ubuntu's default, and many cloud images'), memory
gets them only when asked. ``MADV_HUGEPAGE`` asks for the pages a region touches from now on and
lets the kernel's background collapser convert the rest, slowly; ``MADV_COLLAPSE`` (Linux 6.1+)
converts the region at once. Both are advice: where the kernel or the C library say no, the index
works as before on 4 KB pages. An administrator's "never" is respected, although MADV_COLLAPSE
itself would ignore it.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import sys
from pathlib import Path

_THP = Path("/sys/kernel/mm/transparent_hugepage")
_MADV_HUGEPAGE = 14
_MADV_COLLAPSE = 25


@functools.cache
def _madvise():
    """libc's madvise, or None where there is no such thing to call (looked up once: after every add)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        madvise = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    return madvise


@functools.cache
def huge_page_bytes() -> int:
    """The size of a huge page here (2 MB on x86-64), or 0 where transparent huge pages are off."""
    try:
        if "[never]" in (_THP / "enabled").read_text():
            return 0
        return int((_THP / "hpage_pmd_size").read_text())
    except (OSError, ValueError):
        return 0


def advise_huge_pages(regions: list[tuple[int, int]], collapse: bool) -> int:
    """Ask for huge pages over each (address, bytes) region. With ``collapse``, convert them now and
    return the bytes the kernel accepted to convert (a huge page that two memory mappings share
    stays on small pages even so); without, the bytes marked for it to convert later. 0 where the
    kernel, its settings or the C library refuse."""
    madvise, page = _madvise(), huge_page_bytes()
    if madvise is None or not page:
        return 0
    done = 0
    for address, size in regions:
        # Only whole huge pages inside the region: the advice applies to the pages of the mapping
        # it covers, and a neighbouring allocation's pages are not this index's to change.
        start, end = -(-address // page) * page, (address + size) // page * page
        if end <= start or madvise(start, end - start, _MADV_HUGEPAGE) != 0:
            continue
        if not collapse:
            done += end - start
            continue
        for _ in range(2):  # EAGAIN: a page was busy (being faulted in, or migrated); once more
            if madvise(start, end - start, _MADV_COLLAPSE) == 0:
                done += end - start
                break
            if ctypes.get_errno() != errno.EAGAIN:
                break  # EINVAL before Linux 6.1, ENOMEM without free huge pages: the mark stands
    return done
