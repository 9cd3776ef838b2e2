#!/usr/bin/env bash
# Builds, once, the two images that the e2e suite's node (kubelet and containerd) runs, as
# tarballs for `ctr -n k8s.io images import`, without Docker and without pulling any image:
#
#   bin/images/downloader.tar  docker.io/hfops/downloader:<script.HubVersion>, what
#                              downloader/Dockerfile builds: Debian bookworm (debootstrap)
#                              with downloader/packages, huggingface_hub's source vendored in
#                              ../shared/vendor, downloader/hf; user 1000:1000
#   bin/images/pause.tar       docker.io/hfops/pause:local, the pod sandbox (tools/images/pause)
#
# and installs from Debian, when missing, what that node needs: containerd, runc,
# containernetworking-plugins, iproute2, and debootstrap for the downloader's rootfs.
#
# Each tarball is rebuilt only when the SHA-256 over its inputs (this script, the Go source of
# tools/images, and for the downloader the vendored source, downloader/hf and
# downloader/packages) differs from the one in its stamp, bin/images/<name>.tar.inputs. The
# debootstrap result is kept in bin/images/rootfs-<key>/, keyed by the package list and the
# recipe that makes it, so a change to hf alone does not bootstrap again. A second run costs
# well under a second. Builds go to temporary names that are renamed whole, and a stamp is
# written after its tarball, so an interrupted run never leaves a tarball that looks current.
#
# Pulls no image. Reaches only Debian's mirror (apt, debootstrap) and, to build tools/images
# when its modules are not cached yet, the Go module proxy. Needs root (debootstrap, chroot),
# Go, apt, flock.
set -euo pipefail
umask 022

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=$root/bin
images=$bin/images
mkdir -p "$images"

log() { printf 'hack/node.sh: %s\n' "$*" >&2; }

((EUID == 0)) || {
	log "run as root: debootstrap and chroot need it"
	exit 1
}

policy='' tmp=''
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
	if [[ -n $policy ]]; then rm -f "$policy"; fi
	if [[ -n $tmp ]]; then remove_tree "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Two runs at once (two checkouts sharing bin/ by symlink) must not build the same images.
exec 9>"$bin/.node.lock"
flock 9
# What a killed run left; the lock says that no other run is using it.
for old in "$images"/.{pause,rootfs,downloader}.*; do
	if [[ -e $old ]]; then remove_tree "$old"; fi
done

# 1. Debian's packages. policy-rc.d keeps containerd's package from starting a system
# containerd: the tests run their own, and nothing may be left running.
missing=()
for p in containerd runc containernetworking-plugins debootstrap iproute2; do
	if [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) != "install ok installed" ]]; then
		missing+=("$p")
	fi
