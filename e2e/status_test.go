package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// What status promises, against the real control plane: a failed model stays Failed after
// the real TTL controller removed its Job, until the documented retry annotation; a
// missing PVC starts nothing and says so; two ModelDownloads whose names read alike once
// shortened get Jobs of their own.

// keepAlive is the Job TTL these tests set: the function raises it to its floor of 30 s.
const keepAlive = int64(5)

// oneModel keeps the example's first model, with no retries (one failed pod fails the
// Job at once) and a short TTL.
func oneModel(t testing.TB) func(spec map[string]any) {
	return func(spec map[string]any) {
		spec["models"] = models(spec)[:1]
		setModelField(spec, 0, "retryCount", int64(0))
		if err := unstructured.SetNestedField(spec, keepAlive, "settings", "keepAliveSeconds"); err != nil {
			t.Fatal(err)
		}
	}
}

// noJobFor checks that no Job of the XR exists for a while: Crossplane reconciles at once
// when a composed Job goes, so one made again would show within the window.
func noJobFor(t testing.TB, md *modelDownload, window time.Duration, why string) {
	t.Helper()
	deadline := time.Now().Add(window)
	for time.Now().Before(deadline) {
		jobs, err := md.jobs()
		if err != nil {
			t.Fatal(err)
		}
		if len(jobs) != 0 {
			t.Fatalf("%s: Job %s exists", why, jobs[0].Name)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func TestFailedModelStaysFailedAfterTTLUntilRetried(t *testing.T) {
	t.Parallel()
	md := newModelDownload(t, "failed-ttl", oneModel(t))
	model := md.modelName(t, 0)
	jobs := md.waitJobs(t, 1, "one Job", nil)
	failed := jobs[model].Name

	const reason = "download of " + "org/private@main failed: access denied (gated or private repo; check the token)"
	finishJobPod(t, md.ns, failed, podOutcome{exitCode: 1, message: "\x1b[31mError: Access denied.\x1b[0m\nHint: set HF_DEBUG=1\n" + reason + "\n"})
	md.waitXR(t, "the model failed with its pod's reason", func(xr *unstructured.Unstructured) bool {
		m := statusModel(xr, model)
		msg, _ := m["message"].(string)
		return m["phase"] == "Failed" && strings.HasPrefix(msg, reason)
	})
	// The real ttl-after-finished controller removes the failed Job.
	waitGone(t, 2*time.Minute, "the failed Job, by its TTL", func(ctx context.Context) error {
		_, err := cluster.kube.BatchV1().Jobs(md.ns).Get(ctx, failed, metav1.GetOptions{})
		return err
	})
	noJobFor(t, md, 10*time.Second, "a failed model's Job came back after its TTL")
	xr, err := md.get()
	if err != nil {
		t.Fatal(err)
	}
	if m := statusModel(xr, model); m["phase"] != "Failed" || !strings.HasPrefix(m["message"].(string), reason) {
		t.Fatalf("after the TTL: status of %s = %v, want still Failed with its reason", model, m)
	}

	// kubectl annotate modeldownload failed-ttl hfops.kamal.dev/retry=<new value>
	md.obj.SetAnnotations(map[string]string{"hfops.kamal.dev/retry": "1"})
	md.update(t, nil)
	retried := md.waitJobs(t, 1, "a new Job after the retry annotation", func(j map[string]batchv1.Job) bool {
		return j[model].Name != "" && j[model].Name != failed
	})
	finishJobPod(t, md.ns, retried[model].Name, podOutcome{message: successMessage})
	md.waitXR(t, "the retried model completed and the XR Ready", func(xr *unstructured.Unstructured) bool {
		m := statusModel(xr, model)
		return m["phase"] == "Completed" && m["attempt"] == int64(2) && condition(xr, "Ready")["status"] == "True"
	})
}

func TestMissingPVCStartsNothingUntilItExists(t *testing.T) {
	t.Parallel()
	ns := tokenNamespace(t, "no-pvc")
	md := applyIn(t, ns, exampleXR(t), "no-pvc", nil)
	pvc, _, _ := unstructured.NestedString(md.obj.Object, "spec", "storagePVC")
	md.waitXR(t, "StorageReady=False naming the PVC and its namespace", func(xr *unstructured.Unstructured) bool {
		c := condition(xr, "StorageReady")
		msg, _ := c["message"].(string)
		return c != nil && c["status"] == "False" && c["reason"] == "PVCNotFound" && strings.Contains(msg, pvc) && strings.Contains(msg, ns)
	})
	noJobFor(t, md, 5*time.Second, "a Job started without its PVC")

	created := createPVC(t, ns, pvc)
	md.waitJobs(t, 2, "one Job per model once the PVC exists", nil)
	md.waitXR(t, "StorageReady=True and the PVC's uid recorded", func(xr *unstructured.Unstructured) bool {
		m := statusModel(xr, md.modelName(t, 0))
		uid, _, _ := unstructured.NestedString(xr.Object, "status", "pvcUID")
		return hasCondition(xr, "StorageReady", "True", "PVCFound") && m["phase"] != nil && uid == string(created.UID)
	})
}

func TestLookAlikeNamesGetJobsOfTheirOwn(t *testing.T) {
	t.Parallel()
	ns := tokenNamespace(t, "look-alike")
	xr := exampleXR(t)
	pvc, _, _ := unstructured.NestedString(xr.Object, "spec", "storagePVC")
	createPVC(t, ns, pvc)
	// Cut to the same 20 characters in a Job name, and the same once sanitized.
	var mds []*modelDownload
	for _, name := range []string{"inference-model-cache-team-a", "inference-model-cache-team-b", "llama.cache", "llama-cache"} {
		mds = append(mds, applyIn(t, ns, xr, name, oneModel(t)))
	}
	model := mds[0].modelName(t, 0)
	// The same content on the same volume: one Job at a time, in whichever order the
	// ModelDownloads are admitted, each once the one before it completed (seen at the next
	// reconcile). The test finishes whichever Job exists; the deadline only ends a hang.
	names := map[string]string{}
	finished := map[*modelDownload]bool{}
	for len(finished) < len(mds) {
		var md *modelDownload
		var job batchv1.Job
		waitFor(t, 5*time.Minute, "the Job of a ModelDownload not finished yet", func() (bool, string) {
			var states []string
			for _, m := range mds {
				if finished[m] {
					continue
				}
				xr, err := m.get()
				if err != nil {
					states = append(states, m.name+": "+err.Error())
					continue
				}
				name, _ := statusModel(xr, model)["jobName"].(string)
				if name == "" {
					states = append(states, m.name+": no jobName yet")
					continue
				}
				j, err := cluster.kube.BatchV1().Jobs(ns).Get(context.Background(), name, metav1.GetOptions{})
				if err != nil {
					states = append(states, m.name+": "+err.Error())
					continue
				}
				md, job = m, *j
				return true, ""
			}
			return false, strings.Join(states, "; ")
		})
		if other, dup := names[job.Name]; dup {
			t.Fatalf("%s and %s share the Job %s", other, md.name, job.Name)
		}
		names[job.Name] = md.name
		finished[md] = true
		finishJobPod(t, ns, job.Name, podOutcome{message: successMessage})
	}
	for _, md := range mds {
		md.waitXR(t, "its model Completed", func(xr *unstructured.Unstructured) bool {
			return statusModel(xr, model)["phase"] == "Completed" && condition(xr, "Ready")["status"] == "True"
		})
	}
}
