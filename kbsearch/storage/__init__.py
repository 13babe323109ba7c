"""Storage: every per-version artefact on disk, written so that a crash never damages a live version.

`atomic` writes one file (temp name in the same directory, fsync, `os.replace`); `versions` owns the
directory of index versions (the ``CURRENT`` pointer, copy-on-write forks, the writer lock,
clean-up); `sqlite` opens the SQLite databases beside the versions (peer store, usage log, crawl
state), all one way; `sql` is the narrow layer the peer store and the usage log run on, over SQLite
or, with `postgres`, a shared PostgreSQL (versioned migrations, pooled connections).  This layer sits below the index: it never imports the engine, search or models.
"""

from __future__ import annotations

from .atomic import atomic_file, save_npy, save_npy_gathered, save_npz, save_sparse, write_json, write_text

__all__ = ["atomic_file", "save_npy", "save_npy_gathered", "save_npz", "save_sparse", "write_json", "write_text"]
