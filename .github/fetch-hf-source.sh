#!/usr/bin/env bash
# Puts huggingface_hub's source at the given release where the repository expects it, as
# ../shared/vendor/huggingface_hub-<version>-src.tar.gz: GitHub's archive of its tag has the
# layout the hack/ scripts read (huggingface_hub-<version>/src/huggingface_hub).
#
# Usage: .github/fetch-hf-source.sh VERSION
set -euo pipefail

version=${1:?usage: .github/fetch-hf-source.sh VERSION}
vendor=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/../shared/vendor
mkdir -p "$vendor"
curl -fsSL --retry 3 -o "$vendor/huggingface_hub-$version-src.tar.gz" \
	"https://github.com/huggingface/huggingface_hub/archive/refs/tags/v$version.tar.gz"
tar -tzf "$vendor/huggingface_hub-$version-src.tar.gz" "huggingface_hub-$version/src/huggingface_hub/__init__.py" >/dev/null
