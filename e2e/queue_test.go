package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/watch"
)

// activeJobWatch follows every event of the Jobs in a namespace and keeps the
// largest number that were active (neither finished nor being deleted) at once.
type activeJobWatch struct {
	mu      sync.Mutex
	active  map[string]bool
	maximum int
	// restarts counts the watches the apiserver ended or refused (each followed
	// by a new list, so no state is missed, only a change undone between two
	// lists).
	restarts int
}

// watchActiveJobs starts following the Jobs of ns from a first list, taken
// before it returns: every change after that list is seen, by the watch that
// starts at its version or, when the apiserver ends or refuses a watch (a
// watch cache that has not caught up refuses a version "too large"), by a new
// list and watch.
func watchActiveJobs(t testing.TB, ns string) *activeJobWatch {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	aw := &activeJobWatch{active: map[string]bool{}}
	jobs := cluster.kube.BatchV1().Jobs(ns)
	list := func() string {
		l, err := jobs.List(ctx, metav1.ListOptions{})
		if err != nil {
			return ""
		}
		for i := range l.Items {
			aw.see(&l.Items[i], false)
		}
		return l.ResourceVersion
	}
	rv := list()
	if rv == "" {
		t.Fatalf("list the Jobs of %s", ns)
	}
	go func() {
		for ctx.Err() == nil {
			if w, err := jobs.Watch(ctx, metav1.ListOptions{ResourceVersion: rv}); err == nil {
				for ev := range w.ResultChan() {
					j, ok := ev.Object.(*batchv1.Job)
					if !ok {
						break
					}
					aw.see(j, ev.Type == watch.Deleted)
				}
				w.Stop()
			}
			if ctx.Err() != nil {
				return
			}
			aw.mu.Lock()
			aw.restarts++
			aw.mu.Unlock()
			time.Sleep(100 * time.Millisecond)
			rv = list()
		}
	}()
	return aw
}

func (aw *activeJobWatch) see(j *batchv1.Job, deleted bool) {
	aw.mu.Lock()
	defer aw.mu.Unlock()
	if deleted || j.DeletionTimestamp != nil ||
		jobCondition(j, batchv1.JobComplete) == corev1.ConditionTrue || jobCondition(j, batchv1.JobFailed) == corev1.ConditionTrue {
		delete(aw.active, j.Name)
	} else {
		aw.active[j.Name] = true
	}
	aw.maximum = max(aw.maximum, len(aw.active))
}

func (aw *activeJobWatch) max() int {
	aw.mu.Lock()
	defer aw.mu.Unlock()
	return aw.maximum
}

// TestMaxParallelOnTheControlPlane: five models with settings.maxParallel 2.
// Every Job event in the namespace is watched from before the ModelDownload
// exists: never more than two Jobs are active, the others wait queued and
// start one by one as the test completes pods, and all five complete.
func TestMaxParallelOnTheControlPlane(t *testing.T) {
	t.Parallel()
	ns := tokenNamespace(t, "queue")
	createPVC(t, ns, "models-pvc")
	aw := watchActiveJobs(t, ns)
	var models []any
	for i := range 5 {
		models = append(models, map[string]any{"name": fmt.Sprintf("acme/queued-%d", i)})
	}
	md := applyIn(t, ns, exampleXR(t), "queue", func(spec map[string]any) {
		spec["models"] = models
		spec["settings"].(map[string]any)["maxParallel"] = int64(2)
	})

	for done := range 5 {
		want := min(2, 5-done)
		jobs := md.waitJobs(t, done+want, fmt.Sprintf("%d Jobs, %d of them active", done+want, want), nil)
		// The API server keeps the limit each queued model names (the XRD's schema has it).
		xr := md.waitXR(t, "the rest queued by the ModelDownload's limit", func(xr *unstructured.Unstructured) bool {
			queued := 0
			models, _, _ := unstructured.NestedSlice(xr.Object, "status", "models")
			for _, m := range models {
				if q, _ := m.(map[string]any)["queue"].(string); q == "ModelDownload" {
					queued++
				}
			}
			return len(statusList(xr, "completed")) == done && len(statusList(xr, "pending")) == 5-done && queued == 5-done-want
		})
		if c := condition(xr, "Ready"); c == nil || c["status"] != "False" {
			t.Fatalf("Ready with models still to download: %v", c)
		}
		// The first model in spec order that is not finished yet.
		next := fmt.Sprintf("acme/queued-%d", done)
		finishJobPod(t, ns, jobs[next].Name, podOutcome{message: successMessage})
		md.waitModel(t, next, time.Minute, "Completed", phaseIs("Completed"))
	}
	md.waitXR(t, "every model downloaded and the XR Ready", func(xr *unstructured.Unstructured) bool {
		return len(statusList(xr, "completed")) == 5 && conditionStatus(xr, "Ready") == "True"
	})
	got := aw.max()
	aw.mu.Lock()
	t.Logf("most Jobs active at once: %d (maxParallel 2); the apiserver ended the watch %d times", got, aw.restarts)
	aw.mu.Unlock()
	if got != 2 {
		t.Errorf("at most %d Jobs were active at once, want exactly 2 (the limit, reached)", got)
	}
}
