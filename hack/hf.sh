#!/usr/bin/env bash
# Installs, once per machine, the real `hf` CLI that the script/ and hubtest/ tests run against
# the fake Hub of package hubtest on loopback: exactly the downloader image's engine, the hashed
# lock downloader/requirements.txt (huggingface_hub, hf_xet and every dependency), installed from
# the Python package index with `pip install --require-hashes --no-deps --only-binary=:all:`.
#
#   <cache>/hf/site@<lock digest>   the locked packages (pip --target), in the cache of
#                                   hack/cache.sh, so a fresh clone does not install them again
#   bin/hf-<version>                a link to it: what the tests put on PYTHONPATH for hfdl.py
#   bin/hf                          a wrapper that runs the locked hf on Debian's python3
#
# Python: Debian's /usr/bin/python3 (3.11 on Debian 12) and its pip, never a pyenv build: the
# image runs Debian's python3 too. It also installs Debian's busybox: the script tests run
# download.sh under its sh and tools too. A second run only checks and costs about a second.
#
# Needs bash, sha256sum, flock and apt (as root, or sudo); reaches Debian's mirror when a package
# is missing and the Python package index when the lock changed.
set -euo pipefail

python=/usr/bin/python3
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=$root/bin
lock=$root/downloader/requirements.txt
# shellcheck source=hack/cache.sh
source "$root/hack/cache.sh"
version=$(sed -n 's/^\tHubVersion *= *"\(.*\)"$/\1/p' "$root/script/script.go")
mkdir -p "$bin" "$cache_dir/hf"

log() { printf 'hack/hf.sh: %s\n' "$*" >&2; }
[[ -n $version ]] || {
	log "no HubVersion in script/script.go"
	exit 1
}

# One install at a time on this machine.
exec 8>"$cache_dir/hf/.lock"
flock 8

# 1. Debian's python3 and pip; busybox for the script tests.
bash "$root/hack/apt-install.sh" python3 python3-pip busybox

# 2. The lock, installed whole into a temporary folder that is renamed, so an interrupted run
# never leaves a half install that looks done. pip --target writes no absolute path of its
# own (bin/hf's first line is the python that ran pip), so the folder may move.
site=$cache_dir/hf/site@$(cache_key "$(sha256sum "$lock")" "$python")
if [[ ! -d $site ]]; then
	log "installing downloader/requirements.txt (huggingface_hub $version) into $site"
	tmp=$(mktemp -d "$cache_dir/hf/.site.XXXXXX")
	trap 'rm -rf "$tmp"' EXIT
	"$python" -m pip install --quiet --disable-pip-version-check --no-input --root-user-action=ignore \
		--no-compile --target "$tmp" --require-hashes --no-deps --only-binary=:all: -r "$lock"
	mv "$tmp" "$site"
	trap - EXIT
fi
cache_used "$site"
ln -sfn "$site" "$bin/hf-$version.tmp"
mv -fT "$bin/hf-$version.tmp" "$bin/hf-$version"

# 3. The wrapper. It holds absolute paths, so it is rewritten whenever they (or this text)
# change; -P keeps the working directory off sys.path.
quote() { printf "'%s'" "${1//\'/\'\\\'\'}"; }
want=$(
	cat <<EOF
#!/bin/sh
# Written by hack/hf.sh: the locked hf CLI (huggingface_hub $version) on Debian's python3. Do not edit.
PYTHONPATH=$(quote "$bin/hf-$version")\${PYTHONPATH:+:\$PYTHONPATH}
export PYTHONPATH
exec $python -P $(quote "$bin/hf-$version/bin/hf") "\$@"
EOF
)
if [[ ! -x $bin/hf || $(<"$bin/hf") != "$want" ]]; then
	printf '%s\n' "$want" >"$bin/hf.tmp"
	chmod 755 "$bin/hf.tmp"
	mv -f "$bin/hf.tmp" "$bin/hf"
fi

got=$(HF_HUB_DISABLE_UPDATE_CHECK=1 HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 NO_COLOR=1 "$bin/hf" version 2>&1) || {
	log "$bin/hf version failed: $got"
	exit 1
}
[[ $got == *"version: $version"* ]] || {
	log "$bin/hf version printed \"$got\", want $version"
	exit 1
}
PYTHONPATH=$bin/hf-$version "$python" -c 'import hf_xet' || {
	log "hf_xet does not import from $bin/hf-$version"
	exit 1
}
