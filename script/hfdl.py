# hfdl.py: the download script's helper, run by download.sh as
#
#   python3 hfdl.py plan <work>    before hf: the exact plan, and the space it needs
#   python3 hfdl.py hash <work>    while hf runs, in the background: hashes
#                                  the files as hf writes them (see hash_ahead)
#   python3 hfdl.py finish <work>  after hf: prune, verify, model card
#   python3 hfdl.py progress <work>        while hf runs, in the background: progress
#                                          reports to the API server (see report)
#   python3 hfdl.py progress-final <work>  after a successful download: one last report
#   python3 hfdl.py resolve <work>  a check (HFDL_RESYNC): the commit the revision names now
#   python3 hfdl.py stage <work>    the check found it moved: the staging directory
#   python3 hfdl.py swap <work>     the new commit complete there: into the model's place
#
# Python 3 with the standard library and huggingface_hub only. It reads its
# values from the environment (HFDL_*, exported by download.sh after checking
# them) and never from its arguments, which are the script's own temporary
# directory <work>: plan writes <work>/plan.json (the commit and every planned
# file with its size and hash) and both write their result to <work>/result,
# one value a line. Exit codes:
#
#   0  done: <work>/result holds the result
#   1  failed: <work>/reason holds the reason when the helper chose it, else
#      stderr ends with huggingface_hub's own "Error: ..." message, worded as
#      the hf CLI words it, which download.sh reads as it reads hf's
#   3  huggingface_hub cannot be imported: download.sh goes on without the helper
#
# The progress subcommands need neither huggingface_hub nor a plan (without
# one, the totals are 0: unknown), and never fail: they exit 0 whatever the
# API server does.
#
# HF_TOKEN is read by huggingface_hub itself; nothing here reads, prints or
# writes it. The progress reports' service account token is read from its
# file for every request and goes into the Authorization header only.

import hashlib
import json
import math
import os
import re
import shutil
import signal
import stat
import sys
import time

EXIT_NO_HUB = 3
PREFIX = "hf-download: "
MARKER = ".hf-download-complete.json"
LOCK = ".hf-download.lock"
# The Hub's 429s: retried this many times after the reset time the Hub gives,
# as huggingface_hub's own http_backoff does for the requests it retries.
RATE_LIMIT_RETRIES = 5
CARD_STRING_MAX = 64
# Bounds on what the model card reads, so that a huge or hostile file costs
# little: config.json and the index are small, a safetensors header is JSON
# of at most 100 MB by the format's own rule.
CONFIG_MAX = 1 << 20
INDEX_MAX = 16 << 20
HEADER_MAX = 100_000_000
README_MAX = 64 << 10
# Progress reports (see report): the file beside this helper that names the
# ConfigMap, where the token and CA are unless the env says otherwise, and how
# long a request to the API server may take.
PROGRESS_FILE = "progress"
PROGRESS_TOKEN = "/opt/hf-download/token"
PROGRESS_CA = "/opt/hf-download/ca.crt"
PROGRESS_TIMEOUT = 5
# A failure is logged when it is the first, then at most this often.
PROGRESS_LOG_EVERY = 60
CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length", "n_ctx", "max_sequence_length")


class Failure(Exception):
    """A reason of the helper's own: the rest of the line after FailedPrefix."""


def log(msg):
    print(PREFIX + msg, file=sys.stderr, flush=True)


def env_list(name):
    return [g for g in os.environ.get(name, "").split("\n") if g]


def local_path(root, rel):
    return os.path.join(root, *rel.split("/"))


def size_text(n):
    """Decimal units, one decimal: 16.1 GB, 9.8 GB, 2.0 MB."""
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= scale:
            return "%.1f %s" % (n / scale, unit)
    return "%d bytes" % n


def safe_rel(rel):
    """Whether a repo path stays inside the local dir, as hf checks it too."""
    parts = rel.split("/")
    return all(p not in ("", ".", "..") for p in parts)


def with_rate_limit(call):
    """call(), retried after the Hub's reset time while the Hub answers 429."""
    from huggingface_hub.errors import HfHubHTTPError
    from huggingface_hub.utils import parse_ratelimit_headers

    for attempt in range(1, RATE_LIMIT_RETRIES + 2):
        try:
            return call()
        except HfHubHTTPError as e:
            if e.response is None or e.response.status_code != 429:
                raise
            info = parse_ratelimit_headers(e.response.headers)
            reset = info.reset_in_seconds if info is not None and info.remaining == 0 else None
            if attempt > RATE_LIMIT_RETRIES:
                when = "the Hub's limit resets in %d s" % reset if reset is not None else "the Hub gave no reset time"
                raise Failure("rate limited by the Hub (HTTP 429) after %d retries; %s" % (RATE_LIMIT_RETRIES, when))
            wait = (reset if reset is not None else 2 ** (attempt - 1)) + 1
            log("rate limited by the Hub (HTTP 429); retrying in %d s [retry %d/%d]" % (wait, attempt, RATE_LIMIT_RETRIES))
            time.sleep(wait)


