package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestValidateExamples runs `crossplane beta validate` offline: an empty
// cached Crossplane package stands in for the image it would pull.
func TestValidateExamples(t *testing.T) {
	cache := t.TempDir()
	if err := os.MkdirAll(filepath.Join(cache, "offline", "crossplane@v0"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cache, "offline", "crossplane@v0", "package.yaml"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	validate := func(t *testing.T, xrd, resources string) (string, error) {
		cmd := exec.Command(crossplaneCLI(t), "beta", "validate", xrd, resources,
			"--cache-dir="+cache, "--crossplane-image=offline/crossplane:v0")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for xrd, resources := range map[string]string{
		"example/definition.yaml":        "example/xr.yaml,example/xr-after-ttl.yaml",
		"example/legacy/definition.yaml": "example/legacy/claim.yaml,example/legacy/xr.yaml,example/legacy/xr-after-ttl.yaml",
	} {
		t.Run(xrd, func(t *testing.T) {
			for _, r := range strings.Split(resources, ",") {
				if out, err := validate(t, xrd, r); err != nil || !strings.Contains(out, "0 failure cases") {
					t.Errorf("%s does not validate against %s: %v\n%s", r, xrd, err, out)
				}
			}
		})
	}

	t.Run("RejectsABadModel", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "bad.yaml")
		xr, err := os.ReadFile("example/xr.yaml")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(bad, []byte(strings.Replace(string(xr), "name: Qwen/Qwen2.5-0.5B-Instruct", "name: 'org/x;rm -rf ~'", 1)), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := validate(t, "example/definition.yaml", bad)
		if err == nil || !strings.Contains(out, "spec.models[0].name") {
			t.Errorf("the XRD must reject a bad repo id; got %v\n%s", err, out)
		}
	})
}
