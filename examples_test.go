package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	fnv1 "github.com/crossplane/function-sdk-go/proto/v1"

	"github.com/hfops/function-hf-download/internal/build"
	"github.com/hfops/function-hf-download/internal/naming"
	"github.com/hfops/function-hf-download/internal/read"
)

// The example's observed Jobs, pods and recorded status name Jobs by their
// hashes, which follow from everything hashed: the script's text among them.
// TestExampleHashes keeps them in step with what the function composes for
// example/xr.yaml (and example/legacy/xr.yaml); with -update it rewrites
// them, so a new script is one command, not a hand edit of eleven files.

// A hash that is a YAML value is written quoted: one of decimal digits alone
// (or 1e5…) would be read as a number.
var (
	jobHashPattern     = regexp.MustCompile(`\b(hf-dl-[a-z0-9-]+?-|job-[a-z0-9-]+?-|script-)([0-9a-f]{10})\b`)
	jobHashValue       = regexp.MustCompile(`(hfops\.kamal\.dev/spec-hash: |hash: )"?[0-9a-f]{10}"?`)
	contentHashPattern = regexp.MustCompile(`contentHash: "?[0-9a-f]{16}"?`)
)

func TestExampleHashes(t *testing.T) {
	for _, flavour := range []struct {
		dir   string
		files []string
	}{
		{"example", []string{"observed/all-complete.yaml", "observed/complete-and-failed.yaml", "observed/ttl-deleted.yaml", "observed/script.yaml",
			"xr-after-ttl.yaml", "required/pods.yaml"}},
		{"example/legacy", []string{"observed/all-complete.yaml", "observed/complete-and-failed.yaml", "observed/ttl-deleted.yaml", "observed/script.yaml",
			"xr-after-ttl.yaml"}},
	} {
		t.Run(flavour.dir, func(t *testing.T) {
			want := exampleEntries(t, flavour.dir)
			for _, f := range flavour.files {
				path := filepath.Join(flavour.dir, f)
				b, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				got := rehash(t, string(b), want)
				if got == string(b) {
					continue
				}
				if *update {
					if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
						t.Fatal(err)
					}
					continue
				}
				t.Errorf("%s names Jobs by hashes the function no longer gives them (run go test -run TestExampleHashes -update .)", path)
			}
		})
	}
}

// exampleEntries is status.models of the first call for the flavour's XR,
// with the example's Secret and PVC, by model name.
func exampleEntries(t *testing.T, dir string) map[string]map[string]string {
	t.Helper()
	req := &fnv1.RunFunctionRequest{
		Meta:              crossplaneV22("tag"),
		Observed:          &fnv1.State{Composite: &fnv1.Resource{Resource: mustStruct(readFile(t, filepath.Join(dir, "xr.yaml")))}},
		RequiredResources: map[string]*fnv1.Resources{read.RequirementPods: {}, read.RequirementPeers: {}},
	}

	for name, file := range map[string]string{read.RequirementToken: "secret.yaml", read.RequirementPVC: "pvc.yaml"} {
		req.RequiredResources[name] = &fnv1.Resources{Items: []*fnv1.Resource{{Resource: mustStruct(readFile(t, filepath.Join("example", "required", file)))}}}
	}
	comp := mustStruct(readFile(t, filepath.Join(dir, "composition.yaml")))
	for _, step := range read.Get(comp, "spec", "pipeline").GetListValue().GetValues() {
		if in := read.Get(step.GetStructValue(), "input").GetStructValue(); in != nil {
			req.Input = in
		}
	}
	withScript(req)
	rsp, err := newTestFunction().RunFunction(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]string{}
	for _, e := range read.Get(rsp.GetDesired().GetComposite().GetResource(), "status", "models").GetListValue().GetValues() {
		m := e.GetStructValue()
		out[read.GetString(m, "name")] = map[string]string{"hash": read.GetString(m, "hash"), "contentHash": read.GetString(m, "contentHash"),
			"jobName": read.GetString(m, "jobName")}
	}
	if len(out) == 0 || out[firstModel(out)]["hash"] == "" {
		t.Fatalf("%s: the function composed no Jobs: %v", dir, rsp.GetResults())
	}
	// The script's ConfigMap, as if it were one more model.
	for k, r := range rsp.GetDesired().GetResources() {
		if strings.HasPrefix(k, build.ScriptKeyPrefix) {
			name := read.GetString(r.GetResource(), "metadata", "name")
			if read.GetString(r.GetResource(), "kind") == "Object" {
				name = read.GetString(r.GetResource(), "spec", "forProvider", "manifest", "metadata", "name")
			}
			out[build.ScriptKey(name)] = map[string]string{"hash": name[len(name)-naming.SpecHashLen:], "jobName": name}
		}
	}
	return out
}

func firstModel(m map[string]map[string]string) string {
	for k := range m {
		return k
	}
	return ""
}

// rehash replaces, document by document, the hashes of each model's Job and
// content with the current ones. A document (or status entry) belongs to the
// model it names.
func rehash(t *testing.T, text string, want map[string]map[string]string) string {
	t.Helper()
	docs := strings.Split(text, "\n---\n")
	for i, doc := range docs {
		// A status list holds one entry per model: split it by entry.
		parts := regexp.MustCompile(`(?m)^  - name: `).Split(doc, -1)
		heads := regexp.MustCompile(`(?m)^  - name: `).FindAllString(doc, -1)
		for j, part := range parts {
			model := modelOf(part, want)
			if model == "" {
				continue
			}
			w := want[model]
			part = jobHashPattern.ReplaceAllString(part, "${1}"+w["hash"])
			part = jobHashValue.ReplaceAllString(part, `${1}"`+w["hash"]+`"`)
			part = contentHashPattern.ReplaceAllString(part, `contentHash: "`+w["contentHash"]+`"`)
			parts[j] = part
		}
		var b strings.Builder
		for j, part := range parts {
			if j > 0 {
				b.WriteString(heads[j-1])
			}
			b.WriteString(part)
		}
		docs[i] = b.String()
	}
	return strings.Join(docs, "\n---\n")
}

// modelOf is the one model a piece of YAML is about: the model whose name, or
// whose Job name without its hash, it holds.
func modelOf(part string, want map[string]map[string]string) string {
	var found string
	for model, w := range want {
		prefix := strings.TrimSuffix(w["jobName"], w["hash"])
		if strings.Contains(part, "hfops.kamal.dev/model: "+model+"\n") || strings.HasPrefix(part, model+"\n") || strings.Contains(part, prefix) {
			if found != "" && found != model {
				return ""
			}
			found = model
		}
	}
	return found
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