def still_to_fetch(root, rel, entry, force):
    """The bytes hf will write for one planned file: none for a file already
    there at its size (hf keeps it when it matches), else all of them, as hf
    never resumes a partial file of another run (it downloads each file to a
    name of its own process's, file_download.py's _download_to_tmp_and_move)."""
    if not force:
        try:
            st = os.lstat(local_path(root, rel))
            if stat.S_ISREG(st.st_mode) and st.st_size == entry["size"]:
                return 0
        except OSError:
            pass
    return entry["size"]


def plan(work):
    from huggingface_hub import HfApi
    from huggingface_hub.utils import filter_repo_objects

    repo, repo_type = os.environ["HFDL_REPO_ID"], os.environ["HFDL_REPO_TYPE"]
    revision, root = os.environ["HFDL_REVISION"], os.environ["HFDL_LOCAL_DIR"]
    include, exclude = env_list("HFDL_INCLUDE"), env_list("HFDL_EXCLUDE")

    # What snapshot_download does, with files_metadata: one request gives the
    # commit and every file's size and hash.
    info = with_rate_limit(
        lambda: HfApi().repo_info(repo, repo_type=repo_type, revision=revision, files_metadata=True, timeout=60)
    )
    if not info.sha:
        raise Failure("the Hub gave no commit for %s" % revision)
    files = {}
    for s in filter_repo_objects(
        items=info.siblings or [],
        allow_patterns=include or None,
        ignore_patterns=exclude or None,
        key=lambda s: s.rfilename,
    ):
        if not safe_rel(s.rfilename):
            raise Failure("the Hub lists a file with an unsafe path: %r" % s.rfilename)
        if s.lfs is not None:
            entry = {"size": s.lfs.size, "algorithm": "sha256", "hash": s.lfs.sha256.lower()}
        elif s.size is not None and s.blob_id:
            entry = {"size": s.size, "algorithm": "git-sha1", "hash": s.blob_id.lower()}
        else:
            raise Failure("the Hub gave no size or hash for %s" % s.rfilename)
        files[s.rfilename] = entry
    # An empty plan would prune the whole directory: a glob typo must not.
    if not files:
        why = "the include and exclude globs select none" if include or exclude else "the repo has none"
        raise Failure("no file to download at commit %s (%s)" % (info.sha, why))

    total = sum(f["size"] for f in files.values())
    force = os.environ.get("HFDL_FORCE") == "true"
    need = sum(still_to_fetch(root, rel, f, force) for rel, f in files.items())
    st = os.statvfs(root)
    free = st.f_bavail * st.f_frsize
    log(
        "plan: commit %s, %d files, %d bytes; %d bytes to fetch, %d free in %s"
        % (info.sha, len(files), total, need, free, root)
    )
    if need > free:
        # A revision change on a full volume: what the plan drops (pruned
        # after the download anyway) may make the room, if pruned first.
        reclaim = sum(size for _, _, size in unplanned(root, files))
        if need > free + reclaim:
            pvc = os.environ.get("HFDL_PVC", "")
            raise Failure("needs %s, %s free on %s" % (size_text(need), size_text(free), "PVC " + pvc if pvc else root))
        log("pruning before the download: %d bytes to fetch, %d free, %d in files not in the plan" % (need, free, reclaim))
        prune(root, files)

    with open(os.path.join(work, "plan.json"), "w") as f:
        json.dump({"commit": info.sha, "files": files}, f)
    return [info.sha]


def resolve(work):
    """The commit the revision names now: one request, for the revision
    without its files' metadata, and none for a file."""
    from huggingface_hub import HfApi

    repo, repo_type, revision = os.environ["HFDL_REPO_ID"], os.environ["HFDL_REPO_TYPE"], os.environ["HFDL_REVISION"]
    info = with_rate_limit(lambda: HfApi().repo_info(repo, repo_type=repo_type, revision=revision, timeout=60))
    if not info.sha:
        raise Failure("the Hub gave no commit for %s" % revision)
    return [info.sha]


# Resync. A check that finds the revision moved downloads the new commit into
# a staging directory beside the model's, on the same volume, seeded with
# hard links to the files there, and then exchanges the two directories.
RESYNC_DIR = ".hf-resync"
# renameat2's flag, from linux/fs.h.
RENAME_EXCHANGE = 2
AT_FDCWD = -100


