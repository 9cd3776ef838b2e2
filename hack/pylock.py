#!/usr/bin/env python3
"""pylock.py: a hashed pip lock file from exact pins, with the standard library only.

    python3 pylock.py PINS -o requirements.txt [--python 3.11 --python 3.13]
                      [--arch x86_64 --arch aarch64] [--glibc 2.36] [--musl]
                      [--index https://pypi.org] [--no-check]

PINS holds the resolved set, one `name==version` a line, `#` starting a comment.
A pin may carry an environment marker after `;` (kept in the lock, where pip
skips a line whose marker is false): then it applies only to the targets whose
Python and architecture make the marker true, so that two pins of one name
with exclusive markers can serve different Pythons (filelock==4.3.2 ;
python_version >= "3.11" beside filelock==4.1.0 ; python_version < "3.11"). For each pin the script asks
the index's JSON API for that release's files and writes

    name==version \\
        --hash=sha256:... \\
        ...

with the sha256 of every wheel that a target can install: pure-Python wheels,
and binary wheels of CPython's `cp3X` ABI (or `abi3`) for the given Pythons,
`manylinux*` (and with --musl `musllinux*`) for the given architectures. The
sdist's hash is added only when some target has no wheel at all. The output is
what `pip install --require-hashes --no-deps -r requirements.txt` reads.

It also checks that PINS is closed: on every target, every dependency that a
pin's metadata requires there (markers evaluated for that Python and
architecture, no extras) is pinned, at a version the requirement allows, and
each pin's Requires-Python admits the target's Python. It does not resolve: get
the pins from `pip install --dry-run --report` run by each target Python (pip's
--python-version picks wheels for another Python but still evaluates markers
for the one running pip, so it misses e.g. tomli on 3.10) and feed them here.

The release's files and hashes come from /pypi/<name>/<version>/json, or, where
an index serves only the project's JSON (/pypi/<name>/json; some mirrors and
proxies answer 404 to the per-version URL), from that JSON's "releases" table.
Requires-Dist is read from a wheel's own METADATA, as pip reads it: the JSON
API's info.requires_dist is the metadata of the first file uploaded and can be
wrong for the wheels (httpx2 2.16.2's says httpcore2==2.16.0, its wheel says
==2.16.2). It comes from the wheel's PEP 658 .metadata file where the index has
one, else from the smallest wheel, downloaded and checked against its sha256.
"""

import argparse
import hashlib
import io
import json
import re
import shlex
import sys
import urllib.error
import urllib.parse
import urllib.request
import zipfile

UA = "pylock.py (urllib)"
TIMEOUT = 60


def normalize(name):
    return re.sub(r"[-_.]+", "-", name).lower()


# ---- PEP 440 versions and specifiers, enough for dependency metadata ----------

VERSION_RE = re.compile(
    r"^\s*v?(?:(\d+)!)?(\d+(?:\.\d+)*)"
    r"(?:[-_.]?(a|b|c|rc|alpha|beta|pre|preview)[-_.]?(\d*))?"
    r"(?:-(\d+)|[-_.]?(?:post|rev|r)[-_.]?(\d*))?"
    r"(?:[-_.]?dev[-_.]?(\d*))?"
    r"(?:\+[a-z0-9.]+)?\s*$",
    re.I,
)
PRE = {"a": 0, "alpha": 0, "b": 1, "beta": 1, "c": 2, "rc": 2, "pre": 2, "preview": 2}
INF = float("inf")


class Version:
    def __init__(self, text):
        m = VERSION_RE.match(text)
        if not m:
            raise ValueError("not a PEP 440 version: %r" % text)
        epoch, rel, pre_l, pre_n, post_a, post_b, dev = m.groups()
        self.release = tuple(int(x) for x in rel.split("."))
        while len(self.release) > 1 and self.release[-1] == 0:
            self.release = self.release[:-1]
        self.raw_release = tuple(int(x) for x in rel.split("."))
        self.is_pre = pre_l is not None or dev is not None
        post = post_a if post_a is not None else post_b
        pre = (PRE[pre_l.lower()], int(pre_n or 0)) if pre_l else None
        # Ordering: dev < pre < final < post.
        if pre is None and post is None and dev is not None:
            pre_key = (-INF, 0)
        elif pre is None:
            pre_key = (INF, 0)
        else:
            pre_key = pre
        post_key = -INF if post is None else int(post or 0)
        dev_key = INF if dev is None else int(dev or 0)
        self.key = (int(epoch or 0), self.release, pre_key, post_key, dev_key)

    def __lt__(self, o):
        return self.key < o.key

    def __eq__(self, o):
        return self.key == o.key

    def __le__(self, o):
        return self.key <= o.key


