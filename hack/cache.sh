# shellcheck shell=bash
# Sourced by the hack/ scripts: the machine's cache of what they build slowly and identically
# for every checkout (the control plane's binaries, Debian root filesystems, images), so that a
# fresh clone, as CI makes, does not build them again. An entry is named <thing>@<digest of its
# inputs>, so checkouts at different versions never share one by mistake, and is written under
# a temporary name and renamed whole. FUNCTION_HF_DOWNLOAD_CACHE moves the cache.
# shellcheck disable=SC2034 # used by the scripts that source this one
cache_dir=${FUNCTION_HF_DOWNLOAD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/function-hf-download}

# cache_key prints a short digest of its arguments, the inputs of an entry.
cache_key() {
	local sum
	sum=$(printf '%s\n' "$@" | sha256sum)
	printf '%s\n' "${sum:0:16}"
}

# cache_link SRC DEST makes DEST the cached file SRC: a hard link when both are on one file
# system, else a copy, through a temporary name so that DEST is never seen half written.
cache_link() {
	local tmp
	tmp=$(mktemp "$2.XXXXXX")
	ln -f "$1" "$tmp" 2>/dev/null || cp -f "$1" "$tmp"
	mv -f "$tmp" "$2"
}

# cache_used ENTRY marks ENTRY used now and removes the other entries of the same thing
# (ENTRY's name up to the @) that no run has used for two weeks: two checkouts at different
# versions each keep theirs, and what no checkout wants any more goes.
cache_used() {
	touch -h "$1"
	find "$(dirname "$1")" -mindepth 1 -maxdepth 1 -name "$(basename "${1%@*}")@*" ! -newermt '-14 days' \
		-exec rm -rf --one-file-system {} +
}
