package e2e

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/hfops/function-hf-download/hubtest"
)

// TestWatchesReactWithinSeconds: on Crossplane v2.4, which watches the resources a function
// required and reconciles the XR when one changes, the function's TTLs are only a fallback.
// With them an hour long: a ModelDownload waiting for its PVC gets its first Job once the
// PVC is made; a model queued behind another ModelDownload's Job (one active Job per
// namespace) starts once that Job completes. Each is waited for as long as any Job is (two
// minutes, far under the hour): what the test asserts is that they came at all. The reaction
// times are logged; the README gives them ("Crossplane v2.4: watches, and upgrading the function").
func TestWatchesReactWithinSeconds(t *testing.T) {
	t.Parallel()
	n := useNode(t)
	x := useFunction(t)
	// A function package of this run's own running this build with its TTLs an hour long:
	// anything it reacts to sooner, Crossplane told it about by watching what it required.
	pkg := "function-hf-download-watch-" + randomHex(t, 3)
	if _, err := serveFunctionRevision(cluster, x, filepath.Join(cluster.dir, "function"), pkg, 1,
		"--ttl-waiting=1h", "--ttl-downloading=1h"); err != nil {
		t.Fatal(err)
	}
	composition := "modeldownloads-" + pkg
	if err := applyNodeComposition(x, n, composition, pkg, func(input map[string]any) {
		input["maxActiveJobsPerNamespace"] = int64(1)
	}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	files := map[string]string{"config.json": `{"model_type":"llama"}`}

	// The PVC comes after the ModelDownload.
	ns := tokenNamespace(t, "watch")
	token := exampleToken(t, ns)
	waiting := newRepo(t, "acme/watch-pvc")
	n.hub.Set("model", waiting, hubtest.Repo{Commit: newCommit(t), Files: files, Token: token})
	xr := exampleXR(t)
	pvc, _, _ := unstructured.NestedString(xr.Object, "spec", "storagePVC")
	md := applyIn(t, ns, xr, "watch-pvc", watchSpec(composition, waiting))
	md.waitXR(t, "StorageReady False", func(xr *unstructured.Unstructured) bool { return conditionStatus(xr, "StorageReady") == "False" })
	realVolume(t, n, ns, pvc)
	claim, err := cluster.kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, pvc, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	first := md.waitJobs(t, 1, "the first Job, once the PVC exists", nil)[waiting]
	pvcReaction := first.CreationTimestamp.Sub(claim.CreationTimestamp.Time)
	t.Logf("the PVC made at %s, the first Job at %s: %s later", claim.CreationTimestamp.Format(time.TimeOnly),
		first.CreationTimestamp.Format(time.TimeOnly), pvcReaction)
	md.waitModel(t, waiting, 3*time.Minute, "Completed", phaseIs("Completed"))

	// A slot freed in another ModelDownload of the namespace.
	gate := hubtest.NewGate()
	t.Cleanup(gate.Open)
	holding, queued := newRepo(t, "acme/watch-holding"), newRepo(t, "acme/watch-queued")
	n.hub.Set("model", holding, hubtest.Repo{Commit: newCommit(t), Files: files, Token: token, Gate: gate})
	n.hub.Set("model", queued, hubtest.Repo{Commit: newCommit(t), Files: files, Token: token})
	holder := applyIn(t, ns, exampleXR(t), "watch-holding", watchSpec(composition, holding))
	holder.waitModel(t, holding, 3*time.Minute, "Running", phaseIs("Running"))
	waiter := applyIn(t, ns, exampleXR(t), "watch-queued", watchSpec(composition, queued))
	waiter.waitModel(t, queued, 3*time.Minute, "queued", func(m map[string]any) bool { return m["queue"] == "Namespace" })
	gate.Open()
	done := holder.waitJobs(t, 1, "the holding Job complete", func(jobs map[string]batchv1.Job) bool {
		return completedAt(jobs[holding]) != nil
	})[holding]
	started := waiter.waitJobs(t, 1, "the queued model's Job", nil)[queued]
	slotReaction := started.CreationTimestamp.Sub(completedAt(done).Time)
	t.Logf("the holding Job complete at %s, the queued model's Job made at %s: %s later", completedAt(done).Format(time.TimeOnly),
		started.CreationTimestamp.Format(time.TimeOnly), slotReaction)
	waiter.waitModel(t, queued, 3*time.Minute, "Completed", phaseIs("Completed"))
}

// watchSpec edits a ModelDownload's spec to download repo alone through composition.
func watchSpec(composition, repo string) func(spec map[string]any) {
	return func(spec map[string]any) {
		spec["crossplane"] = map[string]any{"compositionRef": map[string]any{"name": composition}}
		spec["models"] = []any{map[string]any{"name": repo, "include": []any{"*.json"}}}
		if settings, ok := spec["settings"].(map[string]any); ok {
			delete(settings, "cpu")
			delete(settings, "memory")
		}
	}
}

// completedAt is when the Job's Complete condition turned True, nil until it has.
func completedAt(j batchv1.Job) *metav1.Time {
	for _, c := range j.Status.Conditions {
		if c.Type == batchv1.JobComplete && c.Status == corev1.ConditionTrue {
			return &c.LastTransitionTime
		}
	}
	return nil
}
