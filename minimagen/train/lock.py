"""One trainer per run folder: an exclusive lock on out_dir/.lock, held while a process trains there.

Two trainers writing one folder would each report success while the folder keeps a mix of both
(the second run's files, a log interleaving both). The lock is fcntl.flock, which the kernel
releases when its process ends, however it ends: a lock file left by a `kill -9` is stale by
construction, and the next run takes it over (and says whose it was).
"""

import os
import socket
import time
from pathlib import Path

LOCK_NAME = ".lock"

class RunLockedError(RuntimeError):
    """Another live process is training in this run folder."""


try:
    import fcntl
except ImportError:  # Windows has no fcntl: runs there are not locked
    fcntl = None


def _lock_holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "unknown process"
    except OSError:
        return "unknown process"


def check_unlocked(out_dir: Path) -> None:
    """RunLockedError naming the process that holds out_dir's lock, if a live one does (takes nothing)."""
    path = out_dir / LOCK_NAME
    if fcntl is None or not path.exists():
        return
    lock = RunLock(out_dir)
    lock.acquire(create=False)
    lock.release(remove=False)


class RunLock:
    """An exclusive lock on a run folder (fcntl.flock on out_dir/.lock, which names its holder).

    The kernel releases the lock when its process ends, however it ends, so a lock file left by a
    `kill -9` is stale by construction: the next run takes it (and says whose it was).
    """

    def __init__(self, out_dir: Path):
        self.path, self.fd = Path(out_dir) / LOCK_NAME, None

    def acquire(self, create: bool = True) -> str | None:
        """Take the lock or raise RunLockedError; returns the holder a stale lock file names, if any."""
        if fcntl is None:
            return None
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | (os.O_CREAT if create else 0), 0o644)
            except FileNotFoundError:
                return None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise RunLockedError(f"{self.path.parent} is in use: another process is training there "
                                     f"({_lock_holder(self.path)}); wait for it to end or choose another --out")
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:  # else the holder removed the file between our open and our lock: take the new one
                break
            os.close(fd)
        self.fd = fd
        stale = os.read(fd, 1000).decode(errors="replace").strip() or None
        if create:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, since {time.ctime()}\n".encode(), 0)
        return stale

    def release(self, remove: bool = True) -> None:
        if self.fd is None:
            return
        if remove:
            try:
                self.path.unlink()  # while still holding it, so no one locks a file about to vanish
            except FileNotFoundError:
                pass
        os.close(self.fd)
        self.fd = None
