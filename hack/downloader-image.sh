#!/usr/bin/env bash
# Builds the downloader image, what downloader/Dockerfile describes, without Docker and
# without pulling any image: a Debian bookworm root filesystem (debootstrap, minbase) with the
# packages of downloader/packages, huggingface_hub at script.HubVersion from the source
# vendored in ../shared/vendor, and downloader/hf as /usr/local/bin/hf; user 1000:1000. It is
# written as an image tarball (docker-archive, which `ctr images import`, `docker load` and
# `crossplane xpkg push` read) for one architecture.
#
# Usage: bash hack/downloader-image.sh --arch amd64|arm64 --tag REF --out OUT.tar [--rootfs-image BIN]
#
# The Debian root filesystem is kept in the cache of hack/cache.sh, as rootfs/<arch>@<key>/,
# keyed by the package list and the recipe that makes it, so neither a change to hf alone nor a
# fresh clone bootstraps again (53 s for amd64 here). Another architecture than the machine's runs its programs under Debian's
# qemu-user-static, registered with binfmt_misc for the build only (several minutes).
#
# Reaches only Debian's mirror (apt, debootstrap) and, to build tools/images when its modules
# are not cached yet, the Go module proxy. Needs root (debootstrap, chroot, binfmt_misc).
set -euo pipefail
umask 022

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
images=$root/bin/images
# shellcheck source=hack/cache.sh
source "$root/hack/cache.sh"
rootfs_cache=$cache_dir/rootfs
log() { printf 'hack/downloader-image.sh: %s\n' "$*" >&2; }
usage() {
	log "usage: hack/downloader-image.sh --arch amd64|arm64 --tag REF --out OUT.tar [--rootfs-image BIN]"
	exit 2
}

arch='' tag='' out='' packer=''
while (($#)); do
	case $1 in
	--arch) arch=${2:-} ;;
	--tag) tag=${2:-} ;;
	--out) out=${2:-} ;;
	--rootfs-image) packer=${2:-} ;;
	*) usage ;;
	esac
	shift 2 || usage
done
[[ -n $tag && -n $out ]] || usage
case $arch in
amd64) qemu=x86_64 ;;
arm64) qemu=aarch64 ;;
*) usage ;;
esac
((EUID == 0)) || {
	log "run as root: debootstrap, chroot and binfmt_misc need it"
	exit 1
}
mkdir -p "$images" "$rootfs_cache"

