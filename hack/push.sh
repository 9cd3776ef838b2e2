#!/usr/bin/env bash
# `make push`: pushes the release `make package` built in OUTPUT with the real
# `crossplane xpkg push` (credentials from the docker config, ~/.docker/config.json or
# $DOCKER_CONFIG, as the CLI reads them; `docker login` or `crossplane xpkg login` writes it):
# the function and the downloader image as multi-platform indexes, the two Configurations,
# all tagged VERSION. Then prints the `crossplane xpkg install` lines that install them.
#
# Environment: VERSION and REGISTRY (required; they must be what the release was built for),
# OUTPUT (default _output), CROSSPLANE (the Crossplane CLI).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
log() { printf 'hack/push.sh: %s\n' "$*" >&2; }
: "${VERSION:?set VERSION}" "${REGISTRY:?set REGISTRY, e.g. ghcr.io/acme}" "${CROSSPLANE:?set CROSSPLANE to the Crossplane CLI}"
OUTPUT=${OUTPUT:-$root/_output}

[[ -f $OUTPUT/release.env ]] || {
	log "no release in $OUTPUT: run make package REGISTRY=$REGISTRY first"
	exit 1
}
built_version=$(sed -n 's/^VERSION=//p' "$OUTPUT/release.env")
built_registry=$(sed -n 's/^REGISTRY=//p' "$OUTPUT/release.env")
arches=$(sed -n 's/^ARCHES=//p' "$OUTPUT/release.env")
# The packages name their registry and version inside (the default image, the dependencies):
# pushed anywhere else they would point at packages that are not there.
if [[ $built_version != "$VERSION" || $built_registry != "$REGISTRY" ]]; then
	log "$OUTPUT holds $built_version for $built_registry, not $VERSION for $REGISTRY: run make package REGISTRY=$REGISTRY VERSION=$VERSION first"
	exit 1
fi

# files PREFIX SUFFIX prints the comma-separated per-platform files of one artifact.
files() {
	local list='' arch
	for arch in $arches; do list+=${list:+,}$OUTPUT/$1-$arch$2; done
	printf '%s' "$list"
}
push() {
	"$CROSSPLANE" xpkg push --package-files="$1" "$2"
	log "pushed $2"
}
push "$(files function-hf-download .xpkg)" "$REGISTRY/function-hf-download:$VERSION"
push "$(files hf-downloader .tar)" "$REGISTRY/hf-downloader:$VERSION"
push "$OUTPUT/configuration-hf-download.xpkg" "$REGISTRY/configuration-hf-download:$VERSION"
push "$OUTPUT/configuration-hf-download-claims.xpkg" "$REGISTRY/configuration-hf-download-claims:$VERSION"

cat <<EOF
Pushed $VERSION to $REGISTRY. Install it with the Crossplane CLI, for Crossplane v2 (namespaced ModelDownloads):
  crossplane xpkg install configuration $REGISTRY/configuration-hf-download:$VERSION
or for claims (the ModelDownload claim of a cluster-scoped XModelDownload, through provider-kubernetes):
  crossplane xpkg install configuration $REGISTRY/configuration-hf-download-claims:$VERSION
or only the function, named as example/composition.yaml's functionRef calls it:
  crossplane xpkg install function $REGISTRY/function-hf-download:$VERSION function-hf-download
Download Jobs default to the image $REGISTRY/hf-downloader:$VERSION; nodes must be able to pull it.
EOF
