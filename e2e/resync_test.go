package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/hfops/function-hf-download/hubtest"
)

// TestRealResync: under settings.resyncInterval, a completed model whose branch moved on
// the Hub is checked by a check Job in the downloader image on the real node, which
// downloads the new commit beside the model's directory and switches the directory to
// it: the volume then holds the new commit's files exactly, the unchanged file is the same
// file (a hard link, not fetched again), nothing of the staging is left, and status says
// the revision moved and when it was checked. The model is Completed, and the XR Ready,
// in every status read while the check runs. The interval (an hour) is not waited for:
// the test writes an older status.models[].checkedAt, as if the hour had passed.
func TestRealResync(t *testing.T) {
	t.Parallel()
	n := useNode(t)
	repo := newRepo(t, "acme/resync")
	before := map[string]string{"config.json": `{"model_type":"llama"}`, "model.safetensors": safetensors(t, 64, 64)}
	after := map[string]string{"config.json": before["config.json"], "model.safetensors": safetensors(t, 64, 96), "tokenizer.json": `{"version":"1.0"}`}
	md := applyRealDownload(t, n, "real-resync", []any{map[string]any{"name": repo}}, func(spec map[string]any) { settingsOf(spec)["resyncInterval"] = "1h" })
	first, second := newCommit(t), newCommit(t)
	n.hub.Set("model", repo, hubtest.Repo{Commit: first, Files: before, LFS: []string{"model.safetensors"}, Token: exampleToken(t, md.ns)})
	xr := md.waitModel(t, repo, 3*time.Minute, "Completed", phaseIs("Completed"))
	if m := statusModel(xr, repo); m["commit"] != first || m["checkedAt"] == nil {
		t.Fatalf("the download is at %s and says when it was checked: %v", first, m)
	}
	dir := filepath.Join(md.volume, repo)
	config := inode(t, filepath.Join(dir, "config.json"))

	n.hub.Set("model", repo, hubtest.Repo{Commit: second, Files: after, LFS: []string{"model.safetensors"}, Token: exampleToken(t, md.ns)})
	long := time.Now().Add(-2 * time.Hour).UTC().Format(time.RFC3339)
	var m map[string]any
	waitFor(t, 4*time.Minute, "the check of "+repo+" to find "+second, func() (bool, string) {
		xr, err := md.get()
		if err != nil {
			return false, err.Error()
		}
		m = statusModel(xr, repo)
		if m["phase"] != "Completed" || conditionStatus(xr, "Ready") != "True" {
			t.Fatalf("while the check runs the model is %v and the XR Ready %q: both must hold", m["phase"], conditionStatus(xr, "Ready"))
		}
		if m["resync"] == nil && m["checkedAt"] != long {
			if err := md.checkedAt(xr, repo, long); err != nil {
				return false, "writing an older checkedAt: " + err.Error()
			}
		}
		resync, _ := m["resync"].(map[string]any)
		return m["commit"] == second && resync["phase"] == "Completed", fmt.Sprintf("status of %s: %v; pods: %s", repo, m, describePods(md.ns))
	})
	t.Logf("status.models[] of %s/%s after a real check that found the branch moved: %v", md.ns, md.name, m)
	if resync := m["resync"].(map[string]any); resync["movedFrom"] != first || resync["movedAt"] == nil {
		t.Errorf("status says the revision moved from %s: %v", first, resync)
	}
	if at, _ := m["checkedAt"].(string); at <= long {
		t.Errorf("checkedAt %v: want the check's time", m["checkedAt"])
	}
	if diff := cmp.Diff([]string{".hf-download-complete.json", ".hf-download.lock", "config.json", "model.safetensors", "tokenizer.json"}, filesUnder(t, dir)); diff != "" {
		t.Errorf("the model's directory after the switch (-want +got):\n%s", diff)
	}
	for name, content := range after {
		if b, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(b) != content {
			t.Errorf("%s after the switch: %d bytes (%v), want the new commit's %d", name, len(b), err, len(content))
		}
	}
	if got := inode(t, filepath.Join(dir, "config.json")); got != config {
		t.Errorf("config.json is a new file (inode %d, was %d): the unchanged file was fetched again", got, config)
	}
	if left, err := os.ReadDir(filepath.Join(md.volume, ".hf-resync")); err != nil || len(left) != 0 {
		t.Errorf("left in .hf-resync: %v (%v)", left, err)
	}
}

// inode is the inode number of path.
func inode(t testing.TB, path string) uint64 {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// checkedAt writes at as model's status.models[].checkedAt into the XR as it was read, as
// if the time since then had passed: the next call finds a check due when settings.resyncInterval
// has. It fails when the XR changed since it was read.
func (md *modelDownload) checkedAt(xr *unstructured.Unstructured, model, at string) error {
	models, _, _ := unstructured.NestedSlice(xr.Object, "status", "models")
	for _, e := range models {
		if e, ok := e.(map[string]any); ok && e["name"] == model {
			e["checkedAt"] = at
		}
	}
	if err := unstructured.SetNestedSlice(xr.Object, models, "status", "models"); err != nil {
		return err
	}
	return md.x.apply.updateStatus(context.Background(), xr)
}
