// Package script holds the shell script that every download Job runs, and the
// names through which the function talks to it.
package script

import (
	_ "embed" // for go:embed

	"github.com/hfops/function-hf-download/apis/v1alpha1"
	"github.com/hfops/function-hf-download/downloader"
)

// Text is the download script (download.sh). The function puts it verbatim,
// with its helper (see Files), in one ConfigMap per ModelDownload, which every
// Job mounts and runs with /bin/sh, so it can be reviewed and tested here as
// a file. User strings (repo id, revision, globs, paths) reach it, and the
// helper, only as the Env* environment variables, never as script text, so no
// value can ever run as shell or Python code.
//
//go:embed download.sh
var Text string

//go:embed hfdl.py
var helperText string

// Files are every file of the ConfigMap, by name: download.sh (Text), and
// hfdl.py, the script's Python helper (standard library and huggingface_hub
// only), which it runs with python3 to plan the download (the commit, the
// exact files with their sizes and hashes, the space they need) and, after hf,
// to prune the directory to the plan, verify every file and read the model
// card. The Job mounts the ConfigMap at /opt/hf-download, where the script
// looks for the helper unless EnvHelper says otherwise. Without it, or
// without a python3 that imports huggingface_hub, the script downloads as hf
// alone does: no plan, no space check, no pruning, Verified false, no Card.
// requirements.txt is the downloader's hashed lock (package downloader), which
// the script installs with pip, beside the helper, when an image has no hf.
var Files = map[string]string{
	"download.sh":      Text,
	"hfdl.py":          helperText,
	"requirements.txt": downloader.Requirements,
}

// Environment variables the script reads. It takes no positional arguments.
const (
	// EnvRepoID is the Hugging Face repo id, e.g. org/name. Required.
	EnvRepoID = "HFDL_REPO_ID"
	// EnvRepoType is model or dataset; default model.
	EnvRepoType = "HFDL_REPO_TYPE"
	// EnvRevision is a branch, tag or commit; default main.
	EnvRevision = "HFDL_REVISION"
	// EnvLocalDir is the directory to download into; default
	// DefaultMountPath/<repo id>, e.g. /models/org/name.
	EnvLocalDir = "HFDL_LOCAL_DIR"
	// EnvInclude is a newline-separated list of globs for hf's --include; may be empty.
	EnvInclude = "HFDL_INCLUDE"
	// EnvExclude is a newline-separated list of globs for hf's --exclude; may be empty.
	EnvExclude = "HFDL_EXCLUDE"
	// EnvMaxWorkers is hf's --max-workers, a positive integer; default 8.
	EnvMaxWorkers = "HFDL_MAX_WORKERS"
	// EnvForce is "true" to re-download every file (--force-download) even
	// when the marker says the download is complete; default "false".
	EnvForce = "HFDL_FORCE"
	// EnvResync is "true" for a check of a complete download (the function's
	// settings.resyncInterval): the script asks the Hub which commit the
	// revision names now and ends at once when it is the one on disk; when
	// it moved, it downloads the new commit into a staging directory seeded
	// with hard links to the files on disk, and switches the model's
	// directory to it in one step (see download.sh's resync_check). It
	// implies EnvForce "false". Default "false".
	EnvResync = "HFDL_RESYNC"
	// EnvLiveDir is what the script tells its helper during a check that
	// found the revision moved: the model's directory, while EnvLocalDir
	// names the staging directory the new commit downloads into. It is the
	// script's own, never an input.
	EnvLiveDir = "HFDL_LIVE_DIR"
	// EnvContentHash is the hash of what lands on disk (repo, type, revision,
	// globs), without the token: a rotated token re-runs the Job, but a
	// complete download still exits at its marker.
	EnvContentHash = "HFDL_CONTENT_HASH"
	// EnvTerminationLog is where the one-line Summary goes on success, and the
	// one-line reason on failure; default /dev/termination-log.
	EnvTerminationLog = "HFDL_TERMINATION_LOG"
	// EnvHelper is the path of hfdl.py (see Files); default
	// /opt/hf-download/hfdl.py, where the Job mounts the ConfigMap.
	EnvHelper = "HFDL_HELPER"
	// EnvPVC is the name of the PVC that holds the local dir, only for the
	// reason a download without enough space fails with ("... free on PVC
	// <name>"); without it the script reads PVCFile beside the helper, and
	// without that the reason names the directory.
	EnvPVC = "HFDL_PVC"
	// EnvCgroup is where the container's cgroup file system is mounted,
	// default /sys/fs/cgroup: the script bounds hf_xet's download buffer by
	// the memory limit it finds there (memory.max, or cgroup v1's
	// memory/memory.limit_in_bytes), unless the HF_XET_RECONSTRUCTION_
	// DOWNLOAD_BUFFER_* variables are set.
	EnvCgroup = "HFDL_CGROUP"
	// EnvStallTimeout is how many seconds hf may go without a byte written
	// under the local dir (hf's partial files included) before the watchdog
	// stops it and the download fails as stalled: a positive integer without
	// leading zeros, at most 9 digits; default DefaultStallTimeoutSeconds.
	EnvStallTimeout = "HFDL_STALL_TIMEOUT"
	// EnvProgressToken is the path of the service account token with which
	// the download reports progress (see ProgressFile); default
	// ProgressTokenPath. The file is read again for every report (projected
	// tokens rotate), and the token goes only into the Authorization header:
	// never into the log, an argument or a file.
	EnvProgressToken = "HFDL_PROGRESS_TOKEN" //nolint:gosec // the name of a variable that holds a path
	// EnvProgressCA is the path of the CA certificate (PEM) that the API
	// server's certificate is verified against; default ProgressCAPath.
	EnvProgressCA = "HFDL_PROGRESS_CA"
	// EnvProgressInterval is how many seconds at least lie between two
	// progress reports: a positive integer without leading zeros, at most 9
	// digits; default DefaultProgressIntervalSeconds.
	EnvProgressInterval = "HFDL_PROGRESS_INTERVAL"
	// EnvToken is read by hf itself (and by huggingface_hub in the helper),
	// never by the script: set it only from a Secret (secretKeyRef).
	EnvToken = "HF_TOKEN"
)

