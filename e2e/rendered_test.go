package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

// hashPlaceholders are the goldens' stand-ins for the hashes that follow from the script
// ("<hash of org/name>", 10 hex digits; "<config-hash of org/name>", 16).
var hashPlaceholders = regexp.MustCompile(`<(hash|config-hash) of ([^>]+)>`)

// realHashes puts a hash of the right shape back for each placeholder, the same for the
// same model of the same golden (salt), so names and labels are valid again and the
// goldens' Jobs do not share names.
func realHashes(v any, salt string) any {
	switch x := v.(type) {
	case string:
		return hashPlaceholders.ReplaceAllStringFunc(x, func(p string) string {
			m := hashPlaceholders.FindStringSubmatch(p)
			d := sha256.Sum256([]byte(salt + " " + m[1] + " " + m[2]))
			if m[1] == "hash" {
				return hex.EncodeToString(d[:5])
			}
			return hex.EncodeToString(d[:8])
		})
	case []any:
		for i := range x {
			x[i] = realHashes(x[i], salt)
		}
	case map[string]any:
		for k, e := range x {
			delete(x, k)
			x[realHashes(k, salt).(string)] = realHashes(e, salt)
		}
	}
	return v
}

// renderedJobs returns every Job in the golden `crossplane render` outputs of the
// repository's examples, bare or inside a provider-kubernetes Object, decoded strictly: a
// field batch/v1 does not know fails the test. (The script they run is in a ConfigMap, not
// in the Jobs.)
func renderedJobs(t testing.TB) map[string]*batchv1.Job {
	t.Helper()
	goldens, err := filepath.Glob(filepath.Join(cluster.repoRoot, "testdata", "render", "*.yaml"))
	if err != nil || len(goldens) == 0 {
		t.Fatalf("no render goldens (%v)", err)
	}
	jobs := map[string]*batchv1.Job{}
	for _, g := range goldens {
		objs, err := readObjects(g)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			u := realHashes(o.Object, filepath.Base(g)).(map[string]any)
			if u["kind"] == "Object" {
				m, ok, _ := unstructured.NestedMap(u, "spec", "forProvider", "manifest")
				if !ok {
					continue
				}
				u = m
			}
			if u["kind"] != "Job" {
				continue
			}
			job := &batchv1.Job{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u, job, true); err != nil {
				t.Fatalf("%s: Job %v is not a valid batch/v1 Job: %v", filepath.Base(g), u["metadata"], err)
			}
			// The XR render names does not exist here; an owner that is not found would
			// have the garbage collector delete the Job under the test.
			job.OwnerReferences = nil
			job.Namespace = ""
			jobs[job.Name] = job
		}
	}
	return jobs
}

// TestRenderedJobsAccepted creates every Job `crossplane render` produces for the examples
// (Job mode and Object mode) in a namespace that enforces and warns on the restricted Pod
// Security profile: the apiserver accepts each with no warning at all, and the Job
// controller's pod passes enforce.
func TestRenderedJobsAccepted(t *testing.T) {
	useCluster(t)
	ctx := context.Background()
	ns := modelNamespace(t)
	kube, warnings := adminWithWarnings(t)

	jobs := renderedJobs(t)
	if len(jobs) < 4 {
		t.Fatalf("want the Jobs of both modes from the goldens, found %d", len(jobs))
	}
	// The pods' ServiceAccounts, which the function composes beside the Jobs (the Service
	// Account admission plugin refuses a pod whose account does not exist).
	accounts := map[string]bool{}
	for _, job := range jobs {
		accounts[job.Spec.Template.Spec.ServiceAccountName] = true
	}
	for sa := range accounts {
		if _, err := kube.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("create ServiceAccount %s: %v", sa, err)
		}
	}
	for name, job := range jobs {
		if _, err := kube.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{}); err != nil {
			t.Errorf("create rendered Job %s: %v", name, err)
			continue
		}
		if w := warnings.take(); len(w) != 0 {
			t.Errorf("rendered Job %s drew warnings: %q", name, w)
		}
	}
	for name := range jobs {
		waitFor(t, time.Minute, "a pod of rendered Job "+name, func() (bool, string) {
			pods, err := jobPods(ctx, ns, name)
			if err != nil {
				return false, err.Error()
			}
			if events, err := failedCreates(ctx, ns, name); err == nil && len(events) > 0 {
				t.Fatalf("the Job controller could not create a pod for %s: %s", name, events[0].Message)
			}
			return len(pods) == 1, fmt.Sprintf("%d pods", len(pods))
		})
	}
}