def staging_dir(live):
    """Where a check of the model directory live stages the new commit:
    <mount>/.hf-resync/<a hash of live>, the mount being live without the
    repo id, so on the same file system and outside every model's directory."""
    repo = os.environ["HFDL_REPO_ID"]
    mount = live[: -len(repo) - 1] if live.endswith("/" + repo) else os.path.dirname(live)
    return os.path.join(mount, RESYNC_DIR, hashlib.sha256(os.fsencode(live)).hexdigest()[:32])


def stage(work):
    """Makes the staging directory of HFDL_LIVE_DIR: its directories, a hard
    link to each of its files (the lock's too: one lock for both, whichever
    path a download opens it by), its symlinks as symlinks, and a copy of
    hf's metadata, which hf rewrites in place. The marker stays behind: the
    download there writes its own. A staging directory left by a check that
    was stopped is removed first."""
    live = os.environ["HFDL_LIVE_DIR"]
    staging = staging_dir(live)
    os.makedirs(os.path.dirname(staging), exist_ok=True)
    if os.path.lexists(staging):
        log("removing %s, left by a check that was stopped" % staging)
        shutil.rmtree(staging)
    os.mkdir(staging)
    if os.stat(staging).st_dev != os.stat(live).st_dev:
        raise Failure("%s is not on the file system of %s, so the two cannot be exchanged" % (staging, live))
    links = 0
    for top, dirs, names in os.walk(live):
        rel = os.path.relpath(top, live)
        into = staging if rel == "." else os.path.join(staging, rel)
        cache = rel.split(os.sep)[0] == ".cache"
        for d in list(dirs):
            if os.path.islink(os.path.join(top, d)):
                dirs.remove(d)
                names.append(d)
            else:
                os.mkdir(os.path.join(into, d))
        for n in names:
            if rel == "." and (n == MARKER or n.startswith(MARKER + ".tmp.")):
                continue
            src, dst = os.path.join(top, n), os.path.join(into, n)
            st = os.lstat(src)
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(src), dst)
            elif not stat.S_ISREG(st.st_mode) or cache and n.endswith(".incomplete"):
                continue
            elif cache:
                shutil.copyfile(src, dst, follow_symlinks=False)
            else:
                os.link(src, dst, follow_symlinks=False)
                links += 1
    log("staged %d files of %s in %s" % (links, live, staging))
    return [staging]


def exchange(a, b):
    """Exchanges two paths in one step (renameat2 with RENAME_EXCHANGE):
    False where the C library, the kernel or the file system cannot."""
    import ctypes
    import errno

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    if renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), b)


def swap(work):
    """Puts the staging directory (HFDL_LOCAL_DIR), its download complete,
    in the place of the model's (HFDL_LIVE_DIR), and removes the old one.
    With RENAME_EXCHANGE the path names the old directory until it names the
    new one; without (NFS, say), two renames leave it naming nothing for the
    moment between them, never a mix. A TERM waits until the path names a
    whole directory again."""
    staging, live = os.environ["HFDL_LOCAL_DIR"], os.environ["HFDL_LIVE_DIR"]
    term = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        if exchange(staging, live):
            old, how = staging, "in one step (RENAME_EXCHANGE)"
        else:
            old, how = staging + ".old", "by two renames (this file system cannot exchange two paths in one step)"
            if os.path.lexists(old):
                shutil.rmtree(old)
            os.rename(live, old)
            try:
                os.rename(staging, live)
            except OSError:
                os.rename(old, live)
                raise
    finally:
        signal.signal(signal.SIGTERM, term)
    log("switched %s to the new commit %s" % (live, how))
    try:
        shutil.rmtree(old)
    except OSError as e:
        # The switch is done: what is left is removed by the next check.
        log("warning: cannot remove the old files in %s: %s" % (old, e))
    return []


def unplanned(root, files):
    """(relative path, path, bytes) of every file and symlink under root that
    the plan does not hold, never following a symlink; hf's .cache, the
    marker and the lock are not looked at."""
    keep = {".cache", MARKER, LOCK}
    for top, dirs, names in os.walk(root):
        rel_top = os.path.relpath(top, root)
        rel_top = "" if rel_top == "." else rel_top.replace(os.sep, "/") + "/"
        if not rel_top:
            names = [n for n in names if n not in keep]
            dirs[:] = [d for d in dirs if d not in keep]
        # os.walk lists a symlink to a directory among dirs, without entering it.
        for d in [d for d in dirs if os.path.islink(os.path.join(top, d))]:
            dirs.remove(d)
            names.append(d)
        for n in names:
            if rel_top + n not in files:
                path = os.path.join(top, n)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                yield rel_top + n, path, st.st_size if stat.S_ISREG(st.st_mode) else 0