// Defaults the script applies when a variable is unset; the function leaves
// out of each Job what equals them.
const (
	DefaultRepoType            = "model"
	DefaultRevision            = "main"
	DefaultMountPath           = "/models"
	DefaultMaxWorkers          = 8
	DefaultStallTimeoutSeconds = 600
	// DefaultProgressIntervalSeconds is EnvProgressInterval's default.
	DefaultProgressIntervalSeconds = 15
)

// Where the pod's projected service account token and the API server's CA
// are, unless EnvProgressToken and EnvProgressCA say otherwise: the function
// mounts them only into the download container.
const (
	ProgressTokenPath = "/opt/hf-download/token" //nolint:gosec // a path, not a credential
	ProgressCAPath    = "/opt/hf-download/ca.crt"
)

// MarkerFile is the completion marker the script writes, atomically, in the
// local dir once a download succeeded. A directory without a matching marker
// is not complete, whatever it holds.
//
// It is JSON, one field a line, in this order: repoId, repoType, revision,
// include, exclude, contentHash (the identity the script compares), then
// commit, files, bytes, verified, card (only when there is one, on one line),
// seconds and completedAt (UTC, RFC 3339). A run that stops at a matching
// marker reports its commit, files, bytes, verified and card, with seconds 0.
const MarkerFile = ".hf-download-complete.json"

// PVCFile is the file, beside the helper in the ConfigMap, that names the PVC
// (see EnvPVC): the function writes it once per ModelDownload instead of an
// environment variable in every Job.
const PVCFile = "pvc"

