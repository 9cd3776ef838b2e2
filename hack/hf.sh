#!/usr/bin/env bash
# Installs, once, the real `hf` CLI that the script/ and hubtest/ tests run against the fake Hub
# of package hubtest on loopback:
#
#   bin/hf-1.28.0/src/huggingface_hub  huggingface_hub 1.28.0, unpacked from the vendored source
#                                      ../shared/vendor/huggingface_hub-1.28.0-src.tar.gz
#   bin/hf                             a wrapper that runs downloader/hf, the downloader image's
#                                      hf, on it with Debian's /usr/bin/python3
#
# It also installs Debian's busybox: the script tests run download.sh under its sh and tools too.
#
# These machines reach no Python package index, so the library's dependencies come from
# Debian's packages, the ones downloader/packages lists for the image (apt-get update runs
# only when one is missing). hf_xet is not packaged: without it huggingface_hub falls back
# to plain HTTP downloads, which is what a fake Hub serves anyway. A second run only checks
# and costs well under a second.
#
# Needs bash, tar, sha256sum, flock and apt (as root, or sudo).
set -euo pipefail

version=1.28.0
python=/usr/bin/python3

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# python3 and huggingface_hub's dependencies, as in the image.
mapfile -t packages < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' "$root/downloader/packages")
# Not for hf: busybox, so that the script tests also run download.sh under busybox's sh and
# tools, as in an Alpine-based downloader image.
packages+=(busybox)
bin=$root/bin
tarball=$root/../shared/vendor/huggingface_hub-$version-src.tar.gz
dest=$bin/hf-$version
stamp=$dest/.unpacked
wrapper=$bin/hf
mkdir -p "$bin"

log() { printf 'hack/hf.sh: %s\n' "$*" >&2; }

# Two test runs starting at once must not unpack into the same folder together.
exec 8>"$bin/.hf.lock"
flock 8

# 1. Debian's python3 and the library's dependencies.
bash "$root/hack/apt-install.sh" "${packages[@]}"
[[ -x $python ]] || {
	log "$python is missing after installing python3"
	exit 1
}

# 2. The vendored source, unpacked to bin/hf-<version>/ (src/ and LICENSE). The stamp holds the
# tarball's SHA-256, so a changed tarball is unpacked again; the unpacking goes to a temporary
# folder that is renamed whole, so an interrupted run never leaves a half tree that looks done.
[[ -f $tarball ]] || {
	log "no $tarball: the vendored huggingface_hub source is expected in ../shared/vendor beside the repository"
	exit 1
}
sum=$(sha256sum "$tarball")
sum=${sum%% *}
if [[ ! -f $stamp || $(<"$stamp") != "$sum" ]]; then
	log "unpacking $(basename "$tarball") into $dest"
	tmp=$(mktemp -d "$bin/.hf-unpack.XXXXXX")
	trap 'rm -rf "$tmp"' EXIT
	tar -xzf "$tarball" -C "$tmp" --strip-components=1 --no-same-owner
	[[ -f $tmp/src/huggingface_hub/cli/hf.py ]] || {
		log "$tarball does not hold src/huggingface_hub/cli/hf.py"
		exit 1
	}
	printf '%s\n' "$sum" >"$tmp/.unpacked"
	rm -rf "$dest"
	mv "$tmp" "$dest"
	trap - EXIT
fi

# 3. The wrapper: downloader/hf on the unpacked source; -P keeps the working directory off
# sys.path. It holds absolute paths, so it is rewritten whenever they (or this text) change.
quote() { printf "'%s'" "${1//\'/\'\\\'\'}"; }
want=$(
	cat <<EOF
#!/bin/sh
# Written by hack/hf.sh: huggingface_hub $version's hf CLI on Debian's python3. Do not edit.
PYTHONPATH=$(quote "$dest/src")\${PYTHONPATH:+:\$PYTHONPATH}
export PYTHONPATH
exec $python -P $(quote "$root/downloader/hf") "\$@"
EOF
)
if [[ ! -x $wrapper || $(<"$wrapper") != "$want" ]]; then
	printf '%s\n' "$want" >"$wrapper.tmp"
	chmod 755 "$wrapper.tmp"
	mv -f "$wrapper.tmp" "$wrapper"
fi

got=$(HF_HUB_DISABLE_UPDATE_CHECK=1 HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 "$wrapper" version 2>&1) || {
	log "$wrapper version failed: $got"
	exit 1
}
[[ $got == *"$version"* ]] || {
	log "$wrapper version printed \"$got\", want $version"
	exit 1
}
