"""DAX's attribute-list ids kept in SQLite, so that they outlive the process.

The DAX clients cache every attribute-list id they learn for as long as they run; a
proxy that forgot its ids on restart would give a known id to another list, and a client
that outlived the restart would misread items (:mod:`daxproxy.dax.attribute_lists`).
:class:`SqliteListStore` keeps them in ``attribute_lists.sqlite3`` in the data directory:
one row per list, its id the row id plus one (id 1 is the empty list, never stored), the
names as a JSON array. Rows are only ever added. Each new list is one short write
transaction (``BEGIN IMMEDIATE``: processes sharing the file, such as workers, take turns,
and the one that comes second finds the list the first one added, so every process gives
the same id); reads of an id another process added find it in the file. A new list is rare
(one per distinct set of attribute names), so the write's cost, paid on the event loop, is
small; WAL and ``synchronous=NORMAL`` keep it to a write without an fsync per list.

:func:`open_store` opens the store of the ``data_dir`` setting (:func:`default_data_dir`
when it is not set), creating the directory; a directory that cannot be made, written or
hold the file raises :class:`~daxproxy.core.config.SettingError` naming ``data_dir``.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Mapping

from daxproxy.core.config import SettingError, Settings
from daxproxy.dax.attribute_lists import EMPTY_LIST_ID, Full

FILE_NAME = "attribute_lists.sqlite3"
_SCHEMA = "CREATE TABLE IF NOT EXISTS lists (id INTEGER PRIMARY KEY, names TEXT NOT NULL UNIQUE)"


class SqliteListStore:
    def __init__(self, data_dir: str) -> None:
        os.makedirs(data_dir, exist_ok=True)
        self.path = os.path.join(data_dir, FILE_NAME)
        # Autocommit mode: the transactions are this class's own (BEGIN IMMEDIATE).
        self._db = sqlite3.connect(self.path, isolation_level=None, timeout=10.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)

    def id_of(self, names: tuple[str, ...], max_lists: int) -> int:
        text = json.dumps(names, ensure_ascii=False)
        row = self._db.execute("SELECT id FROM lists WHERE names = ?", (text,)).fetchone()
        if row is not None:
            return int(row[0]) + EMPTY_LIST_ID
        self._db.execute("BEGIN IMMEDIATE")
        try:
            row = self._db.execute("SELECT id FROM lists WHERE names = ?", (text,)).fetchone()
            if row is None:
                (count,) = self._db.execute("SELECT COALESCE(MAX(id), 0) FROM lists").fetchone()
                if count + EMPTY_LIST_ID >= max_lists:
                    raise Full(f"{max_lists} attribute lists are named already")
                row = (self._db.execute("INSERT INTO lists (names) VALUES (?)", (text,)).lastrowid,)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return int(row[0]) + EMPTY_LIST_ID

    def names_of(self, list_id: int) -> tuple[str, ...] | None:
        row = self._db.execute(
            "SELECT names FROM lists WHERE id = ?", (list_id - EMPTY_LIST_ID,)
        ).fetchone()
        return None if row is None else tuple(json.loads(row[0]))

    def close(self) -> None:
        self._db.close()


def default_data_dir(environ: Mapping[str, str] = os.environ) -> str:
    """``$XDG_DATA_HOME/daxproxy``, else ``~/.local/share/daxproxy``."""
    base = environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "daxproxy")


def open_store(settings: Settings) -> SqliteListStore:
    """The attribute-list store in the ``data_dir`` setting's directory."""
    path = settings.data_dir if settings.data_dir is not None else default_data_dir()
    try:
        store = SqliteListStore(path)
    except (OSError, sqlite3.Error) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SettingError(
            "data_dir", f"cannot keep DAX's attribute lists in {path}: {reason}"
        ) from None
    if not os.access(path, os.W_OK) or not os.access(store.path, os.W_OK):
        store.close()
        raise SettingError(
            "data_dir", f"cannot keep DAX's attribute lists in {path}: it is not writable"
        )
    return store
