// Command render is `make render`: it starts the function, runs `crossplane render` on the
// example as Crossplane's first reconciles go, and prints the last one readably.
//
// One render is one reconcile, and the first composes only what the Jobs need (the script's
// ConfigMap, the pods' ServiceAccount and its RBAC): the Jobs follow once Crossplane observes
// those. So each pass feeds the next what the one before composed, as observed resources, and
// its XR status, as the XR: the way Crossplane's XR controller carries them from one call to
// the next. It stops when a pass composes nothing new. A ConfigMap with more than a screenful
// of data (the download script) is shown as one line unless -full is given.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/pmezard/go-difflib/difflib"
	"sigs.k8s.io/yaml"
)

// maxPasses ends a pipeline that never settles; the example settles in two.
const maxPasses = 5

// startTimeout ends a wait for a function that never listens; generous, as a busy machine may
// take seconds to start a process.
const startTimeout = 2 * time.Minute

// passTimeout ends one `crossplane render` that hangs.
const passTimeout = 5 * time.Minute

type options struct {
	crossplane, function                  string
	xr, composition, functions, xrd, reqd string
	full                                  bool
}

func main() {
	var o options
	flag.StringVar(&o.crossplane, "crossplane", "bin/crossplane", "the Crossplane CLI")
	flag.StringVar(&o.function, "function", "bin/function-hf-download", "the function binary, started with --insecure on a free loopback port")
	flag.StringVar(&o.xr, "xr", "example/xr.yaml", "the XR")
	flag.StringVar(&o.composition, "composition", "example/composition.yaml", "the Composition")
	flag.StringVar(&o.functions, "functions", "example/functions.yaml", "the Functions")
	flag.StringVar(&o.xrd, "xrd", "example/definition.yaml", "the XRD")
	flag.StringVar(&o.reqd, "required-resources", "example/required", "the required resources (the token Secret, the PVC, pods)")
	flag.BoolVar(&o.full, "full", false, "print every composed resource whole (the download script's ConfigMap is hundreds of lines)")
	flag.Parse()
	if err := run(o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "render:", err)
		os.Exit(1)
	}
}

func run(o options, stdout io.Writer) error {
	work, err := os.MkdirTemp("", "hf-render-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work) //nolint:errcheck // a temporary folder left behind harms nothing

	addr, stop, err := startFunction(o.function)
	if err != nil {
		return err
	}
	defer stop()

	xr, err := os.ReadFile(o.xr)
	if err != nil {
		return err
	}
	var observed []map[string]any
	for pass := 1; ; pass++ {
		out, err := render(o, addr, work, xr, observed)
		if err != nil {
			return fmt.Errorf("pass %d: %w", pass, err)
		}
		docs, err := decode(out)
		if err != nil {
			return fmt.Errorf("pass %d: %w", pass, err)
		}
		composed := composedResources(docs)
		if settled(observed, composed) || pass == maxPasses {
			return show(stdout, docs, pass, o.full)
		}
		if xr, err = yaml.Marshal(docs[0]); err != nil {
			return err
		}
		observed = composed
	}
}

// render runs one `crossplane render` pass with the XR as the last pass left it and what it
// composed as observed.
func render(o options, addr, work string, xr []byte, observed []map[string]any) ([]byte, error) {
	xrFile := filepath.Join(work, "xr.yaml")
	if err := os.WriteFile(xrFile, xr, 0o600); err != nil { //nolint:gosec // our own temporary folder
		return nil, err
	}
	args := []string{"render", xrFile, o.composition, o.functions,
		"--xrd=" + o.xrd, "--required-resources=" + o.reqd,
		"--include-function-results", "--include-full-xr",
		"--function-annotations=render.crossplane.io/runtime-development-target=" + addr}
	if len(observed) > 0 {
		var b bytes.Buffer
		for _, r := range observed {
			y, err := yaml.Marshal(r)
			if err != nil {
				return nil, err
			}
			b.WriteString("---\n")
			b.Write(y)
		}
		file := filepath.Join(work, "observed.yaml")
		if err := os.WriteFile(file, b.Bytes(), 0o600); err != nil {
			return nil, err
		}
		args = append(args, "--observed-resources="+file)
	}
	ctx, cancel := context.WithTimeout(context.Background(), passTimeout)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, o.crossplane, args...) //nolint:gosec // the developer's own CLI and files, from make
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w\n%s", o.crossplane, strings.Join(args, " "), err, stderr.String())
	}
	return out, nil
}

// decode splits render's output into its documents: the XR first, then composed resources
// and Results.
func decode(out []byte) ([]map[string]any, error) {
	var docs []map[string]any
	for doc := range strings.SplitSeq(string(out), "\n---\n") {
		doc = strings.TrimPrefix(doc, "---\n")
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var m map[string]any
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			return nil, fmt.Errorf("render printed invalid YAML: %w\n%s", err, doc)
		}
		docs = append(docs, m)
	}
	if len(docs) == 0 {
		return nil, errors.New("render printed nothing")
	}
	return docs, nil
}