// ProgressFile is the file, beside the helper in the ConfigMap, that asks for
// progress reports: it holds <namespace>/<name> of the ModelDownload's
// progress ConfigMap. When it is there, and so are a token (EnvProgressToken)
// and a CA (EnvProgressCA), and KUBERNETES_SERVICE_HOST and
// KUBERNETES_SERVICE_PORT name the API server (as in every pod), the helper
// reports progress while hf runs; otherwise the script says once in the log
// that progress is not reported, and downloads as ever.
//
// A report is a JSON merge patch (Content-Type
// application/merge-patch+json) of
// {"data":{"<EnvContentHash>":"<Progress as one line of JSON>"}} to
// https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT/api/v1/namespaces/<namespace>/configmaps/<name>,
// with "Authorization: Bearer <token>", the server's certificate verified
// against the CA. The first goes as soon as the plan is known, then at most
// one every EnvProgressInterval seconds (counted from the last one's start
// and from its answer), and only when Bytes or Files changed since the last
// report the API server took. A report refused, or
// not answered within 5 s, is tried again at the next interval and logged
// (without the token) the first time and then at most once a minute: it
// never fails or slows the download. The reporter stops with hf (success,
// failure, stall, SIGTERM) and never holds the lock. After a successful
// download the script sends one last report, Bytes equal to TotalBytes
// (tried once, within the same 5 s, whenever the one before it went), after
// which the function may drop the entry. No report is
// sent by a run that stops at a matching marker, and the content hash must
// be a ConfigMap key ([-._a-zA-Z0-9]+) for any to be sent.
const ProgressFile = "progress"

// Progress is the value of a progress report (see ProgressFile). Bytes and
// Files are what is on disk of the plan: its files there at their full size,
// plus the bytes of hf's partial (.incomplete) files under
// .cache/huggingface/download; TotalBytes and TotalFiles are the plan's
// (0, unknown, without the helper's plan: then Bytes and Files count every
// file in the local dir but hf's .cache, and the last report sets the totals
// to them). BytesPerSecond is the rate over the last interval (0 for the
// first report and the last one), ETASeconds the time left at that rate,
// rounded up (0 when unknown). Updated is when Bytes or Files last changed,
// RFC 3339 in UTC to the second; Attempt is the pod's name (HOSTNAME), so
// that a new pod's reports can be told from an old one's.
// The report is status.models[].progress (the API's Progress) and Attempt.
type Progress struct {
	v1alpha1.Progress
	Attempt string `json:"attempt"`
}

// LockFile is the file in the local dir on which a download holds an
// exclusive flock for its whole run, so that two downloads never write one
// directory together (a run waits for the lock, logging that it does). It is
// opened for writing, so that the lock also holds on NFSv4, CephFS and EFS.
// It is not a model file: never counted, never pruned.
const LockFile = ".hf-download.lock"

// HubVersion and XetVersion are the huggingface_hub and hf_xet that the lock
// downloader/requirements.txt pins (tested): what the downloader image carries,
// what the e2e suite's image (hack/node.sh) and the tests' real hf CLI
// (hack/hf.sh) run, and what the script's pip fallback installs from that lock.
const (
	HubVersion = "2.4.0"
	XetVersion = "1.8.0"
)

// Summary is the one-line JSON the script writes to the termination log on
// success (Seconds is 0 when the marker showed the download was already
// complete). The function reads it from the pod's termination message, which
// holds at most 4096 bytes: the largest Summary is far below (tested).
//
// With the helper, Commit is the one the Hub resolved the revision to before
// the download (never read from a file in the directory), Files and Bytes
// count the planned files only, and Verified is true: every one of them
// matched the Hub's size and hash (sha256 for LFS files, the git blob sha1
// otherwise). Without it, Commit comes from hf's metadata, Files and Bytes
// count what the directory holds, and Verified is false.
type Summary struct {
	Commit   string `json:"commit"`
	Files    int64  `json:"files"`
	Bytes    int64  `json:"bytes"`
	Seconds  int64  `json:"seconds"`
	Verified bool   `json:"verified"`
	Card     *Card  `json:"card,omitempty"`
}

