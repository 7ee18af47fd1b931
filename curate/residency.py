"""Give back the resident pages of shared-library code this process is not running (what a build's RSS is made of
besides its data), and the C heap's free memory (`trim_heap`).

    >>> from curate.residency import drop_library_pages
    >>> drop_library_pages() >= 0
    True

A build maps ~230 MB of shared libraries' pages (measured after the read of a 50k-record build: LLVM alone ~70-96
MB, mapped while numba loads its compiled kernels and never run again; Arrow, numpy, scipy's BLAS, Python). They
are clean pages of files in the page cache, shared with every process that maps them, and the kernel would drop
them under memory pressure at no cost; yet they count in the process's resident set (VmRSS, VmHWM) as long as they
stay mapped, and how many do depends on how much of each file the page cache held when it was loaded (a freshly
installed library: nearly all of it). `drop_library_pages` unmaps them (`madvise(MADV_DONTNEED)` on each
read-only file mapping with no private dirty page: the next access faults the same bytes back in from the page
cache, a minor fault), so the resident set holds the code the next stage runs, not every page ever touched.

Only mappings that cannot hold a private change are touched: not writable, no `Private_Dirty` and no
`Anonymous` page (a relocated read-only segment, RELRO, has private dirty pages: left alone). Linux only; a no-op
elsewhere or when /proc/self/smaps cannot be read.
"""

from __future__ import annotations

import logging
import re
import sys

log = logging.getLogger(__name__)

__all__ = ["drop_library_pages", "trim_heap"]

_MADV_DONTNEED = 4
_HEADER = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ (\d+)\s*(.*)$")
_madvise: object = None  # the libc function, once looked up (False: not available)
_trim: object = None  # glibc's malloc_trim, once looked up (False: not available)


def trim_heap() -> None:
    """Give the C heap's free memory back to the system (glibc `malloc_trim(0)`; nothing elsewhere). glibc raises
    its mmap threshold after the first big free, so later big blocks (numpy arrays up to 32 MB) come from the heap
    and stay resident when freed: a step that frees as it goes (dedup's keys copied chunk by chunk into its table)
    calls this to keep what it freed from adding up."""
    global _trim
    if _trim is None:
        _trim = False
        try:
            import ctypes
            import ctypes.util

            name = ctypes.util.find_library("c")
            libc = ctypes.CDLL(name) if name else None
            if libc is not None and hasattr(libc, "malloc_trim"):
                _trim = libc.malloc_trim
        except (OSError, AttributeError):  # pragma: no cover - not glibc
            _trim = False
    if _trim:
        _trim(0)  # type: ignore[operator]


def _libc_madvise() -> object:
    global _madvise
    if _madvise is None:
        _madvise = False
        if sys.platform.startswith("linux"):
            try:
                import ctypes

                libc = ctypes.CDLL(None, use_errno=True)
                fn = libc.madvise
                fn.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
                fn.restype = ctypes.c_int
                _madvise = fn
            except (OSError, AttributeError):  # pragma: no cover - not glibc / no madvise
                _madvise = False
    return _madvise


def _clean_file_mappings(smaps: str) -> list[tuple[int, int]]:
    """(start, end) of the read-only file mappings of shared libraries (`.so` in the path) with resident pages
    and neither private dirty nor anonymous ones, from the text of /proc/self/smaps."""
    out: list[tuple[int, int]] = []
    cur: tuple[int, int] | None = None
    ok = False
    rss = dirty = anon = 0
    for line in smaps.splitlines():
        m = _HEADER.match(line)
        if m:
            if cur is not None and ok and rss and not dirty and not anon:
                out.append(cur)
            start, end, perms, inode, path = m.groups()
            cur = (int(start, 16), int(end, 16))
            ok = perms[1] == "-" and inode != "0" and ".so" in path.rsplit("/", 1)[-1]
            rss = dirty = anon = 0
        elif cur is not None:
            key, _, rest = line.partition(":")
            if key == "Rss":
                rss = int(rest.split()[0])
            elif key == "Private_Dirty":
                dirty = int(rest.split()[0])
            elif key == "Anonymous":
                anon = int(rest.split()[0])
    if cur is not None and ok and rss and not dirty and not anon:
        out.append(cur)
    return out


def drop_library_pages() -> int:
    """Unmap the resident pages of clean read-only shared-library mappings (see the module doc); how many
    mappings were given back (0 where this cannot be done)."""
    fn = _libc_madvise()
    if not fn:
        return 0
    try:
        with open("/proc/self/smaps", encoding="utf-8", errors="replace") as fh:
            spans = _clean_file_mappings(fh.read())
    except OSError:  # pragma: no cover - no procfs
        return 0
    done = 0
    for start, end in spans:
        if fn(start, end - start, _MADV_DONTNEED) == 0:  # type: ignore[operator]
            done += 1
    log.debug("gave back the pages of %d library mappings", done)
    return done