func isResult(doc map[string]any) bool { return doc["kind"] == "Result" }

func composedResources(docs []map[string]any) []map[string]any {
	var out []map[string]any
	for _, d := range docs[1:] {
		if !isResult(d) {
			out = append(out, d)
		}
	}
	return out
}

// compositionName is the name Crossplane knows a composed resource by.
func compositionName(r map[string]any) string {
	meta, _ := r["metadata"].(map[string]any)
	annotations, _ := meta["annotations"].(map[string]any)
	name, _ := annotations["crossplane.io/composition-resource-name"].(string)
	return name
}

// settled reports whether a pass composed exactly what it observed: the next reconcile would
// compose the same.
func settled(observed, composed []map[string]any) bool {
	names := func(rs []map[string]any) []string {
		set := map[string]bool{}
		for _, r := range rs {
			set[compositionName(r)] = true
		}
		return slices.Sorted(maps.Keys(set))
	}
	return slices.Equal(names(observed), names(composed))
}

// show prints the last pass as `crossplane render` does, but readably: the XR with its status
// only (its spec is the input's), the first Job whole and each other Job as its difference from
// the first, and every other composed resource (the script's ConfigMap, the pods' account and
// RBAC) in one line. With full, every document whole.
func show(out io.Writer, docs []map[string]any, passes int, full bool) error {
	var w strings.Builder
	fmt.Fprintf(&w, "# crossplane render of the example, pass %d: each pass observes what the one before composed, as Crossplane's first reconciles do\n", passes)
	xr := maps.Clone(docs[0])
	delete(xr, "spec")
	if meta, ok := xr["metadata"].(map[string]any); ok {
		xr["metadata"] = map[string]any{"name": meta["name"], "namespace": meta["namespace"]}
	}
	var firstJob string
	for _, d := range append([]map[string]any{xr}, docs[1:]...) {
		y, err := yaml.Marshal(d)
		if err != nil {
			return err
		}
		switch {
		case full || d["kind"] == "Result" || len(firstJob) == 0 && d["kind"] == "Job" || d["kind"] == xr["kind"]:
			if d["kind"] == "Job" {
				firstJob = string(y)
			}
			fmt.Fprintf(&w, "---\n%s", y)
		case d["kind"] == "Job":
			diff, err := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
				A: difflib.SplitLines(firstJob), B: difflib.SplitLines(string(y)),
				FromFile: "the first Job", ToFile: "this Job", Context: 1,
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(&w, "---\n# %s: the first Job but for these lines (FULL=1 prints it whole)\n", identify(d))
			for line := range strings.SplitSeq(strings.TrimSuffix(diff, "\n"), "\n") {
				fmt.Fprintf(&w, "# %s\n", line)
			}
		default:
			fmt.Fprintf(&w, "---\n# %s%s (FULL=1 prints it whole)\n", identify(d), dataKeys(d))
		}
	}
	_, err := io.WriteString(out, w.String())
	return err
}

// identify is a resource's kind, namespace and name.
func identify(doc map[string]any) string {
	meta, _ := doc["metadata"].(map[string]any)
	return fmt.Sprintf("%s %s/%s", doc["kind"], meta["namespace"], meta["name"])
}

// dataKeys names a ConfigMap's keys and counts their lines: the download script's run to
// hundreds.
func dataKeys(doc map[string]any) string {
	data, ok := doc["data"].(map[string]any)
	if !ok {
		return ""
	}
	lines := 0
	for _, v := range data {
		s, _ := v.(string)
		lines += strings.Count(s, "\n") + 1
	}
	return fmt.Sprintf(": data keys %s, %d lines", strings.Join(slices.Sorted(maps.Keys(data)), ", "), lines)
}

// startFunction starts the function, insecure, on a free loopback port and waits until it
// listens. A port found free may be taken before the function binds it: then the function
// exits and is started again on another.
func startFunction(bin string) (string, func(), error) {
	var problems []string
	for range 5 {
		addr, stop, err := listen(bin)
		if err == nil {
			return addr, stop, nil
		}
		problems = append(problems, err.Error())
	}
	return "", nil, fmt.Errorf("the function did not start:\n%s", strings.Join(problems, "\n"))
}

func listen(bin string) (string, func(), error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	addr := l.Addr().String()
	_ = l.Close()

	var logs bytes.Buffer
	cmd := exec.Command(bin, "--insecure", "--address="+addr, "--metrics-address=") //nolint:gosec // the function make built
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = cmd.Process.Kill()
		<-exited //nolint:errcheck // killed on purpose: its exit error says nothing
	}
	deadline := time.After(startTimeout)
	for {
		select {
		case err := <-exited:
			return "", nil, fmt.Errorf("the function exited on %s (%w):\n%s", addr, err, logs.String())
		case <-deadline:
			stop()
			return "", nil, fmt.Errorf("the function did not listen on %s within %v:\n%s", addr, startTimeout, logs.String())
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			_ = c.Close()
			return addr, stop, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
}
