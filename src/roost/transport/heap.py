"""glibc heap settings for processes that own their heap (``roost serve``, bench workers).

COMPAT: uvloop's TLS protocol reads decrypted data with ``SSLObject.read(256 KiB)``, and
CPython allocates the full 256 KiB for every read before shrinking it to the record's size.
Above glibc's mmap threshold (128 KiB until a large block is freed) that is an mmap, a
mremap and a munmap per read: 18 µs for a 100-byte message instead of 1.5 µs, the largest
single cost of a TLS stanza in the server and in the load generator. Serving such blocks
from the heap, and returning heap memory explicitly (``malloc_trim``) rather than on every
free, removes it.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable

__all__ = ["malloc_trim_function", "serve_large_blocks_from_heap"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None)
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.malloc_trim.restype = ctypes.c_int
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.mallopt.restype = ctypes.c_int
    except (OSError, AttributeError):  # not glibc
        return None
    return libc


def malloc_trim_function() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim`` (returns freed heap memory to the OS), or None elsewhere."""
    libc = _libc()
    return None if libc is None else libc.malloc_trim


def serve_large_blocks_from_heap(
    mmap_threshold: int = 1 << 20, trim_threshold: int = 8 << 20
) -> bool:
    """Blocks below ``mmap_threshold`` come from the heap, which shrinks only past
    ``trim_threshold`` of free top (or on ``malloc_trim``). Process-wide; True if applied."""
    libc = _libc()
    if libc is None:
        return False
    return bool(
        libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold)
        and libc.mallopt(_M_TRIM_THRESHOLD, trim_threshold)
    )
