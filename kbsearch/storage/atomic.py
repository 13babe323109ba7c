"""Atomic file writes: every artefact of an index version is written whole or not at all.

A file is written under a temporary name in its own directory, flushed and fsynced, then renamed
over its final name with `os.replace` (atomic on POSIX).  Besides surviving a crash, this never
writes into an existing inode: a version forked by hard links (`versions.fork`) shares its files'
inodes with the live version, and writing in place (``np.save`` onto an existing path) would
change the live version too.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

#: Temporary files start with this prefix (clean-up and forks skip them).
TMP_PREFIX = ".tmp-"


@contextmanager
def atomic_file(path: str | Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path``; on a clean exit it is fsynced and renamed to ``path``.

    On an exception the temporary file is removed and ``path`` keeps its previous content.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f"{TMP_PREFIX}{target.name}.")
    try:
        kwargs: dict[str, Any] = {} if "b" in mode else {"encoding": "utf-8", "newline": ""}
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_file(path, "w") as handle:
        handle.write(text)


def write_json(path: str | Path, data: Any, **dump: Any) -> None:
    """Write ``data`` as JSON to ``path`` atomically (``dump``: `json.dumps` options)."""
    write_text(path, json.dumps(data, **dump))


def save_npy(path: str | Path, array: Any) -> None:
    """`numpy.save` ``array`` to ``path`` atomically (no pickles)."""
    import numpy as np

    with atomic_file(path) as handle:
        np.save(handle, array, allow_pickle=False)


def save_npz(path: str | Path, **arrays: Any) -> None:
    """`numpy.savez` ``arrays`` to ``path`` atomically."""
    import numpy as np

    with atomic_file(path) as handle:
        np.savez(handle, **arrays)


def save_sparse(path: str | Path, matrix: Any) -> None:
    """`scipy.sparse.save_npz` ``matrix`` (uncompressed) to ``path`` atomically."""
    import scipy.sparse as sp

    with atomic_file(path) as handle:
        sp.save_npz(handle, matrix, compressed=False)


def save_npy_gathered(path: str | Path, source: Any, order: Any, dtype: str, chunk: int = 8192) -> None:
    """`save_npy` of ``source[order]`` as ``dtype``, atomically, gathering ``chunk`` rows at a time:
    a memory-mapped ``source`` is written in another row order without being held whole."""
    import numpy as np

    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
              "shape": (len(order), *source.shape[1:])}
    with atomic_file(path) as handle:
        np.lib.format.write_array_header_1_0(handle, header)
        for start in range(0, len(order), chunk):
            handle.write(np.ascontiguousarray(source[order[start:start + chunk]], dtype=dtype).tobytes())