def prune(root, files):
    """Removes what is not planned, never following a symlink, and the
    directories left empty; hf's .cache, the marker and the lock stay."""
    for rel, path, _ in list(unplanned(root, files)):
        try:
            os.unlink(path)
            log("removed %s (not in the plan)" % rel)
        except OSError as e:
            log("warning: cannot remove %s: %s" % (path, e))
    for top, dirs, _ in os.walk(root, topdown=False):
        if top == root:
            continue
        rel_top = os.path.relpath(top, root).replace(os.sep, "/")
        if rel_top == ".cache" or rel_top.startswith(".cache/") or os.path.islink(top):
            continue
        try:
            os.rmdir(top)  # only when empty
        except OSError:
            pass


def file_hash(path, algorithm, size):
    """The file's hash as the Hub gives it: sha256 for an LFS file, git's blob
    id for another (huggingface_hub's compute_file_hash, without importing the
    third of a second that it costs)."""
    if algorithm == "sha256":
        h = hashlib.sha256()
    elif algorithm == "git-sha1":
        h = hashlib.sha1(b"blob %d\0" % size, usedforsecurity=False)
    else:
        raise Failure("the plan names the unknown hash algorithm %r" % algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(HASH_READ):
            h.update(chunk)
    return h.hexdigest()


def verify(root, files, ahead, earlier):
    """Checks every planned file against the Hub's size and hash; a file that
    fails is removed with hf's metadata of it, so that a retry downloads it
    again, and the first one is the reason. A file that hash_ahead hashed as
    hf wrote it, or that an earlier run verified (earlier, see
    load_verified), and that is still that file (the same device, inode,
    size and modification time), is not read again; it returns how many of
    each were not."""
    reasons = []
    reused = kept = 0
    for rel in sorted(files):
        f = files[rel]
        path = local_path(root, rel)
        try:
            st = os.lstat(path)
        except OSError:  # not there, or a parent is not a directory
            reasons.append("%s is missing" % rel)
            continue
        if not stat.S_ISREG(st.st_mode):
            reasons.append("%s is not a regular file" % rel)
        else:
            key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            if st.st_size == f["size"] and ahead.get(key) == f["hash"]:
                reused += 1
                continue
            if st.st_size == f["size"] and earlier.get(key) == f["hash"]:
                kept += 1
                continue
            got = file_hash(path, f["algorithm"], st.st_size)
            if got == f["hash"] and st.st_size == f["size"]:
                continue
            reasons.append("%s has %s %s, the Hub says %s" % (rel, f["algorithm"], got, f["hash"]))
        for p in (path, local_path(os.path.join(root, ".cache", "huggingface", "download"), rel + ".metadata")):
            try:
                os.unlink(p)
            except OSError:
                pass
    for r in reasons:
        log("verification failed: " + r)
    if reasons:
        raise Failure("verification failed: " + reasons[0])
    return reused, kept


# What a run verified is kept in the model's directory, under .cache (which
# prune and the completion marker leave alone): each file's hash by its
# (device, inode, size, modification time). A check that stages a moved
# revision's new commit beside hard links to these files (stage copies
# .cache) then reads again only what hf wrote, not the files that did not
# change: a 100 GB model whose README moved is verified in seconds. It
# trusts those files as the check trusts the marker when nothing moved;
# every other run reads every file, so that a file changed in place with its
# old times is still caught.
VERIFIED = os.path.join(".cache", "huggingface", "hf-download-verified.json")


def load_verified(root):
    """What an earlier run of root verified; nothing when none did."""
    try:
        with open(os.path.join(root, VERIFIED)) as f:
            return {(d, i, s, m): h for d, i, s, m, h in json.load(f)}
    except (OSError, ValueError, TypeError):
        return {}


def save_verified(root, files):
    """Records what this run verified (see VERIFIED); a failure to is only
    logged, as the next run then reads those files again."""
    path = os.path.join(root, VERIFIED)
    try:
        entries = []
        for rel, f in sorted(files.items()):
            st = os.lstat(local_path(root, rel))
            entries.append([st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, f["hash"]])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path + ".tmp", "w") as out:
            json.dump(entries, out)
        os.replace(path + ".tmp", path)
    except OSError as e:
        log("warning: cannot record the verification in %s: %s" % (path, e))