tmp='' binfmt=''
# remove_tree removes a build folder, first unmounting what an interrupted debootstrap may
# have left mounted in it (/proc, /sys); --one-file-system never crosses into a mount.
remove_tree() {
	local m
	while read -r m; do
		umount -l "$m" || true
	done < <(findmnt -rn -o TARGET | awk -v p="$1/" 'index($0, p) == 1' | sort -r)
	rm -rf --one-file-system "$1"
}
cleanup() {
	if [[ -n $tmp ]]; then remove_tree "$tmp"; fi
	# A handler this run registered goes with it: the machine is left as it was found.
	if [[ -n $binfmt ]]; then printf -- '-1' >"$binfmt" || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# One build of an architecture's root filesystem at a time on this machine (node.sh and
# package.sh may run at once, from one checkout or two).
exec 8>"$rootfs_cache/.lock-$arch"
flock 8
for old in "$rootfs_cache/.$arch".* "$images/.downloader-$arch".*; do
	if [[ -e $old ]]; then remove_tree "$old"; fi
done

bash "$root/hack/apt-install.sh" debootstrap
if [[ $arch != "$(dpkg --print-architecture)" ]]; then
	bash "$root/hack/apt-install.sh" qemu-user-static
	if [[ ! -e /proc/sys/fs/binfmt_misc/register ]]; then
		mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
	fi
	if [[ ! -e /proc/sys/fs/binfmt_misc/qemu-$qemu ]]; then
		# The F flag opens the interpreter now, so it also runs inside the chroot.
		grep -v '^#' "/usr/lib/binfmt.d/qemu-$qemu.conf" >/proc/sys/fs/binfmt_misc/register
		binfmt=/proc/sys/fs/binfmt_misc/qemu-$qemu
	fi
fi

# The downloader's version is script.HubVersion, the production pin.
version=$(sed -n 's/^\tHubVersion *= *"\(.*\)"$/\1/p' "$root/script/script.go")
[[ -n $version ]] || {
	log "no HubVersion in script/script.go"
	exit 1
}
source_tarball=$root/../shared/vendor/huggingface_hub-$version-src.tar.gz
[[ -f $source_tarball ]] || {
	log "no ../shared/vendor/huggingface_hub-$version-src.tar.gz beside the repository: the vendored huggingface_hub $version source"
	exit 1
}

mirror=http://deb.debian.org/debian
suite=bookworm
mapfile -t packages < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' "$root/downloader/packages")
include=$(
	IFS=,
	printf '%s' "${packages[*]},ca-certificates"
)
# bootstrap DIR makes the base root filesystem in DIR: Debian's minimal system with the
# packages, left as debian:bookworm-slim and the Dockerfile's apt-get leave theirs (no apt
# lists or caches; no docs but copyrights, no man pages, info or translations), without the
# logs of the bootstrap or the host's resolv.conf and hostname that debootstrap copies in.
bootstrap() {
	local d=$1
	debootstrap --arch="$arch" --variant=minbase --include="$include" "$suite" "$d" "$mirror" >"$d.log" 2>&1 || {
		tail -n 20 "$d.log" >&2
		log "debootstrap failed"
		return 1
	}
	rm -rf "$d"/var/lib/apt/lists/* "$d"/usr/share/{man,groff,info,linda,lintian/overrides}/*
	rm -f "$d"/var/cache/apt/*.bin "$d"/var/cache/apt/archives/*.deb
	find "$d/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
	find "$d/usr/share/doc" -mindepth 1 -type d -empty -delete
	find "$d/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias ! -name all_languages \
		! -name languages ! -name currency ! -name l10n -exec rm -rf {} +
	rm -f "$d"/var/log/{bootstrap,dpkg,alternatives}.log "$d"/var/cache/ldconfig/aux-cache \
		"$d"/etc/resolv.conf "$d"/etc/hostname
}
base_key=$(printf '%s\n' "$arch" "$suite" "$mirror" "$include" "$(declare -f bootstrap)" | sha256sum | cut -c1-16)
base=$rootfs_cache/$arch@$base_key
if [[ ! -d $base ]]; then
	log "bootstrapping Debian $suite for $arch with $include (a minute or more; several under emulation)"
	start=$SECONDS
	tmp=$(mktemp -d "$rootfs_cache/.$arch.XXXXXX")
	bootstrap "$tmp/rootfs"
	mv "$tmp/rootfs" "$base"
	remove_tree "$tmp"
	tmp=
	log "bootstrapped $arch in $((SECONDS - start))s"
fi
cache_used "$base"

if [[ -z $packer ]]; then
	packer=$images/.rootfs-image-$arch
	CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -C "$root/tools/images" -trimpath -o "$packer" ./rootfs-image
fi

tmp=$(mktemp -d "$images/.downloader-$arch.XXXXXX")
rootfs=$tmp/rootfs
cp -a "$base" "$rootfs"
python=$(readlink "$rootfs/usr/bin/python3")
[[ $python == python3.* ]] || {
	log "the rootfs's /usr/bin/python3 is \"$python\", not a python3.X"
	exit 1
}
site=$rootfs/usr/local/lib/$python/dist-packages
mkdir -p "$site"
tar -xzf "$source_tarball" -C "$site" --strip-components=2 --no-same-owner --no-same-permissions \
	"huggingface_hub-$version/src/huggingface_hub"
install -m 0755 "$root/downloader/hf" "$rootfs/usr/local/bin/hf"
# The image's own hf must run: offline, and no bytecode written into the image.
got=$(chroot "$rootfs" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/tmp \
	HF_HUB_OFFLINE=1 HF_HUB_DISABLE_UPDATE_CHECK=1 HF_HUB_DISABLE_TELEMETRY=1 PYTHONDONTWRITEBYTECODE=1 \
	/usr/local/bin/hf version 2>&1) || {
	log "hf version in the $arch rootfs failed: $got"
	exit 1
}
[[ $got == *"version: $version"* ]] || {
	log "hf version in the $arch rootfs printed \"$got\", want $version"
	exit 1
}
"$packer" --dir "$rootfs" --out "$tmp/image.tar" --tag "$tag" --arch "$arch" \
	--user 1000:1000 --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd /bin/sh
mv -f "$tmp/image.tar" "$out"
log "built $out ($tag, $arch, $(du -h "$out" | cut -f1))"
