"""Handing freed memory back to the operating system between heavy steps."""

from __future__ import annotations


def release_memory() -> None:
    """Give memory Python freed (a crawl's page bodies, a model fit's buffers) back to the system.

    glibc keeps freed heap pages resident in its per-thread arenas (~30 MB after crawling the Python
    docs) until asked to trim them; what follows (the model refit, the after-build steps) then
    starts lower.  A no-op where the C library has no ``malloc_trim``.
    """
    import ctypes
    import gc

    gc.collect()
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError, TypeError):
        return
    trim(0)