# Hashing while hf writes. Verifying after hf reads every byte again: for a
# model of one large file that is a fifth of the download's time. So beside
# hf, hash_ahead reads each LFS file's partial file as it grows, and the
# verification trusts what it found for a file that is still what was read.
HASH_READ = 8 << 20  # bytes read at a time: hashlib then works without the GIL
HASH_POLL = 0.05  # seconds between looks when nothing grew
HASHED_AHEAD = "hashed-ahead.json"
HF_ENDED = "hf-ended"


def hash_ahead(work):
    """Hashes the plan's sha256 files while hf writes them, until download.sh
    says hf ended (the file <work>/hf-ended) and nothing more grows; then
    writes <work>/hashed-ahead.json. hf writes a file to
    .cache/huggingface/download/<dir>/<hash>.<etag>.<random>.incomplete, the
    etag an LFS file's sha256, and renames it when done; the partial file is
    read from its start as it grows, and a file whose bytes, once all there,
    hash to its etag is recorded by its inode, size and modification time
    then. Bytes not yet written when read (a writer out of order) give another
    hash, which is not recorded: finish then reads that file again. Never
    fails the download: on any error it records nothing more."""
    files = load_plan(work) or {}
    sizes = {f["hash"]: f["size"] for f in files.values() if f["algorithm"] == "sha256"}
    root = os.environ["HFDL_LOCAL_DIR"]
    partial_dir = os.path.join(root, ".cache", "huggingface", "download")
    parent = os.getppid()
    following = {}  # partial path -> [fd, etag, hasher, offset]
    seen = set()
    hashed = []
    try:
        while os.getppid() == parent:
            ended = os.path.exists(os.path.join(work, HF_ENDED))
            for top, _, names in os.walk(partial_dir):
                for n in names:
                    parts = n.split(".")
                    path = os.path.join(top, n)
                    if n.endswith(".incomplete") and path not in seen and len(parts) >= 3 and parts[1] in sizes:
                        seen.add(path)
                        try:
                            fd = os.open(path, os.O_RDONLY)
                        except OSError:
                            continue
                        following[path] = [fd, parts[1], hashlib.sha256(), 0]
            grew = False
            for path, state in list(following.items()):
                fd, etag, h, offset = state
                size = os.fstat(fd).st_size
                chunk = os.pread(fd, min(HASH_READ, size - offset), offset) if offset < size else b""
                if chunk:
                    grew = True
                    h.update(chunk)
                    state[3] = offset = offset + len(chunk)
                if offset >= sizes[etag] or (ended and not chunk):
                    st = os.fstat(fd)
                    if offset == sizes[etag] == st.st_size and h.hexdigest() == etag:
                        hashed.append([st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, etag])
                    os.close(fd)
                    del following[path]
            if ended and not grew and not following:
                break
            if not grew:
                time.sleep(HASH_POLL)
    except OSError:
        pass
    tmp = os.path.join(work, HASHED_AHEAD + ".tmp")
    with open(tmp, "w") as f:
        json.dump(hashed, f)
    os.replace(tmp, os.path.join(work, HASHED_AHEAD))


def load_hashed_ahead(work):
    """What hash_ahead recorded: the sha256 by (device, inode, size,
    modification time); nothing when it did not run or wrote nothing."""
    try:
        with open(os.path.join(work, HASHED_AHEAD)) as f:
            return {(d, i, s, m): h for d, i, s, m, h in json.load(f)}
    except (OSError, ValueError, TypeError):
        return {}


def card_string(v):
    if not isinstance(v, str):
        return ""
    return "".join(c for c in v if " " <= c <= "~")[:CARD_STRING_MAX]


def card_int(v):
    return v if isinstance(v, int) and not isinstance(v, bool) and 0 < v < 1 << 63 else 0


def read_bounded(path, limit, head=False):
    """The bytes of a regular file of at most limit bytes, or with head its
    first limit bytes whatever its size."""
    st = os.lstat(path)
    if not stat.S_ISREG(st.st_mode) or (st.st_size > limit and not head):
        raise ValueError("not a regular file of at most %d bytes" % limit)
    with open(path, "rb") as f:
        return f.read(limit)


