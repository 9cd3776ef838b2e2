# hf-download: download one Hugging Face repo into a local directory, once.
#
# Every download Job runs this as /bin/sh /opt/hf-download/download.sh, from the
# ConfigMap the function composes once per ModelDownload.
# It reads only environment variables (set by the function; see script.go), so
# user strings never become shell code. HF_TOKEN, when set, is read by `hf`
# itself (and by huggingface_hub in the helper): this script never prints it,
# passes it as an argument or writes it.
#
# A download holds an exclusive lock on the model directory, plans with the
# helper hfdl.py (the commit, the exact files and their hashes, the space they
# need), runs `hf download` at that commit under a watchdog, then makes the
# directory an exact, verified mirror of the plan and reads the model card.
# Without a python3 that imports huggingface_hub it downloads as hf alone
# does, unverified. While hf runs, the helper reports progress in the
# background to a ConfigMap, when the function asked for it (see
# reporter_start).
#
# POSIX sh: it must run under dash and busybox sh. Tools used besides the shell:
# cat date find flock mkdir mkfifo mktemp mv rm sed sleep sort stat tail tee tr,
# and python3 (the helper, and pip when `hf` is missing).

# No globbing and newline-only field splitting anywhere: glob lists arrive
# newline-separated, and no value may ever be expanded as a pattern.
set -fu
nl='
'
IFS=$nl

marker_name=.hf-download-complete.json
lock_name=.hf-download.lock
hub_pin=huggingface_hub==2.4.0
xet_pin=hf_xet==1.8.0

log() { printf 'hf-download: %s\n' "$1"; }

# oneline prints $1 with every control character (newlines included) turned
# into a space, so a reason stays one line of plain text whatever it quotes.
oneline() {
	printf '%s' "$1" | tr '[:cntrl:]' ' '
}

