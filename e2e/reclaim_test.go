package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/hfops/function-hf-download/hubtest"
)

// TestRealReclaim: under settings.reclaim Delete, a model taken out of the spec has its
// directory removed from the real volume by a reclaim Job in the downloader image, under
// the restricted profile: the other model's directory stays byte for byte, a symlink in
// the removed directory goes as a link while its target stays, status.reclaims[] says
// what was freed. The XR stays Ready.
func TestRealReclaim(t *testing.T) {
	t.Parallel()
	n := useNode(t)
	keep, gone := newRepo(t, "acme/reclaim-keep"), newRepo(t, "acme/reclaim-gone")
	files := map[string]string{"config.json": `{"model_type":"llama"}`, "model.safetensors": safetensors(t, 64, 64)}
	models := []any{map[string]any{"name": keep}, map[string]any{"name": gone}}
	md := applyRealDownload(t, n, "real-reclaim", models, func(spec map[string]any) { settingsOf(spec)["reclaim"] = "Delete" })
	for _, repo := range []string{keep, gone} {
		n.hub.Set("model", repo, hubtest.Repo{Commit: newCommit(t), Files: files, LFS: []string{"model.safetensors"}, Token: exampleToken(t, md.ns)})
	}
	for _, repo := range []string{keep, gone} {
		md.waitModel(t, repo, 3*time.Minute, "Completed", phaseIs("Completed"))
	}
	keepDir, goneDir := filepath.Join(md.volume, keep), filepath.Join(md.volume, gone)
	kept := filesUnder(t, keepDir)
	target := filepath.Join(keepDir, "config.json")
	if err := os.Symlink(target, filepath.Join(goneDir, "link-to-keep")); err != nil {
		t.Fatal(err)
	}

	md.update(t, func(spec map[string]any) { spec["models"] = []any{map[string]any{"name": keep}} })
	var reclaim map[string]any
	waitFor(t, 3*time.Minute, "the reclaim of "+gone+" to complete", func() (bool, string) {
		xr, err := md.get()
		if err != nil {
			return false, err.Error()
		}
		reclaim = statusReclaim(xr, gone)
		return reclaim["phase"] == "Completed", fmt.Sprintf("status.reclaims entry %v", reclaim)
	})
	t.Logf("status.reclaims[] of %s/%s after a real reclaim: %v", md.ns, md.name, reclaim)
	freed, _ := reclaim["bytesFreed"].(int64)
	if removed, _ := reclaim["files"].(int64); freed < int64(len(files["model.safetensors"])) || removed < 2 {
		t.Errorf("status says %v freed in %v files; want at least the model's %d bytes and its 2 files", reclaim["bytesFreed"], reclaim["files"], len(files["model.safetensors"]))
	}
	if _, err := os.Lstat(goneDir); !os.IsNotExist(err) {
		t.Errorf("%s is still there (%v): %v", goneDir, err, filesUnder(t, goneDir))
	}
	if diff := cmp.Diff(kept, filesUnder(t, keepDir)); diff != "" {
		t.Errorf("the kept model's files changed (-before +after):\n%s", diff)
	}
	if b, err := os.ReadFile(target); err != nil || string(b) != files["config.json"] {
		t.Errorf("the symlink's target %s: %q, %v; want it untouched", target, b, err)
	}
	if left, err := os.ReadDir(filepath.Join(md.volume, ".hf-reclaim")); err != nil || len(left) != 0 {
		t.Errorf("left in .hf-reclaim: %v (%v)", left, err)
	}
	md.waitXR(t, "Ready", func(xr *unstructured.Unstructured) bool { return conditionStatus(xr, "Ready") == "True" })
	// The function also says it in a Normal result, which Crossplane records as an event
	// (TestReclaimRemovesARemovedModel checks the result); it is not checked here, since
	// client-go's spam filter drops an object's events past a burst of 25, which the
	// ModelDownload's "not yet ready" events use up.
}
