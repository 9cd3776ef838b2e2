#!/usr/bin/env bash
# Installs the Debian packages named that are not installed yet, with apt, as root or through
# sudo; the one place the hack/ scripts and the Makefile install from Debian. A policy-rc.d
# keeps any package's service from starting while it installs (containerd, etcd): the tests
# start their own, and nothing may be left running.
#
# Usage: bash hack/apt-install.sh PACKAGE...
set -euo pipefail

log() { printf 'hack/apt-install.sh: %s\n' "$*" >&2; }
missing=()
for p in "$@"; do
	if [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) != "install ok installed" ]]; then
		missing+=("$p")
	fi
done
((${#missing[@]})) || exit 0

sudo=()
if ((EUID != 0)); then
	command -v sudo >/dev/null || {
		log "not root and no sudo: install ${missing[*]} with apt-get"
		exit 1
	}
	sudo=(sudo)
fi
log "installing ${missing[*]}"
# Two scripts installing at once would fail on apt's own lock: one at a time.
exec 9>/tmp/.hfops-apt-install.lock
flock 9
policy=/usr/sbin/policy-rc.d
if [[ ! -e $policy ]]; then
	"${sudo[@]}" sh -c "printf '#!/bin/sh\nexit 101\n' >$policy && chmod 755 $policy"
	trap '"${sudo[@]}" rm -f "$policy"' EXIT
fi
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
