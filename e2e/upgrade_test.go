package e2e

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/hfops/function-hf-download/hubtest"
)

// previousRelease is the commit the upgrade test installs first: one before the function
// kept completions across upgrades (status.models[].intentHash), so that the upgrade starts
// from a status such a version wrote, and one whose download script differs from this
// build's (the last before it began hashing files while hf writes them), so that the upgrade
// changes every Job's hash, as a release that changes the script does. From a commit with
// this build's script and Job template, an upgrade changes no Job at all.
const previousRelease = "5f9132baf66b4d43a5d913ee41066f5f7e1a6a09"

// TestUpgradeRerunsNothingDone installs the previous release of the function, downloads
// with it until one model is complete, one failed and one still running, then upgrades the
// function package to this build (a new Active FunctionRevision, the old one Inactive and its
// server stopped). The new version changes every Job's hash (its script and default image
// are in it), yet: the completed model stays Completed with its commit and gets no Job; the
// running one finishes on the Job it had; only the failed one gets a new Job, of the new
// template, and completes once the Hub serves its repo. Then the XR is Ready.
func TestUpgradeRerunsNothingDone(t *testing.T) {
	t.Parallel()
	n := useNode(t)
	x := useFunction(t)
	previous := buildPreviousRelease(t)

	// A package and Composition of this run's own, apart from those the other tests share,
	// and from an earlier run's (-count), whose revisions stay Active.
	pkg := "function-hf-download-upgrade-" + randomHex(t, 3)
	old, err := serveFunctionRevision(cluster, x, previous, pkg, 1)
	if err != nil {
		t.Fatal(err)
	}
	composition := "modeldownloads-" + pkg
	if err := applyNodeComposition(x, n, composition, pkg, nil); err != nil {
		t.Fatal(err)
	}

	done, running, failed := newRepo(t, "acme/done"), newRepo(t, "acme/running"), newRepo(t, "acme/failed")
	model := func(repo string) map[string]any {
		return map[string]any{"name": repo, "include": []any{"*.json"}, "retryCount": int64(0)}
	}
	md := applyRealDownload(t, n, "upgrade", []any{model(done), model(running), model(failed)}, func(spec map[string]any) {
		spec["crossplane"] = map[string]any{"compositionRef": map[string]any{"name": composition}}
	})
	token := exampleToken(t, md.ns)
	files := map[string]string{"config.json": `{"model_type":"llama"}`}
	n.hub.Set("model", done, hubtest.Repo{Commit: newCommit(t), Files: files, Token: token})
	gate := hubtest.NewGate()
	t.Cleanup(gate.Open)
	n.hub.Set("model", running, hubtest.Repo{Commit: newCommit(t), Files: files, Token: token, Gate: gate})
	// failed is not on the Hub yet: its download fails with "not found".

	md.waitModel(t, done, 3*time.Minute, "Completed", phaseIs("Completed"))
	md.waitModel(t, failed, 3*time.Minute, "Failed", phaseIs("Failed"))
	xr := md.waitModel(t, running, 3*time.Minute, "Running", phaseIs("Running"))
	before := map[string]map[string]any{}
	for _, repo := range []string{done, running, failed} {
		before[repo] = statusModel(xr, repo)
		if _, ok := before[repo]["intentHash"]; ok {
			t.Fatalf("the previous release wrote an intentHash for %s: is %s really the release before it?", repo, previousRelease[:7])
		}
	}
	jobsBefore := jobNames(t, md)

	// The upgrade, as the package manager does it: the old revision Inactive, the new one
	// Active. The old server goes, so nothing can be answered by it after this.
	ctx := context.Background()
	inactive := []byte(`{"spec":{"desiredState":"Inactive"}}`)
	if _, err := cluster.dynamic.Resource(functionRevisionResource).Patch(ctx, pkg+"-e2e", types.MergePatchType, inactive, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := serveFunctionRevision(cluster, x, filepath.Join(cluster.dir, "function"), pkg, 2); err != nil {
		t.Fatal(err)
	}
	old.stop()
	n.hub.Set("model", failed, hubtest.Repo{Commit: newCommit(t), Files: files, Token: token})

	// This build has answered once status has intents; the failed model is then in its
	// next attempt, as the Job template changed (if it had not, previousRelease would be
	// no test of an upgrade).
	xr = md.waitModel(t, failed, 3*time.Minute, "in a new attempt of this build", func(m map[string]any) bool {
		return m["intentHash"] != nil
	})
	if m := statusModel(xr, failed); m["attempt"] != int64(2) {
		t.Fatalf("the failed model after the upgrade: %v, want attempt 2: the Jobs of %s and of this build must differ", m, previousRelease[:7])
	}
	if m := statusModel(xr, done); m["phase"] != "Completed" || m["jobName"] != before[done]["jobName"] || m["commit"] != before[done]["commit"] {
		t.Errorf("the completed model after the upgrade: %v, want Completed as before it: %v", m, before[done])
	}
	if m := statusModel(xr, running); m["phase"] != "Running" || m["jobName"] != before[running]["jobName"] {
		t.Errorf("the running model after the upgrade: %v, want Running on its Job %v", m, before[running]["jobName"])
	}
	if m := statusModel(xr, failed); m["jobName"] == before[failed]["jobName"] {
		t.Errorf("the failed model after the upgrade is on its old Job %v, want a new one", m["jobName"])
	}

	gate.Open()
	md.waitModel(t, running, 3*time.Minute, "Completed on the Job it had", func(m map[string]any) bool {
		return m["phase"] == "Completed" && m["jobName"] == before[running]["jobName"]
	})
	md.waitModel(t, failed, 3*time.Minute, "Completed", phaseIs("Completed"))
	xr = md.waitXR(t, "Ready", func(xr *unstructured.Unstructured) bool { return conditionStatus(xr, "Ready") == "True" })

	// The Jobs made since the upgrade: the failed model's next attempt, and nothing else.
	var made []string
	for _, name := range jobNames(t, md) {
		if !slices.Contains(jobsBefore, name) {
			made = append(made, name)
		}
	}
	if want := []string{statusModel(xr, failed)["jobName"].(string)}; !slices.Equal(made, want) {
		t.Errorf("Jobs made since the upgrade: %v, want only the failed model's next attempt %v", made, want)
	}
	for _, repo := range []string{done, running, failed} {
		if m := statusModel(xr, repo); m["intentHash"] == nil || m["phase"] != "Completed" {
			t.Errorf("%s after the upgrade: %v, want Completed with an intentHash", repo, m)
		}
	}
}

// jobNames lists the names of the XR's Jobs, sorted, those being deleted included.
func jobNames(t testing.TB, md *realDownload) []string {
	t.Helper()
	jobs, err := md.jobs()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, j := range jobs {
		names = append(names, j.Name)
	}
	slices.Sort(names)
	return names
}

// buildPreviousRelease builds the function of previousRelease, from the repository's own
// history (git archive, so no worktree is left behind), and returns the binary.
func buildPreviousRelease(t testing.TB) string {
	t.Helper()
	// A shallow clone lacks the commit: fetch it from where the clone came from.
	if exec.Command("git", "-C", cluster.repoRoot, "cat-file", "-e", previousRelease+"^{commit}").Run() != nil {
		if out, err := exec.Command("git", "-C", cluster.repoRoot, "fetch", "--quiet", "origin", previousRelease).CombinedOutput(); err != nil {
			t.Fatalf("the clone lacks %s and fetching it from origin failed: %v %s", previousRelease, err, out)
		}
	}
	src := t.TempDir()
	archive := exec.Command("git", "-C", cluster.repoRoot, "archive", "--format=tar", previousRelease)
	untar := exec.Command("tar", "-x", "-C", src)
	pipe, err := archive.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	archive.Stderr = &stderr
	untar.Stdin = pipe
	untar.Stderr = &stderr
	if err := untar.Start(); err != nil {
		t.Fatal(err)
	}
	if err := archive.Run(); err != nil {
		t.Fatalf("git archive %s: %v %s", previousRelease, err, &stderr)
	}
	if err := untar.Wait(); err != nil {
		t.Fatalf("untar %s: %v %s", previousRelease, err, &stderr)
	}
	bin := filepath.Join(src, "function")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = src
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build the function of %s: %v\n%s", previousRelease, err, out)
	}
	return bin
}
