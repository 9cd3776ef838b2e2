package main

// What a release build stamps in with -ldflags -X (hack/ldflags.sh): its
// version, and the repository its downloader image is pushed to beside the
// function. The default download image is that image at the function's own
// version, so a default install runs a baked, tested hf and never installs
// anything at run time. A plain `go build` is version "dev".
var (
	version              = "dev"
	downloaderRepository = "xpkg.crossplane.io/hfops/hf-downloader"
)

// defaultImage is the Input's image when a Composition names none.
func defaultImage() string { return downloaderRepository + ":" + version }