def spec_allows(spec, version_text):
    """Whether a PEP 440 specifier set ('>=1.0,<2') admits a version."""
    v = Version(version_text)
    for clause in filter(None, (c.strip() for c in spec.split(","))):
        m = re.match(r"(===|==|!=|~=|>=|<=|>|<)\s*(.+)$", clause)
        if not m:
            raise ValueError("bad specifier %r" % clause)
        op, rhs = m.group(1), m.group(2).strip()
        if op == "===":
            ok = version_text == rhs
        elif op in ("==", "!=") and rhs.endswith(".*"):
            prefix = tuple(int(x) for x in rhs[:-2].split("."))
            ok = v.raw_release[: len(prefix)] + (0,) * max(0, len(prefix) - len(v.raw_release)) == prefix
            ok = ok if op == "==" else not ok
        else:
            w = Version(rhs)
            if op == "==":
                ok = v == w
            elif op == "!=":
                ok = not v == w
            elif op == ">=":
                ok = w <= v
            elif op == "<=":
                ok = v <= w
            elif op == ">":
                ok = w < v and not (v.release == w.release and v.key[3] != -INF and w.key[3] == -INF)
            elif op == "<":
                ok = v < w and not (v.is_pre and not w.is_pre and v.release == w.release)
            else:  # ~=
                prefix = w.raw_release[:-1]
                ok = w <= v and v.raw_release[: len(prefix)] == prefix
        if not ok:
            return False
    return True


# ---- PEP 508 markers ------------------------------------------------------------

MARKER_TOKEN = re.compile(
    r"\s*(?:(?P<str>'[^']*'|\"[^\"]*\")|(?P<op>===|==|!=|~=|>=|<=|<|>|\(|\))"
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_.]*))"
)
VERSION_VARS = {"python_version", "python_full_version", "implementation_version", "platform_release"}


def marker_tokens(text):
    pos, out = 0, []
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = MARKER_TOKEN.match(text, pos)
        if not m:
            raise ValueError("bad marker %r at %d" % (text, pos))
        pos = m.end()
        if m.group("str") is not None:
            out.append(("str", m.group("str")[1:-1]))
        elif m.group("op") is not None:
            out.append(("op", m.group("op")))
        else:
            out.append(("word", m.group("word")))
    return out


def eval_marker(text, env):
    toks = marker_tokens(text)
    i = 0

    def peek():
        return toks[i] if i < len(toks) else (None, None)

    def take():
        nonlocal i
        i += 1
        return toks[i - 1]

    def value():
        kind, v = take()
        if kind == "str":
            return ("lit", v)
        if kind == "word":
            if v not in env:
                raise ValueError("unknown marker variable %r" % v)
            return ("var", v)
        raise ValueError("bad marker %r" % text)

    def compare():
        if peek() == ("op", "("):
            take()
            r = disj()
            if take() != ("op", ")"):
                raise ValueError("bad marker %r" % text)
            return r
        left = value()
        kind, op = take()
        if kind == "word" and op == "not":
            if take() != ("word", "in"):
                raise ValueError("bad marker %r" % text)
            op = "not in"
        elif not (kind == "op" or (kind == "word" and op == "in")):
            raise ValueError("bad marker %r" % text)
        right = value()
        var = left[1] if left[0] == "var" else right[1] if right[0] == "var" else None
        lv = env[left[1]] if left[0] == "var" else left[1]
        rv = env[right[1]] if right[0] == "var" else right[1]
        if var == "extra":
            lv, rv = normalize(lv), normalize(rv)
        if op == "in":
            return lv in rv
        if op == "not in":
            return lv not in rv
        if var in VERSION_VARS and left[0] == "var":
            try:
                return spec_allows(op + rv, lv)
            except ValueError:
                pass
        return {
            "==": lv == rv, "!=": lv != rv, "<": lv < rv, "<=": lv <= rv,
            ">": lv > rv, ">=": lv >= rv, "===": lv == rv, "~=": lv == rv,
        }[op]

    def conj():
        r = compare()
        while peek() == ("word", "and"):
            take()
            r = compare() and r
        return r

    def disj():
        r = conj()
        while peek() == ("word", "or"):
            take()
            r = conj() or r
        return r

    r = disj()
    if i != len(toks):
        raise ValueError("bad marker %r" % text)
    return r