// Card is what the serving stack needs from a model, read from the files
// downloaded (never from the Hub's API): from config.json, Architecture
// (architectures[0]), ModelType (model_type), Dtype (torch_dtype, or dtype)
// and ContextLength (max_position_embeddings, or n_positions, max_seq_len,
// seq_length, n_ctx, max_sequence_length; at the top level, else in
// text_config); Parameters from model.safetensors.index.json's
// metadata.total_parameters, else the sum of the products of the tensor
// shapes in the safetensors headers (only the headers are read); License from
// README.md's front matter. Strings are printable ASCII of at most 64 bytes;
// what is missing or unreadable is left out (nil when all is), and never
// fails a download. It is status.models[].card as the API has it.
type Card = v1alpha1.Card

// On failure the script writes one line of plain text, its reason, as the
// whole termination log (and, after LogPrefix, as the last line of the pod
// log). A failed download's reason starts with FailedPrefix(repo, revision),
// then says why: for example "access denied (gated or private repo; ...)",
// "repository not found (...)", "revision v1 not found in <url>", "the token
// was refused (401); check the token" (these four before anything is
// downloaded, from the plan), "needs 16.1 GB, 9.8 GB free on PVC <pvc>" (or
// "on <dir>" without EnvPVC; decimal units with one decimal, MB or kB below a
// GB; before anything is downloaded, the bytes of files already there left
// out; files the plan drops are pruned first when that makes the room), "no
// file to download at commit <sha> (the include and exclude globs select
// none)" (rather than prune the directory empty), "stalled: no progress for
// 600 s" (the
// watchdog stopped hf), "verification failed: <file> has sha256 <got>, the
// Hub says <want>" (or git-sha1; also "<file> is missing" or "<file> is not a
// regular file"; the file and hf's metadata of it are removed, so a retry
// downloads only it again), "rate limited by the Hub (HTTP 429) after hf's
// retries; the Hub's limit resets in N s" (or "after 5 retries", the plan's;
// "the Hub gave no reset time" without RateLimit headers), "disk full: no
// space left on device in <dir>", hf's own message cut to 300 bytes, or "hf
// exited with code N". Other failures (bad env, a failed install, SIGTERM)
// are a reason of their own.

// LogPrefix starts every line the script itself writes to the pod log. The
// termination log's reason is written without it; a termination message
// that Kubernetes took from the log tail instead (FallbackToLogsOnError, when
// the script could not write the termination log) has it.
const LogPrefix = "hf-download: "

// FailedPrefix is how the reason of a failed download of repo@revision starts.
func FailedPrefix(repo, revision string) string {
	return "download of " + repo + "@" + revision + " failed: "
}

// Reclaim is the program a reclaim Job runs, as python3 -I -c Reclaim
// (standard library only, so any image with python3 runs it, and it is not
// one of Files: a download Job's digest does not cover it). It removes one
// model's directory, EnvReclaimModel under EnvReclaimRoot, and nothing else:
// it holds the download lock while it does, so never while a download of
// that directory runs; it opens every directory on the way with O_NOFOLLOW
// and removes through directory descriptors, so no symlink is ever followed
// (one is removed as the link it is); it stays on the mount's filesystem.
// It first renames the directory into EnvReclaimRoot/.hf-reclaim/, so a
// reader sees the model whole or not at all, and a reclaim cut short is
// finished by the next. On success its termination message is one
// Reclaimed; on failure one line, its reason.
//
//go:embed reclaim.py
var Reclaim string

// Environment variables of the reclaim program.
const (
	// EnvReclaimRoot is where the PVC is mounted.
	EnvReclaimRoot = "HFDL_RECLAIM_ROOT"
	// EnvReclaimModel is the repo id whose directory goes: org/name or name.
	EnvReclaimModel = "HFDL_RECLAIM_MODEL"
	// EnvReclaimTermLog is where the report goes; default
	// /dev/termination-log.
	EnvReclaimTermLog = "HFDL_RECLAIM_TERMLOG"
)

// Reclaimed is a reclaim pod's report: the disk space given back (the
// blocks of what it removed, but files with another link left) and the
// files removed. A directory that was not there frees zero.
type Reclaimed struct {
	BytesFreed int64 `json:"bytesFreed"`
	Files      int64 `json:"files"`
}
