# hf-download: download one Hugging Face repo into a local directory, once.
#
# Every download Job runs this as ["/bin/sh", "-c", <this text>, "hf-download"].
# It reads only environment variables (set by the function; see script.go), so
# user strings never become shell code. HF_TOKEN, when set, is read by `hf`
# itself: this script never prints it, passes it as an argument or writes it.
#
# POSIX sh: it must run under dash and busybox sh. Tools used besides the shell:
# cat date find mkdir mktemp mv rm sort stat tail (and python3 only when `hf`
# is missing).

# No globbing and newline-only field splitting anywhere: glob lists arrive
# newline-separated, and no value may ever be expanded as a pattern.
set -fu
nl='
'
IFS=$nl

marker_name=.hf-download-complete.json
hub_pin=huggingface_hub==1.33.0
xet_pin=hf_xet==1.6.0

log() { printf 'hf-download: %s\n' "$1"; }

# die makes its reason the last line of output: with FallbackToLogsOnError
# that line is what Kubernetes shows as the pod's termination message.
die() {
	printf 'hf-download: %s\n' "$1" >&2
	exit 1
}

# json_str prints $1 as a JSON string literal. Values are validated upstream,
# but the marker has to stay valid JSON whatever they hold.
json_str() {
	case $1 in
	*\\* | *\"* | *[[:cntrl:]]*) ;;
	*)
		printf '"%s"' "$1"
		return
		;;
	esac
	_s=$1 _out=
	while [ -n "$_s" ]; do
		_rest=${_s#?}
		_c=${_s%"$_rest"}
		_s=$_rest
		case $_c in
		\\ | \") _out=$_out\\$_c ;;
		[[:cntrl:]]) _out=$_out$(printf '\\u%04x' "'$_c") ;;
		*) _out=$_out$_c ;;
		esac
	done
	printf '"%s"' "$_out"
}

# json_list prints a newline-separated list as a JSON array; empty lines are
# dropped by the newline-only field splitting, exactly as for hf's argv below.
json_list() {
	_list= _sep=
	for _g in $1; do
		_list=$_list$_sep$(json_str "$_g")
		_sep=', '
	done
	printf '[%s]' "$_list"
}

# is_count: a non-negative decimal integer, as the marker's counts are.
is_count() {
	case $1 in
	'' | *[!0-9]*) return 1 ;;
	esac
}

# summary writes the one-line result the function reads from the pod status.
# A missing termination log (e.g. outside Kubernetes) must not fail the Job.
summary() {
	printf '{"commit":%s,"files":%s,"bytes":%s,"seconds":%s}\n' \
		"$(json_str "$1")" "$2" "$3" "$4" 2>/dev/null >"$termlog" ||
		log "warning: cannot write the summary to $termlog"
}

repo=${HFDL_REPO_ID:-}
dir=${HFDL_LOCAL_DIR:-}
repo_type=${HFDL_REPO_TYPE:-model}
revision=${HFDL_REVISION:-main}
include=${HFDL_INCLUDE:-}
exclude=${HFDL_EXCLUDE:-}
workers=${HFDL_MAX_WORKERS:-8}
force=${HFDL_FORCE:-false}
content_hash=${HFDL_CONTENT_HASH:-}
termlog=${HFDL_TERMINATION_LOG:-/dev/termination-log}

[ -n "$repo" ] || die "HFDL_REPO_ID is required (the Hugging Face repo id, e.g. org/name)"
[ -n "$dir" ] || die "HFDL_LOCAL_DIR is required (the directory to download into)"
case $repo in
-*) die "HFDL_REPO_ID must not start with '-': \"$repo\"" ;;
esac
case $repo_type in
model | dataset) ;;
*) die "HFDL_REPO_TYPE must be model or dataset, not \"$repo_type\"" ;;
esac
if ! is_count "$workers" || [ "$workers" -eq 0 ]; then
	die "HFDL_MAX_WORKERS must be a positive integer, not \"$workers\""
fi
case $force in
true | false) ;;
*) die "HFDL_FORCE must be true or false, not \"$force\"" ;;
esac

marker=$dir/$marker_name

# The marker's first lines identify what is on disk. They are regenerated here
# byte for byte and compared with the marker, so no JSON parser is needed.
identity=$(printf '{\n  "repoId": %s,\n  "repoType": %s,\n  "revision": %s,\n  "include": %s,\n  "exclude": %s,\n  "contentHash": %s,' \
	"$(json_str "$repo")" "$(json_str "$repo_type")" "$(json_str "$revision")" \
	"$(json_list "$include")" "$(json_list "$exclude")" "$(json_str "$content_hash")")