# die ends the run with a reason, in plain text on one line: the last line of
# stderr (prefixed hf-download:) and, alone, the whole termination log, so the
# pod's termination message is exactly the reason whatever hf printed before.
# A download failure's reason starts with "download of <repo>@<revision>
# failed: ". A termination log that cannot be written (outside Kubernetes)
# changes nothing: the exit code stays 1, and the log line is still there.
die() {
	reporter_stop
	hasher_stop kill
	[ -z "${work:-}" ] || rm -rf "$work"
	# A check's staging directory: its files are links, or partial.
	[ -z "${live:-}" ] || [ "$dir" = "$live" ] || rm -rf "$dir"
	_reason=$(oneline "$1")
	printf 'hf-download: %s\n' "$_reason" >&2
	if [ -n "${termlog:-}" ]; then
		printf '%s\n' "$_reason" 2>/dev/null >"$termlog" || :
	fi
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

# summary writes the one-line result the function reads from the pod status:
# commit files bytes seconds verified [card JSON]. A missing termination log
# (e.g. outside Kubernetes) must not fail the Job.
summary() {
	_card=
	[ -z "${6:-}" ] || _card=",\"card\":$6"
	printf '{"commit":%s,"files":%s,"bytes":%s,"seconds":%s,"verified":%s%s}\n' \
		"$(json_str "$1")" "$2" "$3" "$4" "$5" "$_card" 2>/dev/null >"$termlog" ||
		log "warning: cannot write the summary to $termlog"
}

# pause sleeps $1 seconds so that a TERM ends it at once: the trap runs while
# the shell waits. sleep holds neither the lock (fd 9) nor the log.
pause() {
	sleep "$1" </dev/null >/dev/null 2>&1 9>&- &
	wait "$!" || :
}

# work_start makes work, the run's private temp dir (the helper's plan and
# results), and there hf_err, a file that the stderr of hf and the helper goes
# to, through a FIFO read by tee, as it goes to the pod log, so that a failure
# can be told in one plain line. Without a writable temp dir there is no
# helper; without these tools, or a FIFO, commands run as they are, and a
# failure says only the exit code.
work_start() {
	hf_err=
	work=$(mktemp -d "${TMPDIR:-/tmp}/hf-run.XXXXXX" 2>/dev/null) || work=
	[ -n "$work" ] || return 0
	command -v mkfifo >/dev/null 2>&1 && command -v tee >/dev/null 2>&1 &&
		command -v sed >/dev/null 2>&1 || return 0
	! mkfifo "$work/fifo" 2>/dev/null || hf_err=$work/stderr
}

# progress prints the bytes of the files under the model directory, hf's
# .incomplete files included: what grows while hf downloads. Files that vanish
# while find walks (hf renames as it goes) are skipped.
progress() {
	_sum=0
	for _s in $(find "$dir" -type f -exec stat -c %s {} + 2>/dev/null); do
		_sum=$((_sum + _s))
	done
	printf '%s' "$_sum"
}

# watchdog stops hf (pid $1) when nothing under the model directory has
# changed for stall_timeout seconds, and then exits 3; it exits 0 on TERM (hf
# ended) or when hf is gone. It looks every stall_poll seconds. It runs in a
# subshell of its own, which must not hold the lock (fd 9): it closes it here,
# as a redirection of the call (watchdog 9>&-) would leave the shell's copy of
# fd 9, kept to restore it after, open in that subshell.
watchdog() {
	exec 9>&-
	_ws=
	trap 'kill "$_ws" 2>/dev/null; exit 0' TERM
	_last=$(progress) _since=$(date +%s)
	while kill -0 "$1" 2>/dev/null; do
		sleep "$stall_poll" </dev/null >/dev/null 2>&1 &
		_ws=$!
		wait "$_ws" || :
		_now=$(progress)
		if [ "$_now" != "$_last" ]; then
			_last=$_now _since=$(date +%s)
		elif [ $(($(date +%s) - _since)) -ge "$stall_timeout" ]; then
			# Stopping hf: the TERM that ends the watch must not lose this.
			trap '' TERM
			kill -TERM "$1" 2>/dev/null
			exit 3
		fi
	done
}

# run runs "$@" (hf, or the helper) and sets rc to its exit code, and stalled
# when watch is set and the watchdog stopped it. tee opens the FIFO for
# reading, the command's shell for writing: each open waits for the other, so
# nothing it writes is lost, and tee ends when the command (and whatever
# inherited its stderr) is gone. It runs in the background so that a TERM
# (the pod deleted, its Job replaced) reaches this shell's trap while it
# waits, and stops it at once.
run() {
	rc=0 stalled=
	if [ -z "$hf_err" ]; then
		"$@" &
	else
		tee "$hf_err" <"$work/fifo" >&2 9>&- &
		_tee=$!
		"$@" 2>"$work/fifo" &
	fi
	hf_pid=$!
	[ -z "$stopping" ] || kill -TERM "$hf_pid" 2>/dev/null || :
	_wd=
	if [ -n "$watch" ]; then
		watchdog "$hf_pid" &
		_wd=$!
	fi
	# A trapped signal ends wait early: wait again until it is gone.
	while :; do
		rc=0
		wait "$hf_pid" || rc=$?
		kill -0 "$hf_pid" 2>/dev/null || break
	done
	hf_pid=
	if [ -n "$_wd" ]; then
		kill -TERM "$_wd" 2>/dev/null || :
		_wrc=0
		wait "$_wd" || _wrc=$?
		[ "$_wrc" -ne 3 ] || stalled=1
	fi
	[ -z "$hf_err" ] || wait "$_tee" || :
	[ -z "$stopping" ] || die "stopped by SIGTERM before the download of $repo@$revision finished"
}

# The kubelet stops a pod with TERM. This shell is the container's PID 1, for
# which the kernel ignores TERM unless it is handled: without the trap the pod
# would run on until the grace period ends and it is killed, hf still writing.
# While hf or the helper runs, run stops it and then the run; otherwise (the
# wait for the lock, say) the run ends here.
stopping= hf_pid= watch= work= reporter= reporting= finished= hasher=
on_term() {
	stopping=1
	if [ -n "$finished" ]; then
		# The download is complete: only the last progress report is left.
		reporter_stop
	elif [ -n "$hf_pid" ]; then
		kill -TERM "$hf_pid" 2>/dev/null || :
	else
		die "stopped by SIGTERM"
	fi
}
trap on_term TERM INT

# Sed programs for hf_failure. They are constants: no value is ever put into
# shell code or a sed program, only read as data by sed.
_esc=$(printf '\033.')
_esc=${_esc%.}
_cr=$(printf '\r.')
_cr=${_cr%.}
# Plain text: colours (ESC [ parameters, intermediates, final byte) removed,
# and a line break at each CR (tqdm redraws its bars after a CR).
sed_plain="s|$_esc\\[[0-?]*[ -/]*[@-~]||g
s|$_cr|\\$nl|g"
# The first line of hf's "Error: " message, without "Error: ".
sed_error_first='/^Error: /{
s/^Error: //
p
q
}'
# The reset time that hf_raise_for_status quotes from a 429's RateLimit header.
sed_retry_after='/^Retry after [0-9][0-9]* seconds/{
s/^Retry after \([0-9]*\) seconds.*/\1/
p
q
}'
# That message whole: its line and what follows, less hf's hints.
sed_error_block='/^Error: /,${
/^Hint: /!p
}'
# The warning of an hf download that kept an existing local dir because the
# Hub could not be asked (snapshot_download), and the cause it quotes.
stale_re='^Returning existing local_dir .* as remote repo cannot be accessed in .snapshot_download. ('
sed_stale_first="\\|$stale_re|{
s|$stale_re||
p
q
}"
sed_stale_block="\\|$stale_re|,\$p"
# A full volume, whatever hf made of it: Python's OSError or hf_xet's.
sed_disk_full='/No space left on device/{
p
q
}
/\[Errno 28\]/{
p
q
}
/os error 28)/{
p
q
}'
# The last line that says something (a traceback ends with the exception).
sed_last_line='/[^[:space:]]/h
${
x
p
}'

