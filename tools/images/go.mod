// Tools module for the images that hack/node.sh builds for the e2e suite's node (the
// downloader image and the pod sandbox's pause image), kept apart from the function's
// go.mod like the other tools.
module github.com/hfops/function-hf-download/tools/images

go 1.26

require github.com/google/go-containerregistry v0.20.7

require (
	github.com/containerd/stargz-snapshotter/estargz v0.18.1 // indirect
	github.com/klauspost/compress v1.18.1 // indirect
	github.com/opencontainers/go-digest v1.0.0 // indirect
	github.com/opencontainers/image-spec v1.1.1 // indirect
	github.com/vbatts/tar-split v0.12.2 // indirect
	golang.org/x/sync v0.18.0 // indirect
)