if [ "$force" = false ] && [ -f "$marker" ]; then
	marker_text=$(cat "$marker") || die "cannot read $marker"
	case $marker_text in
	"$identity$nl"*)
		commit= files= bytes=
		for line in $marker_text; do
			case $line in
			'  "commit": "'*'",') commit=${line#'  "commit": "'} commit=${commit%'",'} ;;
			'  "files": '*,) files=${line#'  "files": '} files=${files%,} ;;
			'  "bytes": '*,) bytes=${line#'  "bytes": '} bytes=${bytes%,} ;;
			esac
		done
		# A marker cut short (a full disk, say) is not a complete download.
		if is_count "$files" && is_count "$bytes"; then
			log "$repo@$revision is already complete in $dir (commit ${commit:-unknown}); nothing to do"
			summary "$commit" "$files" "$bytes" 0
			exit 0
		fi
		;;
	esac
	log "the completion marker in $dir does not match this download; downloading again"
fi

# A Python image without a baked hf: install the pinned CLI into the writable
# temp dir (the root filesystem is read-only) and run it from there.
if ! command -v hf >/dev/null 2>&1; then
	command -v python3 >/dev/null 2>&1 ||
		die "hf is not on PATH and python3 is missing, so $hub_pin cannot be installed: use an image with Python or the downloader image"
	pydir=$(mktemp -d "${TMPDIR:-/tmp}/hf-download.XXXXXX") ||
		die "cannot create a directory under ${TMPDIR:-/tmp} to install $hub_pin"
	log "hf is not on PATH; installing $hub_pin $xet_pin into $pydir"
	rc=0
	# pip never needs the token: keep it away from pip and its index.
	(
		unset HF_TOKEN
		exec python3 -m pip install --no-cache-dir --disable-pip-version-check \
			--target "$pydir" "$hub_pin" "$xet_pin"
	) || rc=$?
	[ "$rc" -eq 0 ] || die "installing $hub_pin $xet_pin failed (exit $rc)"
	PATH=$pydir/bin:$PATH
	PYTHONPATH=$pydir${PYTHONPATH:+:$PYTHONPATH}
	export PATH PYTHONPATH
fi

mkdir -p "$dir" || die "cannot create $dir"
# Whatever happens next, an old marker must not claim this download is done.
rm -f "$marker" || die "cannot remove the old completion marker $marker"

set -- download "$repo" --repo-type "$repo_type" --revision "$revision" \
	--local-dir "$dir" --max-workers "$workers"
for g in $include; do
	set -- "$@" --include "$g"
done
for g in $exclude; do
	set -- "$@" --exclude "$g"
done
if [ "$force" = true ]; then
	log "HFDL_FORCE is true: every file is downloaded again"
	set -- "$@" --force-download
fi

log "downloading $repo_type $repo@$revision into $dir"
start=$(date +%s)
rc=0
hf "$@" || rc=$?
[ "$rc" -eq 0 ] || die "download of $repo@$revision failed (exit $rc)"
seconds=$(($(date +%s) - start))

# Count what the repo put on disk: not hf's .cache, nor a temporary marker
# left by a run killed while writing it (the marker itself is gone by now).
sizes=$(cd "$dir" && find . -path ./.cache -prune -o -type f \
	! -path "./$marker_name.tmp.*" -exec stat -c %s {} +) ||
	die "cannot measure the files in $dir"
files=0 bytes=0
for size in $sizes; do
	files=$((files + 1))
	bytes=$((bytes + size))
done

# hf keeps a metadata file per downloaded file in local-dir mode: commit sha,
# etag, timestamp. Files left from an earlier revision keep their old commit,
# so take the commit of the most recently written one.
commit=
meta=$dir/.cache/huggingface/download
if [ -d "$meta" ]; then
	latest=$(find "$meta" -type f -name '*.metadata' -exec sh -c '
		for f; do
			{ IFS= read -r c; IFS= read -r e; IFS= read -r t; } <"$f"
			printf "%s %s\n" "${t:-0}" "$c"
		done' sh {} + | sort -n | tail -n 1)
	commit=${latest#* }
	case $commit in
	*[!0-9a-f]*) commit= ;;
	esac
	[ "${#commit}" -eq 40 ] || commit=
fi

completed=$(date -u +%Y-%m-%dT%H:%M:%SZ)
tmp=$marker.tmp.$$
if ! printf '%s\n  "commit": %s,\n  "files": %s,\n  "bytes": %s,\n  "seconds": %s,\n  "completedAt": %s\n}\n' \
	"$identity" "$(json_str "$commit")" "$files" "$bytes" "$seconds" "$(json_str "$completed")" >"$tmp" ||
	! mv -f "$tmp" "$marker"; then
	rm -f "$tmp"
	die "cannot write the completion marker $marker"
fi

summary "$commit" "$files" "$bytes" "$seconds"
log "downloaded $repo@$revision: $files files, $bytes bytes in ${seconds}s (commit ${commit:-unknown})"
