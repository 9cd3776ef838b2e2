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
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hfops/function-hf-download/hubtest"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"

	"github.com/hfops/function-hf-download/internal/naming"
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
			buildErr = fmt.Errorf("building the crossplane CLI %s: %w\n%s", crossplaneVersion, err, out)
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
// loopback port, with args added, and stops it when the test ends. It
// returns the address and the process id. A port found free may be taken
// again before the function binds it: then the function exits, and it is
// started again on another port.
func startFunction(t testing.TB, args ...string) (string, int) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "function")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("building the function: %v\n%s", err, out)
	}
	var problems []string
	for range 5 {
		addr, pid, err := listenFunction(t, bin, args)
		if err == nil {
			return addr, pid
		}
		problems = append(problems, err.Error())
	}
	t.Fatalf("the function did not start:\n%s", strings.Join(problems, "\n"))
	return "", 0
}

// functionStartTimeout is generous: a loaded 2-core CI machine running the
// race detector can take seconds to start a process.
const functionStartTimeout = time.Minute

func listenFunction(t testing.TB, bin string, args []string) (string, int, error) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()

	logs := &hubtest.SyncBuffer{}
	cmd := exec.Command(bin, append([]string{"--insecure", "--address=" + addr, "--metrics-address="}, args...)...)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = cmd.Process.Kill()
		<-exited //nolint:errcheck // killed on purpose: its exit error says nothing
	}
	deadline := time.Now().Add(functionStartTimeout)
	for {
		select {
		case err := <-exited:
			exited <- err
			return "", 0, fmt.Errorf("the function exited on %s (%w):\n%s", addr, err, logs.String())
		default:
		}
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			_ = c.Close()
			// Listening, and still running: it is ours that listens.
			time.Sleep(100 * time.Millisecond)
			select {
			case err := <-exited:
				exited <- err
				return "", 0, fmt.Errorf("the function exited on %s (%w):\n%s", addr, err, logs.String())
			default:
			}
			t.Cleanup(func() {
				stop()
				if t.Failed() {
					t.Logf("function logs:\n%s", logs.String())
				}
			})
			return addr, cmd.Process.Pid, nil
		}
		if time.Now().After(deadline) {
			stop()
			return "", 0, fmt.Errorf("the function did not listen on %s within %v: %w\n%s", addr, functionStartTimeout, err, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestRender(t *testing.T) {
	cli := crossplaneCLI(t)
	addr, _ := startFunction(t, "--debug")

	cases := map[string]struct {
		reason   string
		xr       string
		required string
		observed string
		legacy   bool // the claim flavour: example/legacy's XRD and Composition
		jobs     int  // the Jobs composed (in Object mode, carried by Objects): asserted apart from the golden, which -update rewrites
	}{
		"first-call": {
			reason:   "The first call: the script's ConfigMap and the pods' ServiceAccount, and no Job until both exist.",
			xr:       "example/xr.yaml",
			required: "example/required",
			jobs:     0,
		},
		"pending": {
			reason:   "The script's ConfigMap and the pods' ServiceAccount exist: two Jobs with hashed names mounting it, HF_TOKEN from a secretKeyRef, both models pending.",
			xr:       "example/xr.yaml",
			required: "example/required",
			observed: "example/observed/script.yaml",
			jobs:     2,
		},
		"complete-and-failed": {
			reason:   "One Job Complete, one Failed: completed and failed lists, the failure reason, the XR not ready.",
			xr:       "example/xr.yaml",
			required: "example/required",
			observed: "example/observed/complete-and-failed.yaml",
			jobs:     2,
		},
		"all-complete": {
			reason:   "Every Job Complete and the pods' summaries read: the XR is ready and shows the commit and bytes on disk.",
			xr:       "example/xr.yaml",
			required: "example/required",
			observed: "example/observed/all-complete.yaml",
			jobs:     2,
		},
		"ttl-deleted": {
			reason:   "A Completed model whose Job the TTL controller deleted stays Completed and gets no new Job.",
			xr:       "example/xr-after-ttl.yaml",
			required: "example/required",
			observed: "example/observed/ttl-deleted.yaml",
			jobs:     1,
		},
		"secret-missing": {
			reason:   "Without the token Secret: no Job, a warning and a condition naming Secret, key and namespace.",
			xr:       "example/xr.yaml",
			required: "example/required/pvc.yaml",
			jobs:     0,
		},
		"pvc-missing": {
			reason:   "Without the PVC: no Job, a warning and StorageReady=False naming the PVC and namespace.",
			xr:       "example/xr.yaml",
			required: "example/required/secret.yaml",
			jobs:     0,
		},
		"legacy-pending": {
			reason:   "A claim's XR: Objects carrying the same Jobs and the script's ConfigMap, in the claim's namespace, named after the claim.",
			xr:       "example/legacy/xr.yaml",
			required: "example/required",
			observed: "example/legacy/observed/script.yaml",
			legacy:   true,
			jobs:     2,
		},
		"legacy-complete-and-failed": {
			reason:   "Job status read back from the Objects' status.atProvider.manifest, folded as in Job mode; the completed Job's Object orphans it.",
			xr:       "example/legacy/xr.yaml",
			required: "example/required",
			observed: "example/legacy/observed/complete-and-failed.yaml",
			legacy:   true,
			jobs:     2,
		},
		"legacy-all-complete": {
			reason:   "Every Job complete: the XR is ready.",
			xr:       "example/legacy/xr.yaml",
			required: "example/required",
			observed: "example/legacy/observed/all-complete.yaml",
			legacy:   true,
			jobs:     2,
		},
		"legacy-ttl-deleted": {
			reason:   "A completion already recorded: the model stays Completed and its Object is not composed again.",
			xr:       "example/legacy/xr-after-ttl.yaml",
			required: "example/required",
			observed: "example/legacy/observed/ttl-deleted.yaml",
			legacy:   true,
			jobs:     1,
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
			if got := composedJobs(t, out); got != tc.jobs {
				t.Errorf("%s\ncrossplane render composed %d Jobs, want %d", tc.reason, got, tc.jobs)
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

// composedJobs counts the Jobs in render's output, bare or carried by an
// Object.
func composedJobs(t *testing.T, out []byte) int {
	t.Helper()
	n := 0
	for doc := range strings.SplitSeq(string(out), "\n---\n") {
		var r struct {
			Kind string `json:"kind"`
			Spec struct {
				ForProvider struct {
					Manifest struct {
						Kind string `json:"kind"`
					} `json:"manifest"`
				} `json:"forProvider"`
			} `json:"spec"`
		}
		if err := yaml.Unmarshal([]byte(doc), &r); err != nil {
			t.Fatalf("render printed invalid YAML: %v\n%s", err, doc)
		}
		if r.Kind == "Job" || r.Kind == "Object" && r.Spec.ForProvider.Manifest.Kind == "Job" {
			n++
		}
	}
	return n
}

// filePlaceholder stands in for a file of the script's ConfigMap (the
// download script, its helper) in golden files: they are tested on their own,
// and their hundreds of lines would bury what a reviewer needs to see.
func filePlaceholder(name string) string { return "<the text of script/" + name + ">" }

// Every Job hash and config hash follows from the script's text too, so the
// goldens name them by placeholder: a new script changes no golden, and an
// -update diff shows only what really changed. TestExampleHashes checks the
// real values against the example's inputs; readable checks that each
// placeholder stands for one hash of the right shape.
func hashPlaceholder(model string) string   { return "<hash of " + model + ">" }
func configPlaceholder(model string) string { return "<config-hash of " + model + ">" }

// readable re-encodes render's output document by document with the script
// text and the hashes that follow from it replaced by placeholders.
func readable(t *testing.T, out []byte) []byte {
	t.Helper()
	var docs []any
	for _, doc := range strings.Split(string(out), "\n---\n") {
		doc = strings.TrimPrefix(strings.TrimSpace(doc), "---")
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var v any
		if err := yaml.Unmarshal([]byte(doc), &v); err != nil {
			t.Fatalf("render printed invalid YAML: %v\n%s", err, doc)
		}
		docs = append(docs, v)
	}
	hashes := renderedHashes(t, docs)
	var b bytes.Buffer
	for _, v := range docs {
		y, err := yaml.Marshal(placeholders(v, hashes))
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString("---\n")
		b.Write(y)
	}
	return b.Bytes()
}

// renderedHashes maps each Job hash (from the XR's status) and config hash
// (from the Jobs' annotations) in render's output to its placeholder.
func renderedHashes(t *testing.T, docs []any) *strings.Replacer {
	t.Helper()
	var pairs []string
	seen := map[string]string{}
	add := func(value, placeholder string, length int) {
		if value == "" {
			return
		}
		if len(value) != length || strings.IndexFunc(value, naming.NotLowerHex) >= 0 {
			t.Fatalf("%s is %q, not %d hex digits", placeholder, value, length)
		}
		if other, ok := seen[value]; ok && other != placeholder {
			t.Fatalf("%s and %s are both %s", other, placeholder, value)
		}
		seen[value] = placeholder
		pairs = append(pairs, value, placeholder)
	}
	for _, d := range docs {
		m, _ := d.(map[string]any)
		if st, ok := m["status"].(map[string]any); ok {
			models, _ := st["models"].([]any)
			for _, e := range models {
				e, _ := e.(map[string]any)
				name, _ := e["name"].(string)
				h, _ := e["hash"].(string)
				add(h, hashPlaceholder(name), naming.SpecHashLen)
			}
		}
		job := m
		if m["kind"] == "Object" {
			job, _ = nested(m, "spec", "forProvider", "manifest").(map[string]any)
		}
		if job["kind"] == "ConfigMap" {
			name, _ := nested(job, "metadata", "name").(string)
			if len(name) > naming.SpecHashLen {
				add(name[len(name)-naming.SpecHashLen:], hashPlaceholder("the script"), naming.SpecHashLen)
			}
		}
		if job["kind"] == "Job" {
			ann, _ := nested(job, "metadata", "annotations").(map[string]any)
			model, _ := ann[naming.AnnotationModel].(string)
			config, _ := ann[naming.AnnotationConfigHash].(string)
			add(config, configPlaceholder(model), 16)
		}
	}
	return strings.NewReplacer(pairs...)
}

func nested(v any, path ...string) any {
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

// placeholders replaces the script and the hashes in every string, key or
// value.
func placeholders(v any, hashes *strings.Replacer) any {
	switch x := v.(type) {
	case string:
		for name, text := range script.Files {
			if x == text {
				return filePlaceholder(name)
			}
		}
		return hashes.Replace(x)
	case []any:
		for i := range x {
			x[i] = placeholders(x[i], hashes)
		}
	case map[string]any:
		for k, e := range x {
			delete(x, k)
			x[hashes.Replace(k)] = placeholders(e, hashes)
		}
	}
	return v
}

// TestMakeRender runs `make render` as a newcomer does and checks that it shows the work: one
// Job per model of example/xr.yaml, the XR's status saying they download, and, to be readable,
// the download script's ConfigMap in one line and the whole at most maxRenderLines.
func TestMakeRender(t *testing.T) {
	crossplaneCLI(t)
	const maxRenderLines = 250
	var xr struct {
		Spec struct {
			Models []struct {
				Name string `json:"name"`
			} `json:"models"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal([]byte(readFile(t, "example/xr.yaml")), &xr); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		args []string
		full bool
	}{
		{name: "readable", args: []string{"render"}},
		{name: "full", args: []string{"render", "FULL=1"}, full: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			var stderr bytes.Buffer
			cmd := exec.CommandContext(ctx, "make", append([]string{"--no-print-directory"}, tc.args...)...)
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("make %s: %v\n%s", strings.Join(tc.args, " "), err, stderr.String())
			}
			text := string(out)

			var status struct {
				Status struct {
					Conditions []struct {
						Type   string `json:"type"`
						Reason string `json:"reason"`
					} `json:"conditions"`
					Models []struct {
						Name    string `json:"name"`
						JobName string `json:"jobName"`
						Phase   string `json:"phase"`
						Message string `json:"message"`
					} `json:"models"`
				} `json:"status"`
			}
			docs := strings.Split(text, "\n---\n")
			if err := yaml.Unmarshal([]byte(docs[1]), &status); err != nil {
				t.Fatalf("the XR: %v\n%s", err, docs[1])
			}
			if len(status.Status.Models) != len(xr.Spec.Models) {
				t.Fatalf("status.models has %d entries, example/xr.yaml %d models:\n%s", len(status.Status.Models), len(xr.Spec.Models), text)
			}
			for i, m := range status.Status.Models {
				if m.Name != xr.Spec.Models[i].Name || m.Phase != "Pending" || m.Message != "" {
					t.Errorf("status.models[%d] = %+v, want %s Pending on its Job", i, m, xr.Spec.Models[i].Name)
				}
				jobs := regexp.MustCompile(`(?m)^(kind: Job\n(.*\n)*?  name: |# Job [a-z0-9-]+/)` + regexp.QuoteMeta(m.JobName) + `\b`)
				if len(jobs.FindAllString(text, -1)) != 1 {
					t.Errorf("make %s does not show the Job %s of %s once", strings.Join(tc.args, " "), m.JobName, m.Name)
				}
			}
			if n := strings.Count(text, "\nkind: Job\n") + strings.Count(text, "\n# Job "); n != len(xr.Spec.Models) {
				t.Errorf("make %s shows %d Jobs, want one per model (%d)", strings.Join(tc.args, " "), n, len(xr.Spec.Models))
			}
			downloading := false
			for _, c := range status.Status.Conditions {
				downloading = downloading || c.Type == "ModelsDownloaded" && c.Reason == "Downloading"
			}
			if !downloading {
				t.Errorf("the XR's ModelsDownloaded condition does not say Downloading: %+v", status.Status.Conditions)
			}

			script := regexp.MustCompile(`(?m)^# ConfigMap inference/hf-dl-llama-cache-script-[0-9a-f]+: data keys download\.sh, hfdl\.py`)
			if whole := strings.Contains(text, "\n  download.sh: "); whole != tc.full || script.MatchString(text) == tc.full {
				t.Errorf("make %s: the script's ConfigMap printed whole %v, want %v", strings.Join(tc.args, " "), whole, tc.full)
			}
			if lines := strings.Count(text, "\n"); !tc.full && lines > maxRenderLines {
				t.Errorf("make render printed %d lines, want at most %d:\n%s", lines, maxRenderLines, text)
			}
		})
	}
}
