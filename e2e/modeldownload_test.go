package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// The scenarios below run the function as a user meets it: example/ applied as a platform
// team would, a ModelDownload from example/xr.yaml, Crossplane calling the function over
// mTLS, the real Job controller, and the tests in the kubelet's place writing pod status.

// modelDownload is one ModelDownload XR of a scenario, alone in its restricted namespace.
type modelDownload struct {
	x    *crossplane
	ns   string
	name string
	obj  *unstructured.Unstructured // what the test applies; edit and apply again to change it
}

// newModelDownload applies example/xr.yaml as applyModelDownload does.
func newModelDownload(t testing.TB, name string, edit func(spec map[string]any)) *modelDownload {
	t.Helper()
	return applyModelDownload(t, exampleXR(t), name, edit)
}

// exampleXR is the ModelDownload of example/xr.yaml.
func exampleXR(t testing.TB) *unstructured.Unstructured {
	t.Helper()
	xrs, err := readObjects(exampleFile("xr.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(xrs) != 1 {
		t.Fatalf("example/xr.yaml: want one ModelDownload, got %d objects", len(xrs))
	}
	return xrs[0]
}

// applyModelDownload creates a restricted namespace holding the PVC that xr (an XR or a
// claim) names and the token Secret of example/required/secret.yaml, then applies xr
// there under the given name, after edit has changed its spec.
func applyModelDownload(t testing.TB, xr *unstructured.Unstructured, name string, edit func(spec map[string]any)) *modelDownload {
	t.Helper()
	ns := tokenNamespace(t, name)
	pvc, _, _ := unstructured.NestedString(xr.Object, "spec", "storagePVC")
	createPVC(t, ns, pvc)
	return applyIn(t, ns, xr, name, edit)
}

// tokenNamespace creates a restricted namespace holding the token Secret of
// example/required/secret.yaml.
func tokenNamespace(t testing.TB, name string) string {
	t.Helper()
	x := useFunction(t)
	ctx := context.Background()
	ns := newNamespace(t, name, restrictedNamespaceLabels)
	secrets, err := readObjects(exampleFile("required/secret.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets {
		if v, ok, _ := unstructured.NestedString(s.Object, "data", "token"); ok {
			b, err := base64.StdEncoding.DecodeString(v)
			if err != nil {
				t.Fatal(err)
			}
			token(string(b))
		}
		s.SetNamespace(ns)
		if err := x.apply.apply(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	return ns
}

// createPVC creates a ReadWriteOnce PVC, as a user would before applying a ModelDownload.
func createPVC(t testing.TB, ns, name string) *corev1.PersistentVolumeClaim {
	t.Helper()
	pvc, err := cluster.kube.CoreV1().PersistentVolumeClaims(ns).Create(context.Background(), &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("50Gi")}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create PVC %s: %v", name, err)
	}
	return pvc
}

// applyIn applies xr (a copy) into namespace ns under the given name, after edit has
// changed its spec.
func applyIn(t testing.TB, ns string, xr *unstructured.Unstructured, name string, edit func(spec map[string]any)) *modelDownload {
	t.Helper()
	xr = xr.DeepCopy()
	xr.SetNamespace(ns)
	xr.SetName(name)
	md := &modelDownload{x: useFunction(t), ns: ns, name: name, obj: xr}
	md.update(t, edit)
	return md
}

// update edits the XR's spec and applies it.
func (md *modelDownload) update(t testing.TB, edit func(spec map[string]any)) {
	t.Helper()
	if edit != nil {
		spec, _, _ := unstructured.NestedMap(md.obj.Object, "spec")
		edit(spec)
		if err := unstructured.SetNestedMap(md.obj.Object, spec, "spec"); err != nil {
			t.Fatal(err)
		}
	}
	if err := md.x.apply.apply(context.Background(), md.obj); err != nil {
		t.Fatal(err)
	}
}

// models returns spec.models of a spec being edited.
func models(spec map[string]any) []any {
	m, _ := spec["models"].([]any)
	return m
}

// setModelField sets one field of the i-th model of a spec being edited.
func setModelField(spec map[string]any, i int, field string, value any) {
	models(spec)[i].(map[string]any)[field] = value
}

// modelName is the name of the i-th model of the example XR.
func (md *modelDownload) modelName(t testing.TB, i int) string {
	t.Helper()
	ms, _, _ := unstructured.NestedSlice(md.obj.Object, "spec", "models")
	if i >= len(ms) {
		t.Fatalf("example/xr.yaml has %d models; the scenario needs %d", len(ms), i+1)
	}
	name, _ := ms[i].(map[string]any)["name"].(string)
	return name
}

// get reads the XR as the apiserver has it now.
func (md *modelDownload) get() (*unstructured.Unstructured, error) {
	return md.x.apply.get(context.Background(), md.obj)
}

// delete deletes the XR as kubectl delete does and waits until it is gone.
func (md *modelDownload) delete(t testing.TB) {
	t.Helper()
	if err := md.x.apply.delete(context.Background(), md.obj); err != nil {
		t.Fatal(err)
	}
	waitGone(t, 2*time.Minute, "the ModelDownload", func(context.Context) error {
		_, err := md.get()
		return err
	})
}

// jobs lists the Jobs Crossplane composed for the XR, by the labels the function sets.
func (md *modelDownload) jobs() ([]batchv1.Job, error) {
	l, err := cluster.kube.BatchV1().Jobs(md.ns).List(context.Background(), metav1.ListOptions{
		LabelSelector: "app=hf-downloader,parent=" + md.name,
	})
	if err != nil {
		return nil, err
	}
	return l.Items, nil
}

// waitJobs waits until the XR's Jobs are exactly n, none being deleted, and returns them
// keyed by model name (the hfops.kamal.dev/model annotation keeps it unsanitized).
func (md *modelDownload) waitJobs(t testing.TB, n int, what string, cond func(map[string]batchv1.Job) bool) map[string]batchv1.Job {
	t.Helper()
	var byModel map[string]batchv1.Job
	// Two minutes: Crossplane deletes a replaced Job in the foreground, and the garbage
	// collector may not know the XR's kind (the Job's owner) until its next discovery
	// refresh, every 30 s.
	waitFor(t, 2*time.Minute, what, func() (bool, string) {
		jobs, err := md.jobs()
		if err != nil {
			return false, err.Error()
		}
		byModel = map[string]batchv1.Job{}
		var state []string
		for _, j := range jobs {
			state = append(state, describeJob(&j))
			if j.DeletionTimestamp == nil {
				byModel[j.Annotations["hfops.kamal.dev/model"]] = j
			}
		}
		if len(jobs) != n || len(byModel) != n {
			return false, fmt.Sprintf("Jobs %v", state)
		}
		return cond == nil || cond(byModel), fmt.Sprintf("Jobs %v", state)
	})
	return byModel
}

// describeJob is a Job's name and the state that decides whether it is going away, for
// failure messages.
func describeJob(j *batchv1.Job) string {
	var conds []string
	for _, c := range j.Status.Conditions {
		conds = append(conds, string(c.Type)+"="+string(c.Status))
	}
	s := fmt.Sprintf("%s{conditions:%v", j.Name, conds)
	if j.Spec.TTLSecondsAfterFinished != nil {
		s += fmt.Sprintf(" ttl:%ds", *j.Spec.TTLSecondsAfterFinished)
	}
	if j.DeletionTimestamp != nil {
		s += fmt.Sprintf(" deleting since %s, finalizers %v", j.DeletionTimestamp.Format(time.TimeOnly), j.Finalizers)
	}
	return s + "}"
}

// waitXR waits until cond holds for the XR.
func (md *modelDownload) waitXR(t testing.TB, what string, cond func(xr *unstructured.Unstructured) bool) *unstructured.Unstructured {
	t.Helper()
	var xr *unstructured.Unstructured
	waitFor(t, time.Minute, fmt.Sprintf("ModelDownload %s/%s: %s", md.ns, md.name, what), func() (bool, string) {
		var err error
		if xr, err = md.get(); err != nil {
			return false, err.Error()
		}
		st, _, _ := unstructured.NestedMap(xr.Object, "status")
		return cond(xr), fmt.Sprintf("status %v", st)
	})
	return xr
}

// statusModel returns the entry of status.models for the named model.
func statusModel(xr *unstructured.Unstructured, name string) map[string]any {
	return statusEntry(xr, "models", name)
}

// statusReclaim returns the entry of status.reclaims for the named model.
func statusReclaim(xr *unstructured.Unstructured, name string) map[string]any {
	return statusEntry(xr, "reclaims", name)
}

// statusEntry returns the entry of the status list named list for the named model.
func statusEntry(xr *unstructured.Unstructured, list, name string) map[string]any {
	l, _, _ := unstructured.NestedSlice(xr.Object, "status", list)
	for _, e := range l {
		if m, ok := e.(map[string]any); ok && m["name"] == name {
			return m
		}
	}
	return nil
}

// statusList returns one of the hf-operator lists: status.pending, completed or failed.
func statusList(xr *unstructured.Unstructured, list string) []string {
	l, _, _ := unstructured.NestedStringSlice(xr.Object, "status", list)
	return l
}

// condition returns the condition of the given type, nil if absent.
func condition(xr *unstructured.Unstructured, typ string) map[string]any {
	for _, c := range conditions(xr) {
		if c["type"] == typ {
			return c
		}
	}
	return nil
}

// hasCondition reports whether the XR has the condition with the given status and reason.
func hasCondition(xr *unstructured.Unstructured, typ, status, reason string) bool {
	c := condition(xr, typ)
	return c != nil && c["status"] == status && c["reason"] == reason
}

// checkJobNames checks every Job is named hf-dl-<xr>-<model>-<hash> within 63 characters,
// with the hash of its spec-hash label whole at the end, as status.models reports it.
func checkJobNames(t testing.TB, md *modelDownload, jobs map[string]batchv1.Job, xr *unstructured.Unstructured) {
	t.Helper()
	for model, j := range jobs {
		hash := j.Labels["hfops.kamal.dev/spec-hash"]
		if hash == "" || !strings.HasPrefix(j.Name, "hf-dl-"+md.name+"-") || !strings.HasSuffix(j.Name, "-"+hash) || len(j.Name) > 63 {
			t.Errorf("model %s: Job name %q (spec-hash %q) is not hf-dl-%s-<model>-<hash> within 63 characters", model, j.Name, hash, md.name)
		}
		sanitized := strings.ToLower(strings.NewReplacer("/", "-", ".", "-", "_", "-").Replace(model))
		if mid := strings.TrimSuffix(strings.TrimPrefix(j.Name, "hf-dl-"+md.name+"-"), "-"+hash); !strings.HasPrefix(sanitized, mid) || mid == "" {
			t.Errorf("model %s: Job name %q does not carry the model (%q is not a prefix of %q)", model, j.Name, mid, sanitized)
		}
		if s := statusModel(xr, model); s == nil || s["jobName"] != j.Name || s["hash"] != hash {
			t.Errorf("model %s: status.models entry %v does not name Job %s with hash %s", model, s, j.Name, hash)
		}
	}
}

// noPodSecurityWarnings checks Crossplane got no Pod Security warning when it created the
// Jobs: it prints every API warning to its log.
func noPodSecurityWarnings(t testing.TB) {
	t.Helper()
	b, err := os.ReadFile(cluster.logPath("crossplane"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "Warning:") && strings.Contains(line, "PodSecurity") {
			t.Errorf("Crossplane's Job creation drew a Pod Security warning: %s", line)
		}
	}
}

const (
	// A termination message as the download script writes it on success.
	summaryCommit  = "0123456789abcdef0123456789abcdef01234567"
	successMessage = `{"commit":"` + summaryCommit + `","files":3,"bytes":2048,"seconds":7}`
)

// TestModelDownloadLifecycle follows one XR from creation to every model on disk: one Job
// per model, status and readiness following the pods, a failed model retried by changing
// its revision, which replaces that model's Job and no other.
func TestModelDownloadLifecycle(t *testing.T) {
	t.Parallel()
	md := newModelDownload(t, "lifecycle", func(spec map[string]any) {
		// No retries: one failed pod fails the Job at once, without the Job controller's
		// 10 s back-off.
		for i := range models(spec) {
			setModelField(spec, i, "retryCount", int64(0))
		}
	})
	first, second := md.modelName(t, 0), md.modelName(t, 1)

	jobs := md.waitJobs(t, 2, "one Job per model", nil)
	xr := md.waitXR(t, "both models pending, downloading", func(xr *unstructured.Unstructured) bool {
		return len(statusList(xr, "pending")) == 2 && hasCondition(xr, "ModelsDownloaded", "False", "Downloading")
	})
	checkJobNames(t, md, jobs, xr)
	if c := condition(xr, "Ready"); c == nil || c["status"] != "False" {
		t.Errorf("Ready condition while downloading = %v, want False", c)
	}
	noPodSecurityWarnings(t)

	finishJobPod(t, md.ns, jobs[first].Name, podOutcome{message: successMessage})
	finishJobPod(t, md.ns, jobs[second].Name, podOutcome{exitCode: 1, message: "401 Client Error: Unauthorized"})
	xr = md.waitXR(t, "one model completed, one failed", func(xr *unstructured.Unstructured) bool {
		return slices.Equal(statusList(xr, "completed"), []string{first}) &&
			slices.Equal(statusList(xr, "failed"), []string{second}) &&
			len(statusList(xr, "pending")) == 0 &&
			hasCondition(xr, "ModelsDownloaded", "False", "DownloadFailed")
	})
	if m := statusModel(xr, first); m["phase"] != "Completed" || m["commit"] != summaryCommit || m["bytes"] != int64(2048) {
		t.Errorf("status of %s = %v, want Completed with the commit and bytes of its pod's termination message", first, m)
	}
	if m := statusModel(xr, second); m["phase"] != "Failed" || m["message"] == "" {
		t.Errorf("status of %s = %v, want Failed with the Job's reason", second, m)
	}
	if c := condition(xr, "Ready"); c == nil || c["status"] != "False" {
		t.Errorf("Ready condition with a failed model = %v, want False", c)
	}

	// A new revision of the failed model: its Job is replaced, the other stays as it is.
	md.update(t, func(spec map[string]any) { setModelField(spec, 1, "revision", "e2e-retry") })
	replaced := md.waitJobs(t, 2, "a new Job for "+second+" only", func(j map[string]batchv1.Job) bool {
		return j[second].Name != jobs[second].Name
	})
	if got := replaced[first]; got.Name != jobs[first].Name || got.UID != jobs[first].UID {
		t.Errorf("Job of unchanged model %s was replaced: %s (%s), was %s (%s)", first, got.Name, got.UID, jobs[first].Name, jobs[first].UID)
	}

	finishJobPod(t, md.ns, replaced[second].Name, podOutcome{message: successMessage})
	md.waitXR(t, "every model downloaded and the XR Ready", func(xr *unstructured.Unstructured) bool {
		return len(statusList(xr, "completed")) == 2 && len(statusList(xr, "failed")) == 0 &&
			hasCondition(xr, "ModelsDownloaded", "True", "Downloaded") &&
			condition(xr, "Ready") != nil && condition(xr, "Ready")["status"] == "True"
	})
}

// TestModelDownloadTokenRotation proves a new token value in the Secret replaces every
// Job (the hash covers the token's digest), so downloads re-run with the new token.
func TestModelDownloadTokenRotation(t *testing.T) {
	t.Parallel()
	md := newModelDownload(t, "rotation", nil)
	before := md.waitJobs(t, 2, "one Job per model", nil)

	ctx := context.Background()
	secret, err := cluster.kube.CoreV1().Secrets(md.ns).Get(ctx, "hf-token", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	secret.Data["token"] = []byte(token("hf_rotated_e2e_token"))
	if _, err := cluster.kube.CoreV1().Secrets(md.ns).Update(ctx, secret, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	md.waitJobs(t, 2, "every Job replaced after the token changed", func(j map[string]batchv1.Job) bool {
		for model, old := range before {
			if j[model].Name == "" || j[model].Name == old.Name {
				return false
			}
		}
		return true
	})
}

// TestModelDownloadMissingSecret proves a missing token Secret shows on the XR, naming
// the Secret, and that no Job starts until the Secret exists.
func TestModelDownloadMissingSecret(t *testing.T) {
	t.Parallel()
	const secret = "hf-token-not-yet"
	md := newModelDownload(t, "no-secret", func(spec map[string]any) {
		if err := unstructured.SetNestedField(spec, secret, "hfTokenRef", "name"); err != nil {
			t.Fatal(err)
		}
	})
	md.waitXR(t, "a condition naming the missing Secret", func(xr *unstructured.Unstructured) bool {
		c := condition(xr, "HFTokenAvailable")
		msg, _ := c["message"].(string)
		return c != nil && c["status"] == "False" && strings.Contains(msg, secret) && strings.Contains(msg, md.ns)
	})
	if jobs, err := md.jobs(); err != nil || len(jobs) != 0 {
		t.Fatalf("Jobs while the token Secret is missing: %d (%v), want none", len(jobs), err)
	}

	ctx := context.Background()
	_, err := cluster.kube.CoreV1().Secrets(md.ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: secret},
		Data:       map[string][]byte{"token": []byte(token("hf_e2e_late_token"))},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	md.waitJobs(t, 2, "one Job per model once the Secret exists", nil)
	md.waitXR(t, "the token available", func(xr *unstructured.Unstructured) bool {
		return hasCondition(xr, "HFTokenAvailable", "True", "SecretFound")
	})
}
