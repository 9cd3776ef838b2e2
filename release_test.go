package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestReleaseStamp builds the function with the -ldflags `make package` uses
// (hack/ldflags.sh, which hack/package.sh runs) and without them, and reads
// back what `function --version` says. The linker ignores an -X name it does
// not know, so a misspelt one would otherwise show only in a release.
func TestReleaseStamp(t *testing.T) {
	release, err := exec.Command("bash", "hack/ldflags.sh", "v9.8.7-rc.1", "registry.example:5000/acme/hf-downloader").Output()
	if err != nil {
		t.Fatalf("hack/ldflags.sh: %v", err)
	}
	for _, tc := range []struct {
		name    string
		reason  string
		ldflags string
		want    string
	}{
		{
			name:    "Release",
			reason:  "a release defaults to its own downloader image, at its own version",
			ldflags: strings.TrimSpace(string(release)),
			want:    "v9.8.7-rc.1 (default image registry.example:5000/acme/hf-downloader:v9.8.7-rc.1)\n",
		},
		{
			name: "PlainBuild",
			reason: "a build without the stamps (go build, make render) is version dev and defaults to the downloader image at dev: " +
				"the tag is the function's own version, never a moving one such as latest, which would run another hf " +
				"under a Job whose hash (the image is part of it) says nothing changed",
			want: "dev (default image xpkg.crossplane.io/hfops/hf-downloader:dev)\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // each build is mostly a link, on one core
			bin := filepath.Join(t.TempDir(), "function")
			if out, err := exec.Command("go", "build", "-ldflags", tc.ldflags, "-o", bin, ".").CombinedOutput(); err != nil {
				t.Fatalf("go build -ldflags %q: %v\n%s", tc.ldflags, err, out)
			}
			got, err := exec.Command(bin, "--version").CombinedOutput()
			if err != nil || string(got) != tc.want {
				t.Errorf("built with -ldflags %q, function --version says %q (%v); want %q: %s", tc.ldflags, got, err, tc.want, tc.reason)
			}
		})
	}
}