def safetensors_parameters(path):
    """The sum of the products of the tensors' shapes, from the header alone."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        if n <= 0 or n > HEADER_MAX:
            raise ValueError("bad header length")
        header = json.loads(f.read(n))
    total = 0
    for name, t in header.items():
        if name == "__metadata__":
            continue
        count = 1
        for dim in t["shape"]:
            if not isinstance(dim, int) or isinstance(dim, bool) or dim < 0:
                raise ValueError("bad shape in %s" % path)
            count *= dim
        total += count
    return total


def parameters(root, files):
    present = [rel for rel in files if os.path.isfile(local_path(root, rel))]
    shards = None
    if "model.safetensors.index.json" in present:
        index = json.loads(read_bounded(local_path(root, "model.safetensors.index.json"), INDEX_MAX))
        n = card_int((index.get("metadata") or {}).get("total_parameters"))
        if n:
            return n
        shards = sorted(set((index.get("weight_map") or {}).values()))
    if shards is None:
        weights = [rel for rel in present if rel.endswith(".safetensors")]
        shards = [rel for rel in weights if "/" not in rel] or weights
    if not shards or any(rel not in present for rel in shards):
        return 0
    return card_int(sum(safetensors_parameters(local_path(root, rel)) for rel in shards))


def license_of(root):
    """license: in the front matter of README.md, as the Hub reads it."""
    import yaml

    text = read_bounded(local_path(root, "README.md"), README_MAX, head=True).decode("utf-8", "replace")
    lines = text.replace("\r\n", "\n").split("\n")
    if not lines or lines[0].strip() != "---":
        return ""
    for i in range(1, len(lines)):
        if lines[i].strip() == "---":
            meta = yaml.safe_load("\n".join(lines[1:i]))
            v = meta.get("license") if isinstance(meta, dict) else None
            if isinstance(v, list) and v:
                v = v[0]
            return card_string(v)
    return ""


def model_card(root, files):
    """What the serving stack needs, from the downloaded files only; each part
    that cannot be read is left out, never a failure."""
    card = {}

    def attempt(what, fn):
        try:
            fn()
        except Exception as e:
            log("model card: cannot read %s: %s" % (what, card_string(str(e))))

    def config():
        cfg = json.loads(read_bounded(local_path(root, "config.json"), CONFIG_MAX))
        if not isinstance(cfg, dict):
            return
        archs = cfg.get("architectures")
        card["architecture"] = card_string(archs[0]) if isinstance(archs, list) and archs else ""
        card["modelType"] = card_string(cfg.get("model_type"))
        card["dtype"] = card_string(cfg.get("torch_dtype") or cfg.get("dtype"))
        for c in (cfg, cfg.get("text_config")):
            if isinstance(c, dict) and not card.get("contextLength"):
                card["contextLength"] = next((card_int(c[k]) for k in CONTEXT_KEYS if card_int(c.get(k))), 0)

    def params():
        card["parameters"] = parameters(root, files)

    def lic():
        card["license"] = license_of(root)

    if "config.json" in files:
        attempt("config.json", config)
    attempt("the safetensors parameters", params)
    if "README.md" in files:
        attempt("README.md", lic)
    card = {k: card[k] for k in ("architecture", "modelType", "dtype", "contextLength", "parameters", "license") if card.get(k)}
    return json.dumps(card, separators=(",", ":")) if card else "null"


def finish(work):
    root = os.environ["HFDL_LOCAL_DIR"]
    with open(os.path.join(work, "plan.json")) as f:
        files = json.load(f)["files"]
    prune(root, files)
    started = time.monotonic()
    earlier = load_verified(root) if os.environ.get("HFDL_LIVE_DIR") else {}
    reused, kept = verify(root, files, load_hashed_ahead(work), earlier)
    log(
        "verified %d files against the Hub's hashes in %.2f s (%d hashed as hf wrote them)"
        % (len(files), time.monotonic() - started, reused)
    )
    if kept:
        log("%d of them unchanged since an earlier run verified them: not read again" % kept)
    save_verified(root, files)
    return [str(len(files)), str(sum(f["size"] for f in files.values())), model_card(root, files)]

# Progress reports. The ConfigMap that PROGRESS_FILE names: a namespace is a
# DNS label, a ConfigMap's name a DNS subdomain, a data key the content hash.
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
CONFIGMAP_KEY = re.compile(r"[-._a-zA-Z0-9]{1,253}")
# What a bearer token may hold (a JWT's characters, and more): printable
# ASCII without spaces, so that it can never break the header it goes in.
TOKEN = re.compile(r"[!-~]+")


class ReportFailed(Exception):
    """Why a progress report was not taken; never holds the token."""


class Reporter:
    """The progress ConfigMap at the in-cluster API server: where reports go,
    and how. download.sh starts the reporter only once it has checked that
    the file, the token and the CA are there."""

    def __init__(self):
        here = os.path.dirname(os.path.abspath(__file__))
        with open(os.path.join(here, PROGRESS_FILE)) as f:
            self.target = f.read().strip()
        ns, _, name = self.target.partition("/")
        if not DNS_LABEL.fullmatch(ns) or not DNS_SUBDOMAIN.fullmatch(name):
            raise ValueError("%s does not name a ConfigMap as <namespace>/<name>" % PROGRESS_FILE)
        self.path = "/api/v1/namespaces/%s/configmaps/%s" % (ns, name)
        self.key = os.environ.get("HFDL_CONTENT_HASH", "")
        if not CONFIGMAP_KEY.fullmatch(self.key):
            raise ValueError("HFDL_CONTENT_HASH is not a ConfigMap key")
        self.token_path = os.environ.get("HFDL_PROGRESS_TOKEN") or PROGRESS_TOKEN
        self.ca = os.environ.get("HFDL_PROGRESS_CA") or PROGRESS_CA
        # http.client brackets an IPv6 address in the Host header itself.
        self.host = os.environ.get("KUBERNETES_SERVICE_HOST", "").strip("[]")
        self.port = int(os.environ.get("KUBERNETES_SERVICE_PORT", ""))
        if not self.host:
            raise ValueError("KUBERNETES_SERVICE_HOST is not set")

    def send(self, progress):
        """One JSON merge patch of the ConfigMap's key, within
        PROGRESS_TIMEOUT; ReportFailed says why it was not taken. The token is
        read now (projected tokens rotate), and so is the CA."""
        import http.client
        import ssl

        value = json.dumps(progress, separators=(",", ":"))
        body = json.dumps({"data": {self.key: value}}, separators=(",", ":")).encode()
        try:
            with open(self.token_path, "rb") as f:
                token = f.read(64 << 10).decode("ascii", "replace").strip()
        except OSError as e:
            raise ReportFailed("cannot read the token file %s: %s" % (self.token_path, e.strerror)) from None
        if not TOKEN.fullmatch(token):
            raise ReportFailed("the token file %s holds no token" % self.token_path)
        deadline = time.monotonic() + PROGRESS_TIMEOUT

        def left():
            return max(0.1, deadline - time.monotonic())

        conn = None
        try:
            ctx = ssl.create_default_context(cafile=self.ca)
            conn = http.client.HTTPSConnection(self.host, self.port, context=ctx, timeout=PROGRESS_TIMEOUT)
            conn.connect()
            conn.sock.settimeout(left())
            conn.request(
                "PATCH",
                self.path,
                body=body,
                headers={
                    "Authorization": "Bearer " + token,
                    "Content-Type": "application/merge-patch+json",
                    "Accept": "application/json",
                },
            )
            conn.sock.settimeout(left())
            resp = conn.getresponse()
            resp.read(1 << 20)
            status, reason = resp.status, resp.reason
        except Exception as e:
            # What went wrong, without anything that could hold the token.
            why = ("%s: %s" % (type(e).__name__, e)).replace(token, "[token]")
            raise ReportFailed(why) from None
        finally:
            if conn is not None:
                conn.close()
        if not 200 <= status < 300:
            raise ReportFailed("HTTP %d %s" % (status, reason))


def load_plan(work):
    """The plan's files, or None without a plan."""
    try:
        with open(os.path.join(work, "plan.json")) as f:
            return json.load(f)["files"]
    except (OSError, ValueError, KeyError):
        return None