def parse_requirement(line):
    """(name, extras, specifier, marker) of a Requires-Dist line."""
    req, _, marker = line.partition(";")
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*\(?([^)]*)\)?\s*$", req)
    if not m:
        raise ValueError("cannot read the requirement %r" % line)
    return m.group(1), m.group(2) or "", m.group(3).strip(), marker.strip()


# ---- wheel tags -------------------------------------------------------------------


def wheel_tags(filename):
    """The (python, abi, platform) tags a wheel's name expands to."""
    parts = filename[: -len(".whl")].split("-")
    if len(parts) not in (5, 6):
        raise ValueError("not a wheel name: %s" % filename)
    py, abi, plat = parts[-3:]
    return [(p, a, q) for p in py.split(".") for a in abi.split(".") for q in plat.split(".")]


def glibc_of(plat, arch):
    """(major, minor) of glibc that a manylinux platform tag needs, or None."""
    legacy = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
    for k, v in legacy.items():
        if plat == "%s_%s" % (k, arch):
            return v
    m = re.fullmatch(r"manylinux_(\d+)_(\d+)_" + re.escape(arch), plat)
    return (int(m.group(1)), int(m.group(2))) if m else None


def tag_fits(tag, py, arch, libc):
    """Whether one (python, abi, platform) tag installs on CPython py (3, X),
    on Linux arch with libc ('glibc', (2, N)) or ('musl', None)."""
    ptag, abi, plat = tag
    minor = py[1]
    if plat == "any":
        pass
    elif libc[0] == "glibc":
        need = glibc_of(plat, arch)
        if need is None or (libc[1] is not None and need > libc[1]):
            return False
    else:
        if not re.fullmatch(r"musllinux_\d+_\d+_" + re.escape(arch), plat):
            return False
    m = re.fullmatch(r"(py|cp)(\d)(\d*)", ptag)
    if not m or m.group(2) != "3":
        return False
    kind, tminor = m.group(1), int(m.group(3)) if m.group(3) else None
    if abi == "none":
        # py3, py3X (X at most ours), cp3X (ours exactly).
        if kind == "py":
            return tminor is None or tminor <= minor
        return tminor == minor
    if kind != "cp" or tminor is None:
        return False
    if abi == "abi3":
        return tminor <= minor
    return abi == "cp3%d" % minor and tminor == minor


# ---- the index ------------------------------------------------------------------


def get_json(url, accept="application/json"):
    req = urllib.request.Request(url, headers={"Accept": accept, "User-Agent": UA})
    with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
        return json.load(r)


def get_bytes(url):
    req = urllib.request.Request(url, headers={"User-Agent": UA})
    with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
        return r.read()


