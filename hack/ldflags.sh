#!/usr/bin/env bash
# Prints the -ldflags of a release build: what release.go's variables become, stamped with -X.
# hack/package.sh builds the function with them; TestReleaseStamp builds with them too and reads
# the stamp back from `function --version`, as the linker ignores an -X name it does not know.
#
# Usage: bash hack/ldflags.sh VERSION DOWNLOADER_REPOSITORY
#   e.g. bash hack/ldflags.sh v0.1.0 ghcr.io/acme/hf-downloader
set -euo pipefail

(($# == 2)) || {
	echo "usage: hack/ldflags.sh VERSION DOWNLOADER_REPOSITORY" >&2
	exit 2
}
printf '%s\n' "-s -w -X main.version=$1 -X main.downloaderRepository=$2"
