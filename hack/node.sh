#!/usr/bin/env bash
# Builds, once, the two images that the e2e suite's node (kubelet and containerd) runs, as
# tarballs for `ctr -n k8s.io images import`, without Docker and without pulling any image:
#
#   bin/images/downloader.tar  docker.io/hfops/downloader:<script.HubVersion>, built by
#                              hack/downloader-image.sh as a release builds it (what
#                              downloader/Dockerfile describes), for this machine's architecture
#   bin/images/pause.tar       docker.io/hfops/pause:local, the pod sandbox (tools/images/pause)
#
# and installs from Debian, when missing, what that node needs: containerd, runc,
# containernetworking-plugins and iproute2 (hack/downloader-image.sh installs debootstrap).
#
# Each tarball is built once per machine into the cache of hack/cache.sh, as
# images/<name>@<digest>.tar, the digest a SHA-256 over its inputs (this script, the Go source
# of tools/images, and for the downloader hack/downloader-image.sh and the lock
# downloader/requirements.txt), and linked into bin/images with that digest in its
# stamp, bin/images/<name>.tar.inputs: a second run, or a fresh clone on a machine that built
# them before, costs well under a second. Builds go to temporary names that are renamed whole,
# and a stamp is written after its tarball, so an interrupted run never leaves a tarball that
# looks current.
#
# Pulls no image. Reaches only Debian's mirror (apt, debootstrap) and, to build tools/images
# when its modules are not cached yet, the Go module proxy. Needs root (debootstrap, chroot),
# Go, apt, flock.
set -euo pipefail
umask 022

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=$root/bin
images=$bin/images
# shellcheck source=hack/cache.sh
source "$root/hack/cache.sh"
mkdir -p "$images" "$cache_dir/images"

log() { printf 'hack/node.sh: %s\n' "$*" >&2; }

((EUID == 0)) || {
	log "run as root: debootstrap and chroot need it"
	exit 1
}

# Build folders; hack/downloader-image.sh keeps its debootstrap mounts in folders of its own.
tmp=''
cleanup() {
	if [[ -n $tmp ]]; then rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Two runs at once (two checkouts sharing bin/ by symlink) must not build the same images.
exec 9>"$bin/.node.lock"
flock 9
# What a killed run left; the lock says that no other run is using it.
for old in "$images"/.{pause,downloader}.*; do
	rm -rf "$old"
done

# 1. Debian's packages. policy-rc.d keeps containerd's package from starting a system
# containerd: the tests run their own, and nothing may be left running.
bash "$root/hack/apt-install.sh" containerd runc containernetworking-plugins iproute2

# 2. The inputs. The downloader is what a release builds, from the lock
# downloader/requirements.txt, so the e2e suite runs what users run; its tag is the
# engine's version, script.HubVersion.
version=$(sed -n 's/^\tHubVersion *= *"\(.*\)"$/\1/p' "$root/script/script.go")
[[ -n $version ]] || {
	log "no HubVersion in script/script.go"
	exit 1
}
mapfile -t tool_sources < <(cd "$root" && find tools/images -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) | LC_ALL=C sort)
# digest FILE... prints one SHA-256 over the files' names (relative to the repository) and
# contents.
digest() {
	local sum
	sum=$(cd "$root" && sha256sum "$@" | sha256sum)
	printf '%s\n' "${sum%% *}"
}
downloader_sum=$(digest hack/node.sh hack/downloader-image.sh "${tool_sources[@]}" downloader/requirements.txt)
pause_sum=$(digest hack/node.sh "${tool_sources[@]}")

# entry NAME SUM prints the cache entry of the tarball NAME built from inputs whose digest is SUM.
entry() {
	printf '%s\n' "$cache_dir/images/$1@${2:0:16}.tar"
}
# install_image NAME SUM links NAME's cache entry into bin/images/NAME.tar, then writes the stamp.
install_image() {
	local name=$1 sum=$2 cached
	cached=$(entry "$name" "$sum")
	cache_used "$cached"
	# No stamp while the tarball changes: a stamp left from older inputs could match again.
	rm -f "$images/$name.tar.inputs"
	cache_link "$cached" "$images/$name.tar"
	printf '%s\n' "$sum" >"$images/$name.tar.inputs"
}
# fresh NAME SUM succeeds when bin/images/NAME.tar was built from inputs whose digest is SUM,
# linking it from the cache first when the cache has it.
fresh() {
	if [[ -f $images/$1.tar && -f $images/$1.tar.inputs && $(<"$images/$1.tar.inputs") == "$2" ]]; then
		return 0
	fi
	[[ -f $(entry "$1" "$2") ]] || return 1
	install_image "$1" "$2"
}
if fresh downloader "$downloader_sum" && fresh pause "$pause_sum"; then
	exit 0
fi

# 3. The image tools, static like the pause binary must be.
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false
for t in rootfs-image pause; do
	go build -C "$root/tools/images" -trimpath -ldflags "-s -w" -o "$bin/.$t.tmp" "./$t"
	mv -f "$bin/.$t.tmp" "$bin/$t"
done

# cache_image NAME SUM TARBALL moves the built TARBALL into the cache and links it into bin/images.
cache_image() {
	local cached
	cached=$(entry "$1" "$2")
	# Through a temporary name: a move to another file system copies.
	mv -f "$3" "$cached.tmp$$"
	mv -f "$cached.tmp$$" "$cached"
	install_image "$1" "$2"
	log "built bin/images/$1.tar ($(du -h "$images/$1.tar" | cut -f1))"
}

# 4. The pause image: one static binary, mtime 0 so the same binary gives the same layer.
if ! fresh pause "$pause_sum"; then
	tmp=$(mktemp -d "$images/.pause.XXXXXX")
	mkdir "$tmp/rootfs"
	install -m 0755 "$bin/pause" "$tmp/rootfs/pause"
	"$bin/rootfs-image" --dir "$tmp/rootfs" --out "$tmp/pause.tar" --tag docker.io/hfops/pause:local \
		--user 65535:65535 --entrypoint /pause --mtime 0
	cache_image pause "$pause_sum" "$tmp/pause.tar"
	rm -rf "$tmp"
	tmp=
fi

# 5. The downloader image, for this machine's architecture.
if ! fresh downloader "$downloader_sum"; then
	tmp=$(mktemp -d "$images/.downloader.XXXXXX")
	bash "$root/hack/downloader-image.sh" --arch "$(dpkg --print-architecture)" \
		--tag "docker.io/hfops/downloader:$version" --out "$tmp/downloader.tar" --rootfs-image "$bin/rootfs-image"
	cache_image downloader "$downloader_sum" "$tmp/downloader.tar"
	rm -rf "$tmp"
	tmp=
fi