class Release:
    """One release's files (filename, sha256, url, requires_python, yanked)
    and its Requires-Dist."""

    def __init__(self, index, name, version):
        self.name, self.version = name, version
        base = index.rstrip("/")
        url = "%s/pypi/%s/%s/json" % (base, urllib.parse.quote(name), urllib.parse.quote(version))
        self.source = url
        self._requires = None
        try:
            d = get_json(url)
            files = d["urls"]
            self.requires_python = d["info"].get("requires_python") or ""
        except urllib.error.HTTPError as e:
            if e.code != 404:
                raise
            url = "%s/pypi/%s/json" % (base, urllib.parse.quote(name))
            self.source = url
            d = get_json(url)
            if version not in d.get("releases", {}):
                raise SystemExit("pylock.py: %s has no release %s at %s" % (name, version, url)) from None
            files = d["releases"][version]
            self.requires_python = ""
        self.files = []
        for f in files:
            sha = (f.get("digests") or {}).get("sha256")
            if not sha:
                raise SystemExit("pylock.py: %s has no sha256 at %s" % (f.get("filename"), self.source))
            self.files.append(
                {
                    "filename": f["filename"],
                    "sha256": sha,
                    "url": urllib.parse.urljoin(url, f["url"]),
                    "requires_python": f.get("requires_python") or "",
                    "yanked": bool(f.get("yanked")),
                    "size": f.get("size") or 0,
                }
            )
        if not self.requires_python:
            self.requires_python = next((f["requires_python"] for f in self.files if f["requires_python"]), "")

    def requires(self):
        if self._requires is None:
            wheels = sorted((f for f in self.files if f["filename"].endswith(".whl")), key=lambda f: f["size"])
            if not wheels:
                raise SystemExit("pylock.py: %s %s has no wheel to read its metadata from" % (self.name, self.version))
            f = wheels[0]
            try:
                text = get_bytes(f["url"] + ".metadata").decode("utf-8")
            except urllib.error.HTTPError as e:
                if e.code != 404:
                    raise
                data = get_bytes(f["url"])
                if hashlib.sha256(data).hexdigest() != f["sha256"]:
                    raise SystemExit("pylock.py: %s does not match its sha256" % f["filename"])
                with zipfile.ZipFile(io.BytesIO(data)) as z:
                    meta = next(n for n in z.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n))
                    text = z.read(meta).decode("utf-8")
            head = text.split("\n\n", 1)[0]
            self._requires = [l.split(":", 1)[1].strip() for l in head.splitlines() if l.startswith("Requires-Dist:")]
        return self._requires


# ---- main -------------------------------------------------------------------------


