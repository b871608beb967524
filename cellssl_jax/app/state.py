"""The page's state of one folder: the class list, every label and correction, and the undo
journal, in SQLite (WAL, synchronous FULL: a label the page shows as done is on disk, so a
`kill -9` of the server loses none). One server per state folder (an flock'ed lock file).

The store never writes a path a client sent: cells are named by their path relative to the
folder, checked against the folder's scan before they reach here (`cells.Cells.check`).
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
import time
from pathlib import Path

from cellssl_jax import vocab

UNSURE = "?"  # "not a cell / unsure": a label of its own, never a class, left out of exports
FORBIDDEN = set('<>:"/\\|?*')  # a class is a folder name of the export, on any system
MAX_CLASSES = 64

PRESETS: dict[str, list[str]] = {
    "PBC 8 (Acevedo)": list(vocab.ACEVEDO),
    "5 normal white cells (Raabin)": [c.lower() for c in vocab.RAABIN],
    "Matek bone marrow (21 codes)": list(vocab.MATEK_BM),
    "Matek blood (15 codes)": list(vocab.MATEK_BLOOD),
}

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS labels (
  file TEXT PRIMARY KEY, label TEXT NOT NULL, kind TEXT NOT NULL, t REAL NOT NULL);
CREATE TABLE IF NOT EXISTS journal (
  id INTEGER PRIMARY KEY AUTOINCREMENT, file TEXT NOT NULL, before TEXT, after TEXT,
  kind TEXT NOT NULL, t REAL NOT NULL, undone INTEGER NOT NULL DEFAULT 0);
"""


class StateError(Exception):
    """A state folder that cannot be used (unwritable, locked by another server): the message
    says what to do."""


def check_classes(names: list[str]) -> list[str]:
    """Class names, stripped, that can be folder names of the export -> the list; else an error
    naming the bad one."""
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError("classes must be a list of names")
    names = [n.strip() for n in names]
    if not 2 <= len(names) <= MAX_CLASSES:
        raise ValueError(f"give between 2 and {MAX_CLASSES} classes, got {len(names)}")
    seen: set[str] = set()
    for name in names:
        if not name or len(name) > 60:
            raise ValueError(f"a class name must have 1-60 characters, got {name!r}")
        if name.startswith(".") or FORBIDDEN & set(name) or not name.isprintable():
            raise ValueError(f"class {name!r}: no leading dot and none of <>:\"/\\|?* allowed")
        if name.lower() in seen:
            raise ValueError(f"class {name!r} is given twice")
        seen.add(name.lower())
    return names


