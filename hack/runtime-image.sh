#!/usr/bin/env bash
# Builds the function's runtime image without Docker, as the Dockerfile's final stage
# describes it (the static binary at /function, distroless's nonroot user, port 9443), and
# writes it as an image tarball, for `crossplane xpkg build --embed-runtime-image-tarball`.
# The image is packed by tools/images/rootfs-image, which hack/downloader-image.sh uses too.
#
# Usage: bash hack/runtime-image.sh --out OUT.tar [--arch amd64|arm64] [--ldflags FLAGS]
#   --arch     the GOARCH to build for (default: this machine's)
#   --ldflags  passed to go build, e.g. the -X stamps of a release (hack/package.sh)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out='' arch=$(go env GOARCH) ldflags=''
while (($#)); do
	case $1 in
	--out) out=${2:-} ;;
	--arch) arch=${2:-} ;;
	--ldflags) ldflags=${2:-} ;;
	*) break ;;
	esac
	shift 2 || break
done
[[ -n $out && $# -eq 0 ]] || {
	echo "usage: hack/runtime-image.sh --out OUT.tar [--arch amd64|arm64] [--ldflags FLAGS]" >&2
	exit 2
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

mkdir "$tmp/rootfs"
(cd "$root" && CGO_ENABLED=0 GOOS=linux GOARCH=$arch go build -trimpath -ldflags "$ldflags" -o "$tmp/rootfs/function" .)
go build -C "$root/tools/images" -trimpath -o "$tmp/rootfs-image" ./rootfs-image
"$tmp/rootfs-image" --dir "$tmp/rootfs" --out "$out" --tag function-hf-download-runtime:dev --arch "$arch" \
	--user 65532:65532 --entrypoint /function --expose 9443/tcp --mtime 0
