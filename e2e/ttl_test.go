package e2e

import (
	"slices"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TestModelDownloadTTLDeletionKeepsCompleted proves a Job removed by its TTL after success
// is not created again: the XR's status remembers the model is on disk.
func TestModelDownloadTTLDeletionKeepsCompleted(t *testing.T) {
	t.Parallel()
	md := newModelDownload(t, "ttl", func(spec map[string]any) {
		spec["models"] = models(spec)[:1]
		// Long enough for Crossplane to see the Job complete before it goes.
		if err := unstructured.SetNestedField(spec, int64(5), "settings", "keepAliveSeconds"); err != nil {
			t.Fatal(err)
		}
	})
	model := md.modelName(t, 0)
	jobs := md.waitJobs(t, 1, "one Job", nil)
	finishJobPod(t, md.ns, jobs[model].Name, podOutcome{message: successMessage})
	md.waitXR(t, "the model completed", func(xr *unstructured.Unstructured) bool {
		return slices.Equal(statusList(xr, "completed"), []string{model})
	})
	md.waitJobs(t, 0, "the ttl-after-finished controller to delete the Job", nil)

	// Deleting the Job makes Crossplane reconcile the XR at once (it watches composed
	// resources); a Job created again would show within this window.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		jobs, err := md.jobs()
		if err != nil {
			t.Fatal(err)
		}
		if len(jobs) != 0 {
			t.Fatalf("Job %s came back after its TTL deleted it", jobs[0].Name)
		}
		time.Sleep(250 * time.Millisecond)
	}
	xr, err := md.get()
	if err != nil {
		t.Fatal(err)
	}
	if m := statusModel(xr, model); m["phase"] != "Completed" || m["commit"] != summaryCommit {
		t.Errorf("status of %s after its Job was deleted = %v, want still Completed with its commit", model, m)
	}
}