done
if ((${#missing[@]})); then
	log "installing ${missing[*]}"
	if [[ ! -e /usr/sbin/policy-rc.d ]]; then
		policy=/usr/sbin/policy-rc.d
		printf '#!/bin/sh\nexit 101\n' >"$policy"
		chmod 755 "$policy"
	fi
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	if [[ -n $policy ]]; then
		rm -f "$policy"
		policy=
	fi
fi

# 2. The inputs. The downloader's version is script.HubVersion, the production pin, so the
# e2e suite runs what users build; its source must be vendored beside the repository.
version=$(sed -n 's/^\tHubVersion *= *"\(.*\)"$/\1/p' "$root/script/script.go")
[[ -n $version ]] || {
	log "no HubVersion in script/script.go"
	exit 1
}
tarball=../shared/vendor/huggingface_hub-$version-src.tar.gz
[[ -f $root/$tarball ]] || {
	log "no $tarball beside the repository: the vendored huggingface_hub $version source"
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
downloader_sum=$(digest hack/node.sh "${tool_sources[@]}" "$tarball" downloader/hf downloader/packages)
pause_sum=$(digest hack/node.sh "${tool_sources[@]}")

# fresh NAME SUM succeeds when bin/images/NAME.tar was built from inputs whose digest is SUM.
fresh() {
	[[ -f $images/$1.tar && -f $images/$1.tar.inputs && $(<"$images/$1.tar.inputs") == "$2" ]]
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

# install_image NAME SUM DIR ARGS... packs DIR into bin/images/NAME.tar with rootfs-image's
# ARGS, then writes the stamp.
install_image() {
	local name=$1 sum=$2 dir=$3
	shift 3
	"$bin/rootfs-image" --dir "$dir" --out "$tmp/$name.tar" "$@"
	# No stamp while the tarball changes: a stamp left from older inputs could match again.
	rm -f "$images/$name.tar.inputs"
	mv -f "$tmp/$name.tar" "$images/$name.tar"
	printf '%s\n' "$sum" >"$images/$name.tar.inputs"
	log "built bin/images/$name.tar ($(du -h "$images/$name.tar" | cut -f1))"
}

# 4. The pause image: one static binary, mtime 0 so the same binary gives the same layer.
if ! fresh pause "$pause_sum"; then
	tmp=$(mktemp -d "$images/.pause.XXXXXX")
	mkdir "$tmp/rootfs"
	install -m 0755 "$bin/pause" "$tmp/rootfs/pause"
	install_image pause "$pause_sum" "$tmp/rootfs" --tag docker.io/hfops/pause:local \
		--user 65535:65535 --entrypoint /pause --mtime 0
	remove_tree "$tmp"
	tmp=
fi

# 5. The downloader image.
if fresh downloader "$downloader_sum"; then
	exit 0
fi

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
	debootstrap --variant=minbase --include="$include" "$suite" "$d" "$mirror" >"$d.log" 2>&1 || {
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
base_key=$(printf '%s\n' "$suite" "$mirror" "$include" "$(declare -f bootstrap)" | sha256sum | cut -c1-16)
base=$images/rootfs-$base_key
if [[ ! -d $base ]]; then
	log "bootstrapping Debian $suite with $include (a minute or more)"
	start=$SECONDS
	tmp=$(mktemp -d "$images/.rootfs.XXXXXX")
	bootstrap "$tmp/rootfs"
	mv "$tmp/rootfs" "$base"
	remove_tree "$tmp"
	tmp=
	for old in "$images"/rootfs-*; do
		if [[ $old != "$base" ]]; then remove_tree "$old"; fi
	done
	log "bootstrapped in $((SECONDS - start))s"
fi

tmp=$(mktemp -d "$images/.downloader.XXXXXX")
rootfs=$tmp/rootfs
cp -a "$base" "$rootfs"
python=$(readlink "$rootfs/usr/bin/python3")
[[ $python == python3.* ]] || {
	log "the rootfs's /usr/bin/python3 is \"$python\", not a python3.X"
	exit 1
}
site=$rootfs/usr/local/lib/$python/dist-packages
mkdir -p "$site"
tar -xzf "$root/$tarball" -C "$site" --strip-components=2 --no-same-owner --no-same-permissions \
	"huggingface_hub-$version/src/huggingface_hub"
install -m 0755 "$root/downloader/hf" "$rootfs/usr/local/bin/hf"
# Offline, and no bytecode written into the image.
got=$(chroot "$rootfs" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/tmp \
	HF_HUB_OFFLINE=1 HF_HUB_DISABLE_UPDATE_CHECK=1 HF_HUB_DISABLE_TELEMETRY=1 PYTHONDONTWRITEBYTECODE=1 \
	/usr/local/bin/hf version 2>&1) || {
	log "hf version in the rootfs failed: $got"
	exit 1
}
[[ $got == *"version: $version"* ]] || {
	log "hf version in the rootfs printed \"$got\", want $version"
	exit 1
}
install_image downloader "$downloader_sum" "$rootfs" --tag "docker.io/hfops/downloader:$version" \
	--user 1000:1000 --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd /bin/sh
