// Command runtime-image writes the function's runtime image, an OCI image of
// one static binary, as a tarball for `crossplane xpkg build
// --embed-runtime-image-tarball`. It needs no Docker engine: the image is
// assembled with go-containerregistry, like the Dockerfile's final stage
// (the binary at /function, non-root, port 9443).
package main

import (
	"archive/tar"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// nonroot is distroless's nonroot user.
const nonroot = "65532:65532"

func main() {
	binary := flag.String("binary", "", "the static function binary")
	out := flag.String("out", "", "where to write the image tarball")
	tag := flag.String("tag", "function-hf-download-runtime:dev", "the tag recorded in the tarball")
	flag.Parse()
	if err := run(*binary, *out, *tag); err != nil {
		fmt.Fprintln(os.Stderr, "runtime-image:", err)
		os.Exit(1)
	}
}

func run(binary, out, tag string) error {
	if binary == "" || out == "" {
		return fmt.Errorf("--binary and --out are required")
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return binaryLayer(binary) })
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layer)
	if err != nil {
		return err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", "amd64"
	cfg.Config.Entrypoint = []string{"/function"}
	cfg.Config.User = nonroot
	cfg.Config.ExposedPorts = map[string]struct{}{"9443/tcp": {}}
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		return err
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	ref, err := name.NewTag(tag)
	if err != nil {
		return err
	}
	return tarball.WriteToFile(out, ref, img)
}

// binaryLayer is a tar stream holding the binary as /function, with a fixed
// time so the same binary gives the same layer.
func binaryLayer(path string) (io.ReadCloser, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdr := &tar.Header{Name: "function", Mode: 0o755, Size: int64(len(b)), ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, err
	}
	if _, err := tw.Write(b); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return io.NopCloser(&buf), nil
}