class StateStore:
    """Labels, classes and the undo journal of one folder; every method is one transaction,
    committed before it returns. Thread-safe (one connection behind a lock)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.path = self.folder / "labels.sqlite"
        self._lock = threading.Lock()
        self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self.db.close()

    def _meta(self, key: str, default: str) -> str:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else default

    def _bump(self) -> None:
        version = int(self._meta("version", "0")) + 1
        self.db.execute("INSERT OR REPLACE INTO meta VALUES ('version', ?)", (str(version),))

    def version(self) -> int:
        """Grows with every change: tabs poll it to stay consistent."""
        with self._lock:
            return int(self._meta("version", "0"))

    def classes(self) -> list[str]:
        with self._lock:
            return json.loads(self._meta("classes", "[]"))

    def set_classes(self, names: list[str]) -> list[str]:
        """Replace the class list; a class that still has labels cannot be dropped."""
        names = check_classes(names)
        with self._lock:
            used = dict(self.db.execute(
                "SELECT label, COUNT(*) FROM labels WHERE label != ? GROUP BY label", (UNSURE,)))
            dropped = {c: n for c, n in used.items() if c not in names}
            if dropped:
                listed = ", ".join(f"{c} ({n} cells)" for c, n in sorted(dropped.items()))
                raise ValueError(f"classes with labels cannot be removed: {listed}; "
                                 "relabel those cells first")
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('classes', ?)",
                            (json.dumps(names),))
            self._bump()
            self.db.execute("COMMIT")
        return names

    def labels(self) -> dict[str, str]:
        with self._lock:
            return dict(self.db.execute("SELECT file, label FROM labels"))

    def snapshot(self) -> tuple[int, dict[str, str], dict[str, str]]:
        """(version, labels, kinds) read together: a classify or an export of exactly these."""
        with self._lock:
            version = int(self._meta("version", "0"))
            rows = self.db.execute("SELECT file, label, kind FROM labels").fetchall()
        return version, {f: lab for f, lab, _ in rows}, {f: k for f, _, k in rows}

    def label_kinds(self) -> dict[str, str]:
        """file -> "label" (labelled on the label screen) or "correction" (on review)."""
        with self._lock:
            return dict(self.db.execute("SELECT file, kind FROM labels"))

    def set_label(self, file: str, label: str | None, kind: str = "label") -> int:
        """Label `file` (a class, UNSURE, or None to clear), journalled for undo -> version."""
        classes = self.classes()
        if label is not None and label != UNSURE and label not in classes:
            raise ValueError(f"unknown class {label!r}; the classes are {', '.join(classes)}")
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                row = self.db.execute("SELECT label FROM labels WHERE file=?", (file,)).fetchone()
                before = row[0] if row else None
                self._write(file, label, kind)
                self.db.execute(
                    "INSERT INTO journal (file, before, after, kind, t) VALUES (?, ?, ?, ?, ?)",
                    (file, before, label, kind, time.time()))
                self._bump()
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            return int(self._meta("version", "0"))

    def _write(self, file: str, label: str | None, kind: str) -> None:
        if label is None:
            self.db.execute("DELETE FROM labels WHERE file=?", (file,))
        else:
            self.db.execute("INSERT OR REPLACE INTO labels VALUES (?, ?, ?, ?)",
                            (file, label, kind, time.time()))

    def undo(self) -> dict | None:
        """Take back the newest label change not undone yet -> {file, label (now), version};
        None when there is nothing to undo. Every change is undoable, as far back as it goes."""
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            row = self.db.execute(
                "SELECT id, file, before, kind FROM journal WHERE undone=0 "
                "ORDER BY id DESC LIMIT 1").fetchone()
            if row is None:
                self.db.execute("COMMIT")
                return None
            ident, file, before, kind = row
            self._write(file, before, kind)
            self.db.execute("UPDATE journal SET undone=1 WHERE id=?", (ident,))
            self._bump()
            self.db.execute("COMMIT")
            return {"file": file, "label": before, "version": int(self._meta("version", "0"))}

    def undo_depth(self) -> int:
        with self._lock:
            return self.db.execute("SELECT COUNT(*) FROM journal WHERE undone=0").fetchone()[0]


class ServerLock:
    """One server per state folder: an exclusive flock on `<state>/server.lock`, held for the
    process's life (the kernel drops it when the process dies, kill -9 included)."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / "server.lock"
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 4096, 0).decode(errors="replace").strip()
            os.close(self.fd)
            raise StateError(
                f"another server is using the state folder {folder} ({holder or 'pid unknown'});"
                " stop it, or give this one another folder with --state DIR") from None

    def note(self, text: str) -> None:
        """Record who holds the lock (pid, port), for the message a second server prints."""
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, text.encode(), 0)

    def release(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def open_state(folder: Path) -> tuple[StateStore, ServerLock]:
    """Create/open the state folder -> (store, lock); a StateError with what to do when the
    folder cannot be written or another server holds it."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise StateError(
            f"cannot write the state folder {folder} ({err.strerror or err}); give a folder "
            "you can write to with --state DIR") from None
    lock = ServerLock(folder)
    try:
        return StateStore(folder), lock
    except sqlite3.Error as err:
        lock.release()
        raise StateError(f"cannot open {folder / 'labels.sqlite'} ({err}); give another "
                         "folder with --state DIR") from None
