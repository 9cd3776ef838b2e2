// Package downloader holds the download engine's hashed lock, requirements.txt: huggingface_hub's
// hf CLI, hf_xet and every dependency at an exact version, each wheel by its SHA-256. The
// downloader image installs it (hack/downloader-image.sh, Dockerfile), the tests' bin/hf is it
// (hack/hf.sh), and the script's ConfigMap carries it for the pip fallback of a foreign image.
package downloader

import _ "embed"

// Requirements is requirements.txt, for `pip install --require-hashes --no-deps -r`.
//
//go:embed requirements.txt
var Requirements string
