#!/usr/bin/env bash
# Builds the downloader image, what downloader/Dockerfile describes, without Docker and
# without pulling any image: a Debian stable (trixie) root filesystem (debootstrap, minbase) with
# python3 and ca-certificates, and the download engine of the lock downloader/requirements.txt
# (huggingface_hub's hf CLI, hf_xet, every dependency) in its dist-packages, hf as
# /usr/local/bin/hf; user 1000:1000. It is written as an image tarball (docker-archive, which
# `ctr images import`, `docker load` and `crossplane xpkg push` read) for one architecture.
#
# The engine is installed by the host's pip (Debian's /usr/bin/python3, not a pyenv build) for
# the rootfs's Python and architecture: the lock's wheels only, each checked against its hash,
# so neither pip nor a compiler is in the image, and no Python runs under emulation but the
# final check.
#
# Usage: bash hack/downloader-image.sh --arch amd64|arm64 --tag REF --out OUT.tar [--rootfs-image BIN]
#
# The Debian root filesystem is kept in the cache of hack/cache.sh, as rootfs/<arch>@<key>/,
# keyed by the package list and the recipe that makes it, so neither a change to the lock nor a
# fresh clone bootstraps again (about a minute for amd64 here). Another architecture than the machine's runs its programs under Debian's
# qemu-user-static, registered with binfmt_misc for the build only (several minutes).
#
# Reaches only Debian's mirror (apt, debootstrap), the Python package index (pip) and, to build
# tools/images when its modules are not cached yet, the Go module proxy. Needs root (debootstrap, chroot, binfmt_misc).
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

bash "$root/hack/apt-install.sh" debootstrap python3-pip
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

# The engine's version is script.HubVersion, what the lock pins (script's tests check).
version=$(sed -n 's/^\tHubVersion *= *"\(.*\)"$/\1/p' "$root/script/script.go")
[[ -n $version ]] || {
	log "no HubVersion in script/script.go"
	exit 1
}
lock=$root/downloader/requirements.txt

mirror=http://deb.debian.org/debian
suite=trixie
# ca-certificates: truststore (httpx2's TLS) and hf_xet read the system's CA store.
include=python3,ca-certificates
# bootstrap DIR makes the base root filesystem in DIR: Debian's minimal system with the
# packages, left as debian:trixie-slim and the Dockerfile's apt-get leave theirs (no apt
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
pyver=${python#python}
machine=$qemu
# pip's bin/hf starts with the python that ran pip, /usr/bin/python3, which the rootfs has too.
/usr/bin/python3 -m pip install --quiet --disable-pip-version-check --no-input --root-user-action=ignore \
	--no-cache-dir --no-compile --target "$site" \
	--implementation cp --python-version "$pyver" --abi "cp${pyver/./}" \
	--platform "manylinux_2_28_$machine" --platform "manylinux2014_$machine" --platform "manylinux_2_17_$machine" \
	--only-binary=:all: --require-hashes --no-deps -r "$lock"
install -m 0755 "$site/bin/hf" "$rootfs/usr/local/bin/hf"
rm -r "${site:?}/bin"
# The image's own hf must run, hf_xet's native library load: offline, and no bytecode written
# into the image.
got=$(chroot "$rootfs" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/tmp NO_COLOR=1 \
	HF_HUB_OFFLINE=1 HF_HUB_DISABLE_UPDATE_CHECK=1 HF_HUB_DISABLE_TELEMETRY=1 PYTHONDONTWRITEBYTECODE=1 \
	/bin/sh -c '/usr/bin/python3 -c "import hf_xet" && /usr/local/bin/hf version' 2>&1) || {
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
