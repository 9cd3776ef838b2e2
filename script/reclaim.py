# hf-reclaim: remove one model's directory from the PVC (script.Reclaim).
#
# Run as python3 -I -c <this file>: standard library only. It reads only
# environment variables: HFDL_RECLAIM_ROOT (the mount), HFDL_RECLAIM_MODEL
# (org/name or name), HFDL_RECLAIM_TERMLOG (default /dev/termination-log).
#
# What it removes is the model's directory and nothing else. Every directory
# is opened with O_NOFOLLOW relative to its parent's descriptor, so neither a
# symlink on the way (an org that links elsewhere) nor one inside is ever
# followed: a link is removed as a link. A directory on another filesystem
# is not entered. The download lock (.hf-download.lock, which download.sh
# holds while it writes) is held from before the directory moves until it is
# gone, so a removal never runs beside a download of that directory.
#
# The directory is first renamed to .hf-reclaim/<digest of the name> at the
# mount's top (a name no model can have): a workload sees the model whole or
# not at all, and a download that starts later makes a fresh directory. A
# removal cut short leaves that name behind, and the next run for the model
# finishes it first. So does the staging directory of a check of the model's
# revision that was stopped midway (.hf-resync/<digest of the path>).

import errno
import fcntl
import hashlib
import json
import os
import re
import stat
import sys

LOCK = ".hf-download.lock"
TRASH = ".hf-reclaim"
RESYNC = ".hf-resync"
PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*\Z")
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

termlog = os.environ.get("HFDL_RECLAIM_TERMLOG", "/dev/termination-log")


def report(text):
    try:
        with open(termlog, "w") as f:
            f.write(text + "\n")
    except OSError:
        pass  # outside Kubernetes: the exit code and the log line still say it


def die(reason):
    reason = " ".join(reason.split())
    print("hf-reclaim: " + reason, file=sys.stderr, flush=True)
    report(reason)
    sys.exit(1)


class Tally:
    def __init__(self, dev):
        self.dev = dev
        self.bytes = 0
        self.files = 0

    def gone(self, st):
        # Space comes back only with an inode's last link.
        if st.st_nlink <= 1 or stat.S_ISDIR(st.st_mode):
            self.bytes += st.st_blocks * 512
        if stat.S_ISREG(st.st_mode):
            self.files += 1


def open_dir(name, parent, what):
    """The directory name in parent, or None when it is not there."""
    try:
        return os.open(name, DIR_FLAGS, dir_fd=parent)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            die(f"{what} is a symlink or a file, not a directory: it is left as it is")
        die(f"cannot open {what}: {e.strerror}")


def remove_tree(parent, name, tally, what):
    """Removes parent/name, a directory, and all in it; symlinks as links."""
    fd = open_dir(name, parent, what)
    if fd is None:
        return
    try:
        st = os.fstat(fd)
        if st.st_dev != tally.dev:
            die(f"{what} is on another filesystem: it is left as it is")
        with os.scandir(fd) as it:
            entries = list(it)
        for e in entries:
            est = e.stat(follow_symlinks=False)
            if stat.S_ISDIR(est.st_mode):
                remove_tree(fd, e.name, tally, what + "/" + e.name)
            else:
                os.unlink(e.name, dir_fd=fd)
                tally.gone(est)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=parent)
    tally.gone(st)


def main():
    root_path = os.environ.get("HFDL_RECLAIM_ROOT", "")
    model = os.environ.get("HFDL_RECLAIM_MODEL", "")
    parts = model.split("/")
    if not root_path or len(parts) > 2 or not all(PART.match(p) and ".." not in p for p in parts):
        die(f"refusing to reclaim {model!r} under {root_path!r}: not a repo id under a mount")
    path = os.path.join(root_path, model)

    root = os.open(root_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    tally = Tally(os.fstat(root).st_dev)
    parent = root
    for i, p in enumerate(parts[:-1]):
        parent = open_dir(p, parent, os.path.join(root_path, *parts[: i + 1]))
        if parent is None:
            break

    try:
        os.mkdir(TRASH, 0o700, dir_fd=root)
    except FileExistsError:
        pass
    trash = open_dir(TRASH, root, os.path.join(root_path, TRASH))
    if trash is None:
        die(f"cannot make {os.path.join(root_path, TRASH)}")
    parked = hashlib.sha256(model.encode()).hexdigest()[:32]
    parked_path = os.path.join(root_path, TRASH, parked)
    # What a run cut short left behind goes first: the name is needed.
    remove_tree(trash, parked, tally, parked_path)

    d = None if parent is None else open_dir(parts[-1], parent, path)
    if d is not None:
        if os.fstat(d).st_dev != tally.dev:
            die(f"{path} is on another filesystem: it is left as it is")
        try:
            lock = os.open(LOCK, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=d)
        except OSError as e:
            die(f"cannot open the lock file {path}/{LOCK}: {e.strerror}")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"hf-reclaim: a download holds the lock on {path}; waiting for it to end", flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        # The lock is on the directory opened above; it must still be the
        # one at the model's path (a download may have replaced it since).
        try:
            now = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            now = None
        if now is not None and (now.st_ino, now.st_dev) == (os.fstat(d).st_ino, tally.dev):
            os.rename(parts[-1], parked, src_dir_fd=parent, dst_dir_fd=trash)
            remove_tree(trash, parked, tally, parked_path)
        elif now is not None:
            die(f"{path} was replaced while the lock was awaited; run again")
        os.close(lock)

    # A check of the model's revision stopped midway (settings.resyncInterval)
    # may have left its staging directory: hfdl.py's staging_dir of the path.
    staging = hashlib.sha256(os.fsencode(path)).hexdigest()[:32]
    resync = open_dir(RESYNC, root, os.path.join(root_path, RESYNC))
    if resync is not None:
        remove_tree(resync, staging, tally, os.path.join(root_path, RESYNC, staging))

    print(f"hf-reclaim: removed {path}: {tally.files} files, {tally.bytes} bytes freed", flush=True)
    report(json.dumps({"bytesFreed": tally.bytes, "files": tally.files}, separators=(",", ":")))


main()
