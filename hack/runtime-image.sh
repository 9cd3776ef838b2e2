#!/usr/bin/env bash
# Builds the function's runtime image without Docker, as the Dockerfile's final stage
# describes it (the static binary at /function, distroless's nonroot user, port 9443), and
# writes it as an image tarball to the path given, for
# `crossplane xpkg build --embed-runtime-image-tarball`. The image is packed by
# tools/images/rootfs-image, which hack/node.sh uses for the e2e node's images too.
#
# Usage: bash hack/runtime-image.sh OUT.tar
set -euo pipefail

out=${1:?usage: hack/runtime-image.sh OUT.tar}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

mkdir "$tmp/rootfs"
(cd "$root" && CGO_ENABLED=0 go build -trimpath -o "$tmp/rootfs/function" .)
go build -C "$root/tools/images" -trimpath -o "$tmp/rootfs-image" ./rootfs-image
"$tmp/rootfs-image" --dir "$tmp/rootfs" --out "$out" --tag function-hf-download-runtime:dev \
	--user 65532:65532 --entrypoint /function --expose 9443/tcp --mtime 0
