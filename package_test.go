package main

import (
	"archive/tar"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// The packages, built by the real `crossplane xpkg build`: the function
// package with its runtime image embedded (an OCI image of the static
// binary, made without Docker by hack/runtime-image.sh), and the two
// Configuration packages. And `crossplane beta validate` of the examples
// against their XRDs, offline.

func runCLI(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command(crossplaneCLI(t), args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("crossplane %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func TestPackages(t *testing.T) {
	tmp := t.TempDir()
	root, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}

	t.Run("Function", func(t *testing.T) {
		image := filepath.Join(tmp, "runtime.tar")
		if out, err := exec.Command("bash", filepath.Join(root, "hack", "runtime-image.sh"), image).CombinedOutput(); err != nil {
			t.Fatalf("hack/runtime-image.sh: %v\n%s", err, out)
		}
		xpkg := filepath.Join(tmp, "function.xpkg")
		runCLI(t, root, "xpkg", "build", "--package-root=package", "--embed-runtime-image-tarball="+image, "--package-file="+xpkg)
		pkg := packageYAML(t, xpkg)
		for _, want := range []string{"kind: Function", "name: function-hf-download", "kind: CustomResourceDefinition", "name: inputs.hfdownload.fn.hfops.kamal.dev"} {
			if !strings.Contains(pkg, want) {
				t.Errorf("the function package lacks %q", want)
			}
		}
		// Crossplane 1.20's package manager installs it: the claim flavour runs there.
		if got := crossplaneConstraint(t, pkg, "Function"); got != ">=v1.20.0" {
			t.Errorf("the function package asks for Crossplane %q, want >=v1.20.0", got)
		}
		if !hasFile(t, xpkg, "function") {
			t.Error("the function package does not embed the runtime image with /function")
		}
	})

	for name, c := range map[string]struct{ dir, crossplane string }{
		// Namespaced XRs exist from v2 on; claims run on 1.20 too.
		"v2":     {dir: "example", crossplane: ">=v2.0.0"},
		"legacy": {dir: "example/legacy", crossplane: ">=v1.20.0"},
	} {
		dir := c.dir
		t.Run("Configuration/"+name, func(t *testing.T) {
			// The package root is assembled from the examples, so the XRD
			// and Composition are written once.
			pkgRoot := filepath.Join(tmp, "configuration-"+name)
			if err := os.MkdirAll(pkgRoot, 0o755); err != nil {
				t.Fatal(err)
			}
			for src, dst := range map[string]string{
				filepath.Join("configuration", name, "crossplane.yaml"): "crossplane.yaml",
				filepath.Join(dir, "definition.yaml"):                   "definition.yaml",
				filepath.Join(dir, "composition.yaml"):                  "composition.yaml",
			} {
				b, err := os.ReadFile(src)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(pkgRoot, dst), b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			xpkg := filepath.Join(tmp, name+".xpkg")
			runCLI(t, root, "xpkg", "build", "--package-root="+pkgRoot, "--package-file="+xpkg)
			pkg := packageYAML(t, xpkg)
			for _, want := range []string{"kind: Configuration", "kind: CompositeResourceDefinition", "kind: Composition", "package: xpkg.crossplane.io/hfops/function-hf-download"} {
				if !strings.Contains(pkg, want) {
					t.Errorf("the %s configuration package lacks %q", name, want)
				}
			}
			if got := crossplaneConstraint(t, pkg, "Configuration"); got != c.crossplane {
				t.Errorf("the %s configuration package asks for Crossplane %q, want %q", name, got, c.crossplane)
			}
		})
	}
}

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

// packageYAML returns the package.yaml of an xpkg (an OCI image tarball).
func packageYAML(t *testing.T, xpkg string) string {
	t.Helper()
	var found string
	eachLayerFile(t, xpkg, func(name string, r io.Reader) {
		if name == "package.yaml" {
			b, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			found = string(b)
		}
	})
	if found == "" {
		t.Fatalf("%s has no package.yaml", xpkg)
	}
	return found
}

// crossplaneConstraint is spec.crossplane.version of the package's metadata
// object of the given kind, the Crossplane versions it installs on.
func crossplaneConstraint(t *testing.T, pkg, kind string) string {
	t.Helper()
	for _, doc := range strings.Split(pkg, "\n---") {
		var meta struct {
			Kind string `json:"kind"`
			Spec struct {
				Crossplane struct {
					Version string `json:"version"`
				} `json:"crossplane"`
			} `json:"spec"`
		}
		if err := yaml.Unmarshal([]byte(doc), &meta); err == nil && meta.Kind == kind {
			return meta.Spec.Crossplane.Version
		}
	}
	t.Fatalf("the package has no %s", kind)
	return ""
}

func hasFile(t *testing.T, xpkg, want string) bool {
	found := false
	eachLayerFile(t, xpkg, func(name string, _ io.Reader) { found = found || name == want })
	return found
}

// eachLayerFile walks the files of every layer of an image tarball.
func eachLayerFile(t *testing.T, tarball string, fn func(name string, r io.Reader)) {
	t.Helper()
	blobs := map[string][]byte{}
	f, err := os.Open(tarball)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		blobs[h.Name] = b
	}
	var manifest []struct{ Layers []string }
	if err := json.Unmarshal(blobs["manifest.json"], &manifest); err != nil || len(manifest) == 0 {
		t.Fatalf("%s is not an image tarball: %v", tarball, err)
	}
	for _, l := range manifest[0].Layers {
		zr, err := gzip.NewReader(strings.NewReader(string(blobs[l])))
		if err != nil {
			t.Fatalf("layer %s: %v", l, err)
		}
		lr := tar.NewReader(zr)
		for {
			h, err := lr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			fn(strings.TrimPrefix(h.Name, "/"), lr)
		}
	}
}
