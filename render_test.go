package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"

	"github.com/hfops/function-hf-download/script"
)

// The render tests run the real Crossplane CLI against the real function
// binary, as a developer would with `make render`, and compare the output
// with golden files in testdata/render. Run with -update to rewrite them, then
// read the diff.

var update = flag.Bool("update", false, "rewrite the golden files of the render tests")

const crossplaneVersion = "v2.2.1"

var (
	buildOnce sync.Once
	builtCLI  string
	buildErr  error
)

// crossplaneCLI returns bin/crossplane, building it from the tools module when
// it is missing: a test never skips for want of a tool.
func crossplaneCLI(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		root, err := filepath.Abs(".")
		if err != nil {
			buildErr = err
			return
		}
		builtCLI = filepath.Join(root, "bin", "crossplane")
		if _, err := os.Stat(builtCLI); err == nil {
			return
		}
		// Build beside the target and rename, so a concurrent build in
		// another test package never sees half a binary.
		tmp := fmt.Sprintf("%s.%d.tmp", builtCLI, os.Getpid())
		cmd := exec.Command("go", "build", "-trimpath", "-o", tmp, "github.com/crossplane/crossplane/v2/cmd/crank")
		cmd.Dir = filepath.Join(root, "tools", "crossplane")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("building the crossplane CLI %s: %v\n%s", crossplaneVersion, err, out)
			return
		}
		buildErr = os.Rename(tmp, builtCLI)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtCLI
}

// startFunction builds and starts the function binary, insecure, on a free
// loopback port, and stops it when the test ends.
func startFunction(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "function")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("building the function: %v\n%s", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()

	var logs bytes.Buffer
	cmd := exec.Command(bin, "--insecure", "--debug", "--address="+addr, "--metrics-address=")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("function logs:\n%s", logs.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			_ = c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("the function did not listen on %s: %v\n%s", addr, err, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestRender(t *testing.T) {
	cli := crossplaneCLI(t)
	addr := startFunction(t)

	cases := map[string]struct {
		reason   string
		xr       string
		required string
		observed string
		legacy   bool // the claim flavour: example/legacy's XRD and Composition
	}{
		"pending": {
			reason:   "A new ModelDownload: two Jobs with hashed names, HF_TOKEN from a secretKeyRef, both models pending.",
			xr:       "example/xr.yaml",
			required: "example/required",
		},
		"complete-and-failed": {
			reason:   "One Job Complete, one Failed: completed and failed lists, the failure reason, the XR not ready.",
			xr:       "example/xr.yaml",
			required: "example/required",
			observed: "example/observed/complete-and-failed.yaml",
		},
		"all-complete": {
			reason:   "Every Job Complete and the pods' summaries read: the XR is ready and shows the commit and bytes on disk.",
			xr:       "example/xr.yaml",
			required: "example/required",
			observed: "example/observed/all-complete.yaml",
		},
		"ttl-deleted": {
			reason:   "A Completed model whose Job the TTL controller deleted stays Completed and gets no new Job.",
			xr:       "example/xr-after-ttl.yaml",
			required: "example/required",
			observed: "example/observed/ttl-deleted.yaml",
		},
		"secret-missing": {
			reason:   "Without the token Secret: no Job, a warning and a condition naming Secret, key and namespace.",
			xr:       "example/xr.yaml",
			required: "example/required/pvc.yaml",
		},
		"pvc-missing": {
			reason:   "Without the PVC: no Job, a warning and StorageReady=False naming the PVC and namespace.",
			xr:       "example/xr.yaml",
			required: "example/required/secret.yaml",
		},
		"legacy-pending": {
			reason:   "A claim's XR: Objects carrying the same Jobs, in the claim's namespace, named after the claim.",
			xr:       "example/legacy/xr.yaml",
			required: "example/required",
			legacy:   true,
		},
		"legacy-complete-and-failed": {
			reason:   "Job status read back from the Objects' status.atProvider.manifest, folded as in Job mode; the completed Job's Object orphans it.",
			xr:       "example/legacy/xr.yaml",
			required: "example/required",
			observed: "example/legacy/observed/complete-and-failed.yaml",
			legacy:   true,
		},
		"legacy-all-complete": {
			reason:   "Every Job complete: the XR is ready.",
			xr:       "example/legacy/xr.yaml",
			required: "example/required",
			observed: "example/legacy/observed/all-complete.yaml",
			legacy:   true,
		},
		"legacy-ttl-deleted": {
			reason:   "A completion already recorded: the model stays Completed and its Object is not composed again.",
			xr:       "example/legacy/xr-after-ttl.yaml",
			required: "example/required",
			observed: "example/legacy/observed/ttl-deleted.yaml",
			legacy:   true,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			dir := "example"
			if tc.legacy {
				dir = "example/legacy"
			}
			args := []string{"render", tc.xr, dir + "/composition.yaml", "example/functions.yaml",
				"--xrd=" + dir + "/definition.yaml", "--include-function-results",
				"--function-annotations=render.crossplane.io/runtime-development-target=" + addr}
			if tc.required != "" {
				args = append(args, "--required-resources="+tc.required)
			}
			if tc.observed != "" {
				args = append(args, "--observed-resources="+tc.observed)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			var stderr bytes.Buffer
			cmd := exec.CommandContext(ctx, cli, args...)
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("crossplane %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
			}
			got := readable(t, out)
			golden := filepath.Join("testdata", "render", name+".yaml")
			if *update {
				if err := os.WriteFile(golden, got, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -run TestRender -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("%s\ncrossplane render differs from %s (-want, +got):\n%s", tc.reason, golden, diff)
			}
		})
	}
}

// scriptPlaceholder stands in for the download script in golden files: the
// script is tested on its own, and its 200 lines would bury what a reviewer
// needs to see.
const scriptPlaceholder = "<the text of script/download.sh>"

// readable re-encodes render's output document by document with the script
// text replaced by scriptPlaceholder.
func readable(t *testing.T, out []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	for _, doc := range strings.Split(string(out), "\n---\n") {
		doc = strings.TrimPrefix(strings.TrimSpace(doc), "---")
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var v any
		if err := yaml.Unmarshal([]byte(doc), &v); err != nil {
			t.Fatalf("render printed invalid YAML: %v\n%s", err, doc)
		}
		y, err := yaml.Marshal(replaceScript(v))
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString("---\n")
		b.Write(y)
	}
	return b.Bytes()
}

func replaceScript(v any) any {
	switch x := v.(type) {
	case string:
		if x == script.Text {
			return scriptPlaceholder
		}
	case []any:
		for i := range x {
			x[i] = replaceScript(x[i])
		}
	case map[string]any:
		for k := range x {
			x[k] = replaceScript(x[k])
		}
	}
	return v
}