def on_disk(root, files):
    """(bytes, files) of the download on disk: the planned files there at
    their full size (without a plan, every regular file but hf's .cache, the
    marker and the lock), plus the bytes of hf's partial files."""
    done_bytes = done_files = 0
    if files is None:
        keep = {".cache", MARKER, LOCK}
        for top, dirs, names in os.walk(root):
            if top == root:
                dirs[:] = [d for d in dirs if d not in keep]
                names = [n for n in names if n not in keep and not n.startswith(MARKER + ".tmp.")]
            for n in names:
                try:
                    st = os.lstat(os.path.join(top, n))
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    done_files += 1
                    done_bytes += st.st_size
    else:
        for rel, f in files.items():
            try:
                st = os.lstat(local_path(root, rel))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and st.st_size == f["size"]:
                done_files += 1
                done_bytes += f["size"]
    # hf writes each file to <hash>.<etag>.<random>.incomplete there, and
    # renames it when done; download.sh removed older runs' before hf started.
    for top, _, names in os.walk(os.path.join(root, ".cache", "huggingface", "download")):
        for n in names:
            if n.endswith(".incomplete"):
                try:
                    done_bytes += os.lstat(os.path.join(top, n)).st_size
                except OSError:
                    pass
    return done_bytes, done_files


def utc(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def report(work, final):
    """Reports progress: with final, once, the download done; otherwise every
    HFDL_PROGRESS_INTERVAL seconds, the first at once, each only when bytes or
    files changed since the last report taken, until download.sh stops it (or
    it finds download.sh gone). A report not taken is tried again at the next
    interval, and logged the first time and then at most once a minute."""
    try:
        rep = Reporter()
    except (OSError, ValueError) as e:
        log("warning: progress is not reported: %s" % e)
        return
    root = os.environ["HFDL_LOCAL_DIR"]
    files = load_plan(work)
    total_bytes = sum(f["size"] for f in files.values()) if files else 0
    total_files = len(files) if files else 0
    attempt = os.environ.get("HOSTNAME", "")

    def value(done, n, rate, updated):
        eta = math.ceil((total_bytes - done) / rate) if rate > 0 and total_bytes > 0 else 0
        return {
            "bytes": done,
            "totalBytes": total_bytes,
            "files": n,
            "totalFiles": total_files,
            "bytesPerSecond": round(rate),
            "etaSeconds": eta,
            "updated": utc(updated),
            "attempt": attempt,
        }

    if final:
        done, n = on_disk(root, files)
        if files is None:
            # Done: what is there is all there is.
            total_bytes, total_files = done, n
        try:
            rep.send(value(done, n, 0, time.time()))
        except ReportFailed as e:
            log("warning: cannot send the final progress report to %s: %s" % (rep.target, e))
        return

    interval = int(os.environ.get("HFDL_PROGRESS_INTERVAL") or "15")
    parent = os.getppid()
    sent = seen = prev = None
    updated = time.time()
    failures, logged = 0, None
    while True:
        # Each round starts an interval after the last one started, at least.
        tick = time.monotonic() + interval
        done, n = on_disk(root, files)
        if total_bytes:
            done = min(done, total_bytes)
        if seen is not None and (done, n) != seen:
            updated = time.time()
        seen = (done, n)
        now = time.monotonic()
        # Over the last interval: hf may rename as it goes, never below 0.
        rate = max(0, done - prev[1]) / (now - prev[0]) if prev is not None and now > prev[0] else 0
        prev = (now, done)
        if seen != sent:
            try:
                rep.send(value(done, n, rate, updated))
            except ReportFailed as e:
                failures += 1
                if logged is None or now - logged >= PROGRESS_LOG_EVERY:
                    log(
                        "warning: cannot report progress to %s (%d failed so far): %s; trying again every %d s"
                        % (rep.target, failures, e, interval)
                    )
                    logged = now
            else:
                if failures:
                    log("progress reported to %s again, after %d failed reports" % (rep.target, failures))
                failures, logged, sent = 0, None, seen
            # And an interval after this one's answer (or failure): the API
            # server never gets two reports closer than that.
            tick = max(tick, time.monotonic() + interval)
        time.sleep(max(0, tick - time.monotonic()))
        if os.getppid() != parent:
            return


def volume_step(what, step):
    """step, whose failure on the volume is a reason: what, and the error."""

    def run(work):
        try:
            return step(work)
        except OSError as e:
            raise Failure("%s: %s" % (what, e)) from None

    return run


# The steps that may fail the run, each writing its result (see the top).
STEPS = {
    "plan": plan,
    "finish": finish,
    "resolve": resolve,
    "stage": volume_step("cannot stage the new commit", stage),
    "swap": volume_step("cannot switch to the new commit", swap),
}


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in STEPS and sys.argv[1] not in ("hash", "progress", "progress-final"):
        print("usage: hfdl.py plan|hash|finish|progress|progress-final|resolve|stage|swap <work dir>", file=sys.stderr)
        return 2
    work = sys.argv[2]
    if sys.argv[1] == "hash":
        hash_ahead(work)
        return 0
    if sys.argv[1] in ("progress", "progress-final"):
        try:
            report(work, sys.argv[1] == "progress-final")
        except Exception as e:  # a reporter's failure is never the download's
            log("warning: progress reports stopped: %s" % type(e).__name__)
        return 0
    try:
        import huggingface_hub  # noqa: F401
    except ImportError as e:
        log("cannot import huggingface_hub: %s" % e)
        return EXIT_NO_HUB
    try:
        result = STEPS[sys.argv[1]](work)
    except Failure as e:
        with open(os.path.join(work, "reason"), "w") as f:
            f.write(str(e) + "\n")
        return 1
    except Exception as e:
        # huggingface_hub's errors, worded as the hf CLI words them.
        try:
            from huggingface_hub.cli._errors import format_known_exception

            message = format_known_exception(e)
        except Exception:
            message = None
        if message is None:
            raise
        print("Error: " + message, file=sys.stderr, flush=True)
        return 1
    with open(os.path.join(work, "result"), "w") as f:
        f.write("".join(line + "\n" for line in result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