def read_pins(path):
    pins = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            req, _, marker = line.partition(";")
            m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;]+)", req.strip())
            if not m:
                raise SystemExit("pylock.py: %s:%d: not name==version: %r" % (path, n, line))
            pins.append((m.group(1), m.group(2), marker.strip()))
    return pins


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pins", help="the resolved set: name==version a line")
    ap.add_argument("-o", "--output", default="-", help="the lock file to write (default: stdout)")
    ap.add_argument("--python", action="append", help="a target CPython, 3.X (repeatable; default 3.11 and 3.13)")
    ap.add_argument("--arch", action="append", help="a target Linux architecture (repeatable; default x86_64 and aarch64)")
    ap.add_argument(
        "--glibc",
        default="2.36",
        help="the oldest glibc of the targets: each needs a wheel for it (default 2.36, Debian 12); "
        "wheels for newer glibc are listed too",
    )
    ap.add_argument("--musl", action="store_true", help="also musllinux targets (Alpine)")
    ap.add_argument("--index", default="https://pypi.org", help="the index (default https://pypi.org)")
    ap.add_argument("--no-check", action="store_true", help="skip the closure check of the pins")
    ap.add_argument("--header", action="append", default=[], help="a line for the header comment (repeatable)")
    a = ap.parse_args()

    pythons = [tuple(int(x) for x in p.split(".")) for p in (a.python or ["3.11", "3.13"])]
    arches = a.arch or ["x86_64", "aarch64"]
    glibc = tuple(int(x) for x in a.glibc.split("."))
    libcs = [("glibc", glibc)] + ([("musl", None)] if a.musl else [])
    targets = [(py, arch, libc) for py in pythons for arch in arches for libc in libcs]

    def env_of(py, arch):
        return {
            "python_version": "%d.%d" % py,
            "python_full_version": "%d.%d.0" % py,
            "implementation_version": "%d.%d.0" % py,
            "platform_machine": arch,
            "sys_platform": "linux",
            "platform_system": "Linux",
            "os_name": "posix",
            "platform_python_implementation": "CPython",
            "implementation_name": "cpython",
            "platform_release": "",
            "platform_version": "",
            "extra": "",
        }

    def label(t):
        py, arch, libc = t
        return "cp%d%d %s %s" % (py[0], py[1], arch, "musl" if libc[0] == "musl" else "glibc")

    pins = read_pins(a.pins)
    problems = []
    # The pins that apply on each target (a pin's marker, if any, decides), by normalized name.
    pinned = {}
    for t in targets:
        env = env_of(t[0], t[1])
        pinned[t] = {}
        for n, v, m in pins:
            if m and not eval_marker(m, env):
                continue
            if normalize(n) in pinned[t]:
                problems.append("%s is pinned twice for %s" % (n, label(t)))
            pinned[t][normalize(n)] = v
    blocks = []
    for name, version, marker in pins:
        rel = Release(a.index, name, version)
        mine = [t for t in targets if pinned[t].get(normalize(name)) == version]
        if not mine:
            print("pylock.py: warning: %s==%s applies to no target" % (name, version), file=sys.stderr)
        if rel.requires_python:
            for py in sorted({t[0] for t in mine}):
                if not spec_allows(rel.requires_python, "%d.%d.0" % py):
                    problems.append("%s==%s needs Python %s, not %d.%d" % (name, version, rel.requires_python, *py))
        chosen = {}
        covered = set()
        for f in rel.files:
            fn = f["filename"]
            if not fn.endswith(".whl") or f["yanked"]:
                continue
            tags = wheel_tags(fn)
            for t in mine:
                py, arch, libc = t
                any_glibc = (libc[0], None) if libc[0] == "glibc" else libc
                if any(tag_fits(tag, py, arch, any_glibc) for tag in tags):
                    chosen[fn] = f["sha256"]
                    if any(tag_fits(tag, py, arch, libc) for tag in tags):
                        covered.add(t)
        missing = [t for t in mine if t not in covered]
        if missing:
            sdists = [f for f in rel.files if not f["filename"].endswith(".whl") and not f["yanked"]]
            what = ", ".join(label(t) for t in missing)
            if not sdists:
                problems.append("%s==%s has no wheel and no sdist for %s" % (name, version, what))
            for f in sdists:
                chosen[f["filename"]] = f["sha256"]
            print("pylock.py: warning: %s==%s has no wheel for %s: its sdist is listed" % (name, version, what), file=sys.stderr)
        if not a.no_check:
            for line in rel.requires():
                dname, _, dspec, dmarker = parse_requirement(line)
                for t in mine:
                    if dmarker and not eval_marker(dmarker, env_of(t[0], t[1])):
                        continue
                    got = pinned[t].get(normalize(dname))
                    if got is None:
                        problems.append("%s==%s requires %s on %s: not pinned" % (name, version, line, label(t)))
                    elif dspec and not spec_allows(dspec, got):
                        problems.append("%s==%s requires %s on %s; %s is pinned" % (name, version, line, label(t), got))
        lines = ["# %s" % fn for fn in sorted(chosen)]
        lines.append("%s==%s%s \\" % (name, version, " ; " + marker if marker else ""))
        hashes = sorted(set(chosen.values()))
        for i, h in enumerate(hashes):
            lines.append("    --hash=sha256:%s%s" % (h, " \\" if i < len(hashes) - 1 else ""))
        blocks.append("\n".join(lines))
        print("pylock.py: %s==%s: %d files" % (name, version, len(chosen)), file=sys.stderr)

    for p in sorted(set(problems)):
        print("pylock.py: error: " + p, file=sys.stderr)
    if problems:
        return 1
    head = [
        "# Generated by pylock.py from %s: do not edit; change the pins and run it again." % a.pins,
        "# Targets: CPython %s on Linux %s, %s."
        % (
            ", ".join("%d.%d" % p for p in pythons),
            ", ".join(arches),
            " and ".join(("manylinux (glibc %s or newer)" % a.glibc) if l[0] == "glibc" else "musllinux" for l in libcs),
        ),
        "# Hashes: every wheel of these releases that a target can install (sdists only where a target has no wheel).",
        "# Install: pip install --require-hashes --no-deps --only-binary=:all: -r <this file>",
        "# Command: make lock (python3 " + " ".join(shlex.quote(x) for x in sys.argv) + ")",
    ] + ["# " + h for h in a.header]
    text = "\n".join(head) + "\n\n" + "\n\n".join(blocks) + "\n"
    if a.output == "-":
        sys.stdout.write(text)
    else:
        with open(a.output, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
