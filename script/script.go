// Package script holds the shell script that every download Job runs, and the
// names through which the function talks to it.
package script

import _ "embed" // for go:embed

// Text is the download script (download.sh). The function puts it verbatim in
// one ConfigMap per ModelDownload, which every Job mounts and runs with
// /bin/sh, so it can be reviewed and tested here as a file. User strings (repo id, revision, globs,
// paths) reach it only as the Env* environment variables, never as script
// text, so no value can ever run as shell code.
//
//go:embed download.sh
var Text string

// Environment variables the script reads. It takes no positional arguments.
const (
	// EnvRepoID is the Hugging Face repo id, e.g. org/name. Required.
	EnvRepoID = "HFDL_REPO_ID"
	// EnvRepoType is model or dataset; default model.
	EnvRepoType = "HFDL_REPO_TYPE"
	// EnvRevision is a branch, tag or commit; default main.
	EnvRevision = "HFDL_REVISION"
	// EnvLocalDir is the directory to download into, e.g. /models/org/name. Required.
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
	// EnvContentHash is the hash of what lands on disk (repo, type, revision,
	// globs), without the token: a rotated token re-runs the Job, but a
	// complete download still exits at its marker.
	EnvContentHash = "HFDL_CONTENT_HASH"
	// EnvTerminationLog is where the one-line Summary goes on success, and the
	// one-line reason on failure; default /dev/termination-log.
	EnvTerminationLog = "HFDL_TERMINATION_LOG"
	// EnvToken is read by hf itself, never by the script: set it only from a
	// Secret (secretKeyRef).
	EnvToken = "HF_TOKEN"
)

// Defaults the script applies when a variable is unset; the function leaves
// out of each Job what equals them.
const (
	DefaultRepoType   = "model"
	DefaultMaxWorkers = 8
)

// MarkerFile is the completion marker the script writes, atomically, in the
// local dir once a download succeeded. A directory without a matching marker
// is not complete, whatever it holds.
const MarkerFile = ".hf-download-complete.json"

// HubVersion is the huggingface_hub that downloader/Dockerfile bakes in, the
// one the e2e suite's image (hack/node.sh) and the script's tests against the
// real hf CLI (hack/hf.sh) run, from the source vendored for them; the script
// installs it with pip when an image has no hf. XetVersion is only for that
// pip install: Debian packages no hf_xet, so the image downloads over plain
// HTTP.
const (
	HubVersion = "1.28.0"
	XetVersion = "1.6.0"
)

// Summary is the one-line JSON the script writes to the termination log on
// success (Seconds is 0 when the marker showed the download was already
// complete). The function reads it from the pod's termination message.
type Summary struct {
	Commit  string `json:"commit"`
	Files   int64  `json:"files"`
	Bytes   int64  `json:"bytes"`
	Seconds int64  `json:"seconds"`
}

// On failure the script writes one line of plain text, its reason, as the
// whole termination log (and, after LogPrefix, as the last line of the pod
// log). A failed download's reason starts with FailedPrefix(repo, revision),
// then says why: for example "access denied (gated or private repo; ...)",
// "repository not found (...)", "revision v1 not found in <url>", "the token
// was refused (401); check the token", "disk full: no space left on device
// in <dir>", hf's own message cut to 300 bytes, or "hf exited with code N".
// Other failures (bad env, a failed install) are a reason of their own.

// LogPrefix starts every line the script itself writes to the pod log. The
// termination log's reason is written without it; a termination message
// that Kubernetes took from the log tail instead (FallbackToLogsOnError, when
// the script could not write the termination log) has it.
const LogPrefix = "hf-download: "

// FailedPrefix is how the reason of a failed download of repo@revision starts.
func FailedPrefix(repo, revision string) string {
	return "download of " + repo + "@" + revision + " failed: "
}
