"""Opt-in: keep host memory flatter when training on CPU with batches of varying shape.

Dynamic padding makes every batch a different size. glibc malloc raises its mmap
threshold as large blocks are freed, after which activation tensors come from the heap
and blocks of ever-changing sizes fragment it: peak RSS grows beyond what one batch
needs. A fixed threshold keeps large tensors in their own mappings, returned to the
system when freed. KUBETUNE_MALLOC_TUNING=1 turns it on.

It is off by default because it costs more speed than it saves memory: every block
above the threshold costs an mmap, page faults and zeroing, on every step. Measured on
MiniLM-L6, 1 thread, batch 16 (fused AdamW), 4 MiB threshold against glibc's default:
16x200-token batches 1615 vs 1106 us per token (+46%), 16x24 no difference; the
long-tail run of bench/trainer_vs_txtai.py 12.4 vs 14.6 samples/s at 1750 vs 1930 MB
peak RSS (-9%), still below txtai's 2240 MB untuned.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

logger = logging.getLogger(__name__)

ENV_MALLOC_TUNING = "KUBETUNE_MALLOC_TUNING"
M_MMAP_THRESHOLD = -3  # glibc mallopt parameter number (malloc.h)
MMAP_THRESHOLD_BYTES = 4 * 1024 * 1024

_applied = False


def limit_heap_fragmentation() -> bool:
    """Fix glibc's mmap threshold (once per process); True when it is in effect."""
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux") or os.environ.get(ENV_MALLOC_TUNING, "0") != "1":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # not glibc (e.g. musl): nothing to tune
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _applied = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    if _applied:
        logger.info("malloc: large blocks mmapped above %d bytes (CPU training)", MMAP_THRESHOLD_BYTES)
    return _applied
