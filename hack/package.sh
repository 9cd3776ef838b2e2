#!/usr/bin/env bash
# `make package`: builds a release into OUTPUT, without Docker:
#
#   function-hf-download-<arch>.xpkg     the Function package (package/), its runtime image
#                                        embedded (hack/runtime-image.sh), one per platform
#   configuration-hf-download.xpkg       the Crossplane v2 API (example/: namespaced XRD)
#   configuration-hf-download-claims.xpkg  the claim flavour (example/legacy/)
#   hf-downloader-<arch>.tar             the downloader image (hack/downloader-image.sh)
#   release.env                          what was built: VERSION, REGISTRY, ARCHES
#
# Every reference between them names REGISTRY at VERSION: the function's default download
# image is REGISTRY/hf-downloader:VERSION (stamped into the binary), and the Configurations
# depend on REGISTRY/function-hf-download >= VERSION. So the release is built for the
# registry it will be pushed to (hack/push.sh refuses another).
#
# Environment: VERSION (required, a semantic version), REGISTRY (required, e.g.
# ghcr.io/acme), OUTPUT (default _output), ARCHES (default "amd64 arm64"), CROSSPLANE (the
# Crossplane CLI). Needs root for the downloader image (debootstrap, chroot, and qemu for the
# architecture the machine is not).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
log() { printf 'hack/package.sh: %s\n' "$*" >&2; }
: "${VERSION:?set VERSION, e.g. v0.1.0}" "${REGISTRY:?set REGISTRY, e.g. ghcr.io/acme}" "${CROSSPLANE:?set CROSSPLANE to the Crossplane CLI}"
OUTPUT=${OUTPUT:-$root/_output}
ARCHES=${ARCHES:-amd64 arm64}

# A package tag must be a semantic version: Crossplane resolves dependencies by it.
semver='^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?$'
[[ $VERSION =~ $semver ]] || {
	log "VERSION \"$VERSION\" is not a semantic version like v1.2.3 or v1.2.3-rc.1"
	exit 1
}
# An OCI repository prefix: a registry host, then lowercase path components.
[[ $REGISTRY =~ ^[a-zA-Z0-9.-]+(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)+$ ]] || {
	log "REGISTRY \"$REGISTRY\" is not a registry and repository path like ghcr.io/acme"
	exit 1
}
for arch in $ARCHES; do
	[[ $arch == amd64 || $arch == arm64 ]] || {
		log "ARCHES holds \"$arch\": the images are built for amd64 and arm64"
		exit 1
	}
done
# Said now rather than after the function's builds: the downloader image needs root.
((EUID == 0)) || {
	log "run as root (sudo make package ...): the downloader image is built with debootstrap and chroot"
	exit 1
}
function_repo=$REGISTRY/function-hf-download
downloader_repo=$REGISTRY/hf-downloader

# dns_label is Crossplane's xpkg.ToDNSLabel (internal/xpkg/name.go), by which its package
# manager names a dependency it installs after the dependency's repository path:
# "acme/function-hf-download" becomes the Function "acme-function-hf-download".
dns_label() {
	local s=$1 out='' c i
	for ((i = 0; i < ${#s}; i++)); do
		c=${s:i:1}
		if [[ $c == [a-z0-9] ]]; then
			out+=$c
		elif [[ $c == [./:-] ]] && ((i != 0 && i != 62 && i != ${#s} - 1)); then
			out+=-
		fi
		((i != 62)) || break
	done
	out=${out#"${out%%[!-]*}"}
	printf '%s\n' "${out%"${out##*[!-]}"}"
}
# The repository path is what follows the registry host.
function_name=$(dns_label "${function_repo#*/}")

mkdir -p "$OUTPUT"
OUTPUT=$(cd "$OUTPUT" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# What a previous build left could be pushed with this one's release.env: start empty.
rm -f "$OUTPUT"/*.xpkg "$OUTPUT"/hf-downloader-*.tar "$OUTPUT/release.env"

# 1. The function, one package per platform.
ldflags=$(bash "$root/hack/ldflags.sh" "$VERSION" "$downloader_repo")
for arch in $ARCHES; do
	bash "$root/hack/runtime-image.sh" --out "$tmp/runtime-$arch.tar" --arch "$arch" --ldflags "$ldflags"
	(cd "$root" && "$CROSSPLANE" xpkg build --package-root=package \
		--embed-runtime-image-tarball="$tmp/runtime-$arch.tar" \
		--package-file="$OUTPUT/function-hf-download-$arch.xpkg")
	log "built function-hf-download-$arch.xpkg"
done

# 2. The Configurations. Their package roots are assembled from the examples, so the XRDs and
# Compositions are written once; the dependency on the function names this release's, and the
# Composition calls the Function by the name the package manager gives that dependency.
configuration() {
	local name=$1 meta=$2 dir=$3 pkgroot=$tmp/$1
	mkdir -p "$pkgroot"
	cp "$root/$dir/definition.yaml" "$pkgroot/"
	awk -v fn="$function_name" '
		/^ *functionRef:$/ { print; ref = 1; next }
		ref && /^ *name: function-hf-download$/ { sub(/function-hf-download$/, fn); renamed++ }
		{ ref = 0; print }
		END { if (renamed != 1) exit 1 }
	' "$root/$dir/composition.yaml" >"$pkgroot/composition.yaml" || {
		log "$dir/composition.yaml does not call function-hf-download in exactly one functionRef"
		exit 1
	}
	awk -v pkg="$function_repo" -v version=">=$VERSION" '
		/^    package: xpkg\.crossplane\.io\/hfops\/function-hf-download$/ {
			sub(/xpkg\.crossplane\.io\/hfops\/function-hf-download$/, pkg); print; swapped = 1; next
		}
		swapped == 1 && /^    version: / { print "    version: \"" version "\""; swapped = 2; next }
		{ print }
		END { if (swapped != 2) exit 1 }
	' "$root/$meta" >"$pkgroot/crossplane.yaml" || {
		log "$meta has no dependency on xpkg.crossplane.io/hfops/function-hf-download with a version"
		exit 1
	}
	(cd "$root" && "$CROSSPLANE" xpkg build --package-root="$pkgroot" --package-file="$OUTPUT/$name.xpkg")
	log "built $name.xpkg"
}
configuration configuration-hf-download configuration/v2/crossplane.yaml example
configuration configuration-hf-download-claims configuration/legacy/crossplane.yaml example/legacy

# 3. The downloader image the function defaults to, one tarball per platform.
for arch in $ARCHES; do
	bash "$root/hack/downloader-image.sh" --arch "$arch" --tag "$downloader_repo:$VERSION" \
		--out "$OUTPUT/hf-downloader-$arch.tar"
done

printf 'VERSION=%s\nREGISTRY=%s\nARCHES=%s\n' "$VERSION" "$REGISTRY" "$ARCHES" >"$OUTPUT/release.env"
log "release $VERSION for $REGISTRY ($ARCHES) in $OUTPUT"