# cut300 cuts its one line of input to at most 300 bytes, without control
# characters and without half a UTF-8 character at the end: bytes whatever the
# locale (LC_ALL=C), and 150+150 as some regex libraries stop at 255 repeats.
_l2=$(printf '\300-\337')
_l3=$(printf '\340-\357')
_l4=$(printf '\360-\367')
_cont=$(printf '\200-\277')
sed_cut300="s/[[:cntrl:]]//g
s/^\\(.\\{150\\}.\\{150\\}\\).*/\\1/
s/[$_l2]\$//
s/[$_l3][$_cont]\\{0,1\\}\$//
s/[$_l4][$_cont]\\{0,2\\}\$//"
cut300() { LC_ALL=C sed -e "$sed_cut300"; }

# reporter_start starts the progress reporter, `hfdl.py progress` (see there),
# in the background, without the lock (fd 9) or any input, when the function
# asked for reports (the file progress beside the helper names the progress
# ConfigMap as <namespace>/<name>) and the pod can reach the API server with a
# token and its CA (the projected token volume, the in-cluster service env);
# otherwise it says once that progress is not reported. The token's path goes
# to the helper in the env, never the token.
reporter_start() {
	_pf=${helper%/*}/progress _why= _target=
	if [ ! -f "$_pf" ]; then
		_why="no file $_pf names a ConfigMap for it"
	else
		_target=$(cat "$_pf") || _target=
		case $_target in
		*/*/* | /* | */ | *[!a-z0-9./-]* | '') _why="$_pf does not name a ConfigMap as <namespace>/<name>" ;;
		*/*) ;;
		*) _why="$_pf does not name a ConfigMap as <namespace>/<name>" ;;
		esac
	fi
	if [ -n "$_why" ]; then
		:
	elif [ ! -f "$progress_token" ]; then
		_why="no token at $progress_token"
	elif [ ! -f "$progress_ca" ]; then
		_why="no CA certificate at $progress_ca"
	elif [ -z "${KUBERNETES_SERVICE_HOST:-}" ] || ! is_count "${KUBERNETES_SERVICE_PORT:-}"; then
		_why="KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT do not name the API server"
	elif [ -z "$work" ] || [ ! -f "$helper" ] || ! command -v python3 >/dev/null 2>&1; then
		_why="the helper cannot run"
	fi
	case $content_hash in
	'' | *[!-._a-zA-Z0-9]*) [ -n "$_why" ] || _why="HFDL_CONTENT_HASH is not a ConfigMap key" ;;
	esac
	if [ -n "$_why" ]; then
		log "progress is not reported: $_why"
		return 0
	fi
	HFDL_PROGRESS_TOKEN=$progress_token HFDL_PROGRESS_CA=$progress_ca
	HFDL_PROGRESS_INTERVAL=$progress_interval HFDL_CONTENT_HASH=$content_hash
	export HFDL_PROGRESS_TOKEN HFDL_PROGRESS_CA HFDL_PROGRESS_INTERVAL HFDL_CONTENT_HASH
	reporting=1
	log "reporting progress to ConfigMap $_target every $progress_interval s at most"
	python3 "$helper" progress "$work" </dev/null 9>&- &
	reporter=$!
}

# hasher_start starts `hfdl.py hash` (see there) in the background, without
# the lock or any input, when there is a plan: it hashes the files while hf
# writes them, so that the verification after hf reads again only what it
# could not follow.
hasher_start() {
	[ -n "$planned" ] || return 0
	python3 "$helper" hash "$work" </dev/null 9>&- &
	hasher=$!
}

# hasher_stop tells the hasher, if it runs, that hf has ended ($1 done: it
# catches up and writes what it hashed) or stops it ($1 kill), and waits
# until it is gone.
hasher_stop() {
	[ -n "${hasher:-}" ] || return 0
	if [ "$1" != done ] || ! : >"$work/hf-ended"; then
		kill -TERM "$hasher" 2>/dev/null || :
	fi
	wait "$hasher" 2>/dev/null || :
	hasher=
}

# reporter_stop stops the reporter, if it runs, and waits until it is gone.
reporter_stop() {
	[ -n "${reporter:-}" ] || return 0
	_r=$reporter
	reporter=
	kill -TERM "$_r" 2>/dev/null || :
	wait "$_r" 2>/dev/null || :
}

# hf_failure prints why hf (or the helper, which words huggingface_hub's
# errors as hf does) failed, in one line, from its exit code $1 and the stderr
# it wrote, or nothing when it did not fail. hf's cli/hf.py (main),
# cli/_errors.py and utils/_http.py (hf_raise_for_status) say what it prints.
# prog names the program in a reason that can only give its exit code.
hf_failure() {
	_plain=$work/plain
	LC_ALL=C sed -e "$sed_plain" "$hf_err" >"$_plain" 2>/dev/null || return 0
	_stale=
	if [ "$1" -eq 0 ]; then
		# hf download exits 0 when the Hub refuses or cannot be reached but
		# the local dir holds files: it logs a warning and keeps them as they
		# are, which is not the revision asked for.
		_first=$(LC_ALL=C sed -n -e "$sed_stale_first" "$_plain")
		[ -n "$_first" ] || return 0
		_block=$(LC_ALL=C sed -n -e "$sed_stale_block" "$_plain")
		# The lock file alone is enough for hf to keep the directory.
		_kept=$(cd "$dir" && find . -path ./.cache -prune -o -type f ! -path "./$lock_name" -print 2>/dev/null)
		[ -z "$_kept" ] || _stale="; hf left the files already in $dir unchecked"
	else
		_first=$(LC_ALL=C sed -n -e "$sed_error_first" "$_plain")
		_block=$(LC_ALL=C sed -n -e "$sed_error_block" "$_plain")
	fi
	if [ -n "$(LC_ALL=C sed -n -e "$sed_disk_full" "$_plain")" ]; then
		printf 'disk full: no space left on device in %s' "$dir"
		return
	fi
	_denied="access denied (gated or private repo; check the token and accept the licence at $repo_url)"
	_missing="repository not found (or private and the token cannot read it; check the token and the name at $repo_url)"
	_norev="revision $revision not found in $repo_url"
	_refused="the token was refused (401); check the token"
	case $_first in
	"Access denied. "*" requires approval.")
		printf '%s' "$_denied"
		return
		;;
	"Model '"*"' not found." | "Dataset '"*"' not found." | "Repository '"*"' not found." | \
		"Model not found." | "Dataset not found." | "Repository not found.")
		printf '%s' "$_missing"
		return
		;;
	"Revision not found in "*)
		printf '%s' "$_norev"
		return
		;;
	esac
	# A rate limit that outlasted hf's retries (http_backoff retries a 429
	# five times, after the reset time the Hub gives).
	case $_block in
	*"429 Too Many Requests"*)
		_reset=$(LC_ALL=C sed -n -e "$sed_retry_after" "$_plain")
		if [ -n "$_reset" ]; then
			printf "rate limited by the Hub (HTTP 429) after hf's retries; the Hub's limit resets in %s s%s" "$_reset" "$_stale"
		else
			printf "rate limited by the Hub (HTTP 429) after hf's retries; the Hub gave no reset time%s" "$_stale"
		fi
		return
		;;
	esac
	# hf_raise_for_status's own wording, as the stale warning quotes it.
	case $_block in
	*"Cannot access gated repo for url "*)
		printf '%s%s' "$_denied" "$_stale"
		return
		;;
	*"Repository Not Found for url: "*)
		printf '%s%s' "$_missing" "$_stale"
		return
		;;
	*"Revision Not Found for url: "*)
		printf '%s%s' "$_norev" "$_stale"
		return
		;;
	esac
	# A refused token: the status in the message (not in the URL after it),
	# or the Hub's own words on a later line.
	case ${_first%%" for url "*} in
	*"401 "* | *Unauthorized*)
		printf '%s%s' "$_refused" "$_stale"
		return
		;;
	esac
	case $_block in
	*"Invalid credentials"* | *"Invalid username or password"*)
		printf '%s%s' "$_refused" "$_stale"
		return
		;;
	esac
	if [ -n "$_first" ]; then
		printf '%s%s' "$(printf '%s\n' "$_first" | cut300)" "$_stale"
		return
	fi
	# No message of hf's own: an uncaught exception ends its traceback with
	# "SomeError: what", a killed hf says nothing.
	_last=$(LC_ALL=C sed -n -e "$sed_last_line" "$_plain")
	case ${_last%%:*} in
	*[!A-Za-z0-9_.]* | '') ;;
	*Error | *Exception | *Interrupt | *Exit)
		printf '%s exited with code %s: %s' "$prog" "$1" "$(printf '%s\n' "$_last" | cut300)"
		return
		;;
	esac
	printf '%s exited with code %s' "$prog" "$1"
}

# helper_failed ends the run with the reason the helper wrote, or the one its
# stderr gives, after it exited with $rc.
helper_failed() {
	why=
	[ ! -f "$work/reason" ] || why=$(cat "$work/reason")
	[ -n "$why" ] || [ -z "$hf_err" ] || why=$(hf_failure "$rc")
	[ -n "$why" ] || why="hfdl.py exited with code $rc"
	die "download of $repo@$revision failed: $why"
}

# A check (HFDL_RESYNC=true) of a complete download whose revision may have
# moved on the Hub: resync_check asks the Hub which commit the revision names
# now, in one request for the revision and none for a file (hfdl.py resolve),
# and sets upstream. When it moved, resync_stage makes a staging directory the
# download's (hfdl.py stage: a hard link to every file of $dir, the lock's
# included, so that what did not change is not fetched again and the lock
# stays one, and a copy of hf's metadata, which hf rewrites in place); the
# download, the pruning and the verification then happen there, as in a first
# run, while $dir stays as it is; resync_swap puts the staging directory in
# $dir's place in one step and removes the old one (hfdl.py swap). A reader of
# $dir sees the old commit's files or the new commit's, never some of each.
resync_check() {
	[ -n "$work" ] && [ -f "$helper" ] && command -v python3 >/dev/null 2>&1 ||
		die "cannot check $repo@$revision against the Hub: the helper $helper cannot run (it needs python3 and a temporary directory)"
	prog=hfdl.py
	run python3 "$helper" resolve "$work"
	case $rc in
	0) ;;
	3) die "cannot check $repo@$revision against the Hub: python3 cannot import huggingface_hub" ;;
	*) helper_failed ;;
	esac
	upstream=$(cat "$work/result") || die "cannot read the commit in $work"
	case $upstream in
	*[!0-9a-f]* | '') die "the Hub named no commit for $revision but \"$upstream\"" ;;
	esac
}

resync_stage() {
	live=$dir
	HFDL_LIVE_DIR=$live
	export HFDL_LIVE_DIR
	run python3 "$helper" stage "$work"
	[ "$rc" -eq 0 ] || helper_failed
	dir=$(cat "$work/result") || die "cannot read the staging directory in $work"
	[ -d "$dir" ] || die "the staging directory \"$dir\" is not there"
	marker=$dir/$marker_name
	HFDL_LOCAL_DIR=$dir
	export HFDL_LOCAL_DIR
}

resync_swap() {
	prog=hfdl.py
	run python3 "$helper" swap "$work"
	[ "$rc" -eq 0 ] || helper_failed
	dir=$live marker=$live/$marker_name
	# The last progress report counts what is now at the model's path.
	HFDL_LOCAL_DIR=$dir
	export HFDL_LOCAL_DIR
}

# What every download sets, here once rather than in each Job: hf talks to the
# Hub alone (no PyPI version check, no telemetry, which hf_xet reads too),
# writes plain text to the pod's log (huggingface_hub 2 colours it even when
# no terminal reads it), and keeps its own files under a writable HOME (a
# container's user without a passwd entry gets /, which the read-only root
# filesystem cannot hold).
HF_HUB_DISABLE_UPDATE_CHECK=1
HF_HUB_DISABLE_TELEMETRY=1
NO_COLOR=1
export HF_HUB_DISABLE_UPDATE_CHECK HF_HUB_DISABLE_TELEMETRY NO_COLOR
case ${HOME:-/} in
/)
	HOME=${TMPDIR:-/tmp}/home
	export HOME
	mkdir -p "$HOME" || die "cannot create a HOME under ${TMPDIR:-/tmp}"
	;;
esac

# hf_xet's download buffer holds fetched Xet data until it is written to disk,
# and is what dominates its memory. hf_xet sizes it from the memory it sees,
# which in a container can be the node's; so it is bounded here by the
# container's own limit (cgroup v2's memory.max, or v1's limit): half of what
# Python, hf and hf_xet's runtime leave (384 MiB), at least 128 MiB, shared as
# hf_xet shares it: a half as base, an eighth per file being downloaded, the
# whole as cap. hf_xet takes a term's bytes at once, so the base and one file's
# part (80 MiB at the least, hf_xet's own floor) must hold the Hub's largest
# term, a 64 MiB xorb. Values set in the environment win. Logs what hf_xet gets.
xet_buffers() {
	_limit=
	for _f in "$cgroup/memory.max" "$cgroup/memory/memory.limit_in_bytes"; do
		if [ -r "$_f" ]; then
			_limit=$(cat "$_f") || _limit=
			break
		fi
	done
	# No limit: "max" (v2), or v1's page-rounded 2^63, beyond any machine.
	case $_limit in '' | *[!0-9]*) return 0 ;; esac
	[ ${#_limit} -le 15 ] || return 0
	_total=$(((_limit - 402653184) / 2))
	[ "$_total" -ge 134217728 ] || _total=134217728
	: "${HF_XET_RECONSTRUCTION_DOWNLOAD_BUFFER_SIZE:=$((_total / 2))}"
	: "${HF_XET_RECONSTRUCTION_DOWNLOAD_BUFFER_PERFILE_SIZE:=$((_total / 8))}"
	: "${HF_XET_RECONSTRUCTION_DOWNLOAD_BUFFER_LIMIT:=$_total}"
	export HF_XET_RECONSTRUCTION_DOWNLOAD_BUFFER_SIZE HF_XET_RECONSTRUCTION_DOWNLOAD_BUFFER_PERFILE_SIZE HF_XET_RECONSTRUCTION_DOWNLOAD_BUFFER_LIMIT
	log "hf_xet's download buffer: $HF_XET_RECONSTRUCTION_DOWNLOAD_BUFFER_LIMIT bytes at most ($HF_XET_RECONSTRUCTION_DOWNLOAD_BUFFER_SIZE, and $HF_XET_RECONSTRUCTION_DOWNLOAD_BUFFER_PERFILE_SIZE a file), under the container's memory limit of $_limit bytes"
}

repo=${HFDL_REPO_ID:-}
dir=${HFDL_LOCAL_DIR:-/models/${HFDL_REPO_ID:-}}
repo_type=${HFDL_REPO_TYPE:-model}
revision=${HFDL_REVISION:-main}
include=${HFDL_INCLUDE:-}
exclude=${HFDL_EXCLUDE:-}
workers=${HFDL_MAX_WORKERS:-8}
force=${HFDL_FORCE:-false}
content_hash=${HFDL_CONTENT_HASH:-}
termlog=${HFDL_TERMINATION_LOG:-/dev/termination-log}
helper=${HFDL_HELPER:-/opt/hf-download/hfdl.py}
pvc=${HFDL_PVC:-}
cgroup=${HFDL_CGROUP:-/sys/fs/cgroup}
# The function names the PVC once, in the ConfigMap beside the helper, rather
# than in every Job.
[ -n "$pvc" ] || [ ! -r "${helper%/*}/pvc" ] || pvc=$(cat "${helper%/*}/pvc") || pvc=
stall_timeout=${HFDL_STALL_TIMEOUT:-600}
progress_token=${HFDL_PROGRESS_TOKEN:-/opt/hf-download/token}
progress_ca=${HFDL_PROGRESS_CA:-/opt/hf-download/ca.crt}
progress_interval=${HFDL_PROGRESS_INTERVAL:-15}
resync=${HFDL_RESYNC:-false}
# The script's own word to its helper during a check (resync_stage), never an input.
unset HFDL_LIVE_DIR

[ -n "$repo" ] || die "HFDL_REPO_ID is required (the Hugging Face repo id, e.g. org/name)"
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
case $resync in
true) force=false ;; # a check keeps every file that did not change
false) ;;
*) die "HFDL_RESYNC must be true or false, not \"$resync\"" ;;
esac
# Decimal, no leading zero (the shell's arithmetic reads 0600 as octal), at
# most 9 digits (far from overflow).
case $stall_timeout in
0* | *[!0-9]* | '' | ??????????*)
	die "HFDL_STALL_TIMEOUT must be a positive integer (seconds), not \"$stall_timeout\""
	;;
esac
case $progress_interval in
0* | *[!0-9]* | '' | ??????????*)
	die "HFDL_PROGRESS_INTERVAL must be a positive integer (seconds), not \"$progress_interval\""
	;;
esac
# The watchdog looks a tenth of the timeout apart, every 1 to 10 seconds.
stall_poll=$((stall_timeout / 10))
[ "$stall_poll" -ge 1 ] || stall_poll=1
[ "$stall_poll" -le 10 ] || stall_poll=10

marker=$dir/$marker_name

# The repo's page, for the reasons a failure gives.
endpoint=${HF_ENDPOINT:-https://huggingface.co}
endpoint=${endpoint%/}
case $repo_type in
dataset) repo_url=$endpoint/datasets/$repo ;;
*) repo_url=$endpoint/$repo ;;
esac

# The marker's first lines identify what is on disk. They are regenerated here
# byte for byte and compared with the marker, so no JSON parser is needed.
identity=$(printf '{\n  "repoId": %s,\n  "repoType": %s,\n  "revision": %s,\n  "include": %s,\n  "exclude": %s,\n  "contentHash": %s,' \
	"$(json_str "$repo")" "$(json_str "$repo_type")" "$(json_str "$revision")" \
	"$(json_list "$include")" "$(json_list "$exclude")" "$(json_str "$content_hash")")

mkdir -p "$dir" || die "cannot create $dir"

# One writer per model directory: an exclusive flock on a lock file in it,
# held on fd 9 until the run ends, by hf and the helper too (they inherit it),
# so that a Job replaced mid-download, or two ModelDownloads sharing a PVC,
# never write the directory together. The file is opened for writing, as
# NFSv4, CephFS and EFS want for an exclusive lock. flock -n and a pause
# (busybox's flock has no -w) keep a TERM able to end the wait.
lock=$dir/$lock_name
# exec is a special builtin: a failed redirection would end the shell unsaid.
true 2>/dev/null >>"$lock" || die "cannot open the lock file $lock"
exec 9>>"$lock"
if command -v flock >/dev/null 2>&1; then
	waited=0
	while :; do
		lrc=0
		flock -n 9 2>/dev/null || lrc=$?
		[ "$lrc" -ne 0 ] || break
		if [ "$lrc" -ne 1 ]; then
			log "warning: cannot lock $lock (flock exited with code $lrc); going on without the lock"
			break
		fi
		[ $((waited % 60)) -ne 0 ] || log "another download holds the lock on $dir; waiting for it to end"
		pause 2
		waited=$((waited + 2))
	done
else
	log "warning: flock is missing; nothing keeps another download out of $dir"
fi

checking= live=
if [ "$force" = false ] && [ -f "$marker" ]; then
	marker_text=$(cat "$marker") || die "cannot read $marker"
	case $marker_text in
	"$identity$nl"*)
		commit= files= bytes= verified=false card=
		for line in $marker_text; do
			case $line in
			'  "commit": "'*'",') commit=${line#'  "commit": "'} commit=${commit%'",'} ;;
			'  "files": '*,) files=${line#'  "files": '} files=${files%,} ;;
			'  "bytes": '*,) bytes=${line#'  "bytes": '} bytes=${bytes%,} ;;
			'  "verified": true,') verified=true ;;
			'  "card": {'*'},') card=${line#'  "card": '} card=${card%,} ;;
			esac
		done
		# A marker cut short (a full disk, say) is not a complete download.
		if is_count "$files" && is_count "$bytes"; then
			if [ "$resync" = false ]; then
				log "$repo@$revision is already complete in $dir (commit ${commit:-unknown}); nothing to do"
				summary "$commit" "$files" "$bytes" 0 "$verified" "$card"
				exit 0
			fi
			checking=1
		fi
		;;
	esac
	[ -n "$checking" ] || log "the completion marker in $dir does not match this download; downloading again"
fi

# A Python image without a baked hf: install the downloader image's exact set,
# the hashed lock beside the helper, into the writable temp dir (the root
# filesystem is read-only) and run it from there. Wheels only: a build from
# source would need a compiler and could differ from what the lock was tested with.
if ! command -v hf >/dev/null 2>&1; then
	requirements=${helper%/*}/requirements.txt
	command -v python3 >/dev/null 2>&1 ||
		die "hf is not on PATH and python3 is missing, so $hub_pin cannot be installed: use an image with Python or the downloader image"
	[ -f "$requirements" ] ||
		die "hf is not on PATH and the lock $requirements is missing, so $hub_pin cannot be installed: use the downloader image"
	python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null ||
		die "hf is not on PATH and this image's python3 is older than 3.11, which $hub_pin's locked dependencies need: use the downloader image"
	pydir=$(mktemp -d "${TMPDIR:-/tmp}/hf-download.XXXXXX") ||
		die "cannot create a directory under ${TMPDIR:-/tmp} to install $hub_pin"
	log "hf is not on PATH: this image is not the downloader image, so $hub_pin $xet_pin and their locked dependencies are installed now from the Python package index, into $pydir"
	rc=0
	# pip never needs the token: keep it away from pip and its index.
	(
		unset HF_TOKEN
		exec python3 -m pip install --no-cache-dir --disable-pip-version-check --no-input \
			--target "$pydir" --require-hashes --no-deps --only-binary=:all: -r "$requirements"
	) || rc=$?
	[ "$rc" -eq 0 ] || die "installing $hub_pin $xet_pin from $requirements failed (exit $rc)"
	PATH=$pydir/bin:$PATH
	PYTHONPATH=$pydir${PYTHONPATH:+:$PYTHONPATH}
	export PATH PYTHONPATH
fi

xet_buffers

# The helper reads the values as checked here, defaults applied.
HFDL_REPO_ID=$repo HFDL_REPO_TYPE=$repo_type HFDL_REVISION=$revision
HFDL_INCLUDE=$include HFDL_EXCLUDE=$exclude HFDL_LOCAL_DIR=$dir HFDL_FORCE=$force HFDL_PVC=$pvc
export HFDL_REPO_ID HFDL_REPO_TYPE HFDL_REVISION HFDL_INCLUDE HFDL_EXCLUDE HFDL_LOCAL_DIR HFDL_FORCE HFDL_PVC

start=$(date +%s)
work_start
if [ -n "$checking" ]; then
	resync_check
	if [ "$upstream" = "$commit" ]; then
		rm -rf "$work"
		work=
		log "$repo@$revision still names commit $commit: $dir is current; nothing to do"
		summary "$commit" "$files" "$bytes" "$(($(date +%s) - start))" "$verified" "$card"
		exit 0
	fi
	log "$repo@$revision moved from commit ${commit:-unknown} to $upstream: downloading it beside $dir, which stays as it is until the new files are complete and verified"
	resync_stage
fi

# Whatever happens next, an old marker must not claim this download is done.
rm -f "$marker" || die "cannot remove the old completion marker $marker"
# hf downloads each file to a partial file named for its own process, and
# removes it when it fails, but not when it is killed (a stall, a TERM): no
# run resumes those, and with the lock held no run is writing them.
if [ -d "$dir/.cache/huggingface/download" ]; then
	find "$dir/.cache/huggingface/download" -type f -name '*.incomplete' -exec rm -f {} + ||
		log "warning: cannot remove hf's partial files in $dir/.cache/huggingface/download"
fi

# The plan: the commit that the revision names now, the files the globs select
# with their sizes and hashes, and enough free space for them. The whole
# download is then of that one commit.
planned= commit=
unplanned="downloading as hf alone does: no plan, no space check, no pruning, no verification, no model card"
if [ -z "$work" ]; then
	log "warning: no temporary directory under ${TMPDIR:-/tmp}; $unplanned"
elif ! command -v python3 >/dev/null 2>&1; then
	log "warning: python3 is missing; $unplanned"
elif [ ! -f "$helper" ]; then
	log "warning: the helper $helper is missing; $unplanned"
else
	log "planning the download of $repo_type $repo@$revision"
	prog=hfdl.py
	run python3 "$helper" plan "$work"
	case $rc in
	0) ;;
	3) log "warning: python3 cannot import huggingface_hub (hf has a Python of its own?); $unplanned" ;;
	*) helper_failed ;;
	esac
	if [ "$rc" -eq 0 ]; then
		commit=$(cat "$work/result") || die "cannot read the plan in $work"
		case $commit in
		*[!0-9a-f]* | '') die "the plan gave no commit but \"$commit\"" ;;
		esac
		planned=1
	fi
fi

reporter_start

set -- download "$repo" --repo-type "$repo_type" --revision "${commit:-$revision}" \
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

log "downloading $repo_type $repo@$revision${commit:+ (commit $commit)} into $dir"
hasher_start
prog=hf watch=1
run hf "$@"
watch=
why=
if [ -n "$stalled" ]; then
	why="stalled: no progress for $stall_timeout s"
elif [ -n "$hf_err" ]; then
	why=$(hf_failure "$rc")
fi
[ -n "$why" ] || [ "$rc" -eq 0 ] || why="hf exited with code $rc"
[ -z "$why" ] || die "download of $repo@$revision failed: $why"
reporter_stop
hasher_stop done

verified=false card=
if [ -n "$planned" ]; then
	# The directory becomes the plan exactly, every file checked against the
	# Hub's hashes; the counts are the plan's.
	prog=hfdl.py
	run python3 "$helper" finish "$work"
	[ "$rc" -eq 0 ] || helper_failed
	result=$(cat "$work/result") || die "cannot read the helper's result in $work"
	files= bytes=
	for line in $result; do
		if [ -z "$files" ]; then
			files=$line
		elif [ -z "$bytes" ]; then
			bytes=$line
		else
			card=$line
		fi
	done
	is_count "$files" && is_count "$bytes" || die "the helper's result is not counts: $result"
	case $card in
	'{'*'}') ;;
	*) card= ;;
	esac
	verified=true
else
	# Count what the repo put on disk: not hf's .cache, nor the lock, nor a
	# temporary marker left by a run killed while writing it (the marker
	# itself is gone by now).
	sizes=$(cd "$dir" && find . -path ./.cache -prune -o -type f ! -path "./$lock_name" \
		! -path "./$marker_name.tmp.*" -exec stat -c %s {} +) ||
		die "cannot measure the files in $dir"
	files=0 bytes=0
	for size in $sizes; do
		files=$((files + 1))
		bytes=$((bytes + size))
	done

	# hf keeps a metadata file per downloaded file in local-dir mode: commit
	# sha, etag, timestamp. Files left from an earlier revision keep their old
	# commit, so take the commit of the most recently written one.
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
fi
seconds=$(($(date +%s) - start))

card_line=
[ -z "$card" ] || card_line="  \"card\": $card,$nl"
completed=$(date -u +%Y-%m-%dT%H:%M:%SZ)
tmp=$marker.tmp.$$
if ! printf '%s\n  "commit": %s,\n  "files": %s,\n  "bytes": %s,\n  "verified": %s,\n%s  "seconds": %s,\n  "completedAt": %s\n}\n' \
	"$identity" "$(json_str "$commit")" "$files" "$bytes" "$verified" "$card_line" "$seconds" "$(json_str "$completed")" >"$tmp" ||
	! mv -f "$tmp" "$marker"; then
	rm -f "$tmp"
	die "cannot write the completion marker $marker"
fi
[ -z "$live" ] || resync_swap
finished=1

# The last report, all bytes there; a TERM now stops only it.
if [ -n "$reporting" ]; then
	python3 "$helper" progress-final "$work" </dev/null 9>&- &
	reporter=$!
	while [ -n "$reporter" ] && kill -0 "$reporter" 2>/dev/null; do
		wait "$reporter" || :
	done
	reporter=
fi
[ -z "$work" ] || rm -rf "$work"
work=

summary "$commit" "$files" "$bytes" "$seconds" "$verified" "$card"
log "downloaded $repo@$revision: $files files, $bytes bytes in ${seconds}s (commit ${commit:-unknown}, verified $verified)"
