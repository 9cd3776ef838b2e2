package main

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"

	fnv1 "github.com/crossplane/function-sdk-go/proto/v1"

	"github.com/hfops/function-hf-download/internal/read"
	"github.com/hfops/function-hf-download/script"
)

// Named assertions of what a response means, each guarding one behaviour a
// one-line change could break while the render goldens, regenerated
// wholesale, hid it.

// jobProblems lists what makes a desired download Job unsafe or unable to
// work: the restricted profile field by field at pod and container level
// (the Pod Security check accepts either level, so both are checked here),
// the token from a secretKeyRef only, and the PVC mounted where the script
// writes.
func jobProblems(job *batchv1.Job, pvc, mountPath string) []string {
	var out []string
	bad := func(format string, a ...any) { out = append(out, fmt.Sprintf(format, a...)) }
	pod := job.Spec.Template.Spec
	if psc := pod.SecurityContext; psc == nil {
		bad("no pod securityContext")
	} else {
		if psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
			bad("pod securityContext.runAsNonRoot is not true")
		}
		if psc.RunAsUser == nil || *psc.RunAsUser == 0 {
			bad("pod securityContext.runAsUser is root or unset")
		}
		if psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			bad("pod seccompProfile is not RuntimeDefault")
		}
		if psc.FSGroup == nil {
			bad("no fsGroup: the PVC would not be writable")
		}
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		bad("the service account token is mounted")
	}
	if len(pod.Containers) != 1 {
		bad("%d containers, want 1", len(pod.Containers))
		return out
	}
	c := pod.Containers[0]
	if csc := c.SecurityContext; csc == nil {
		bad("no container securityContext")
	} else {
		if csc.RunAsNonRoot == nil || !*csc.RunAsNonRoot {
			bad("container securityContext.runAsNonRoot is not true")
		}
		if csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation {
			bad("allowPrivilegeEscalation is not false")
		}
		if csc.Capabilities == nil || len(csc.Capabilities.Drop) != 1 || csc.Capabilities.Drop[0] != "ALL" || len(csc.Capabilities.Add) > 0 {
			bad("capabilities are not drop [ALL] and add none")
		}
		if csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem {
			bad("the root filesystem is writable")
		}
		if csc.Privileged != nil && *csc.Privileged {
			bad("privileged")
		}
	}
	for _, e := range c.Env {
		if e.Name != script.EnvToken {
			continue
		}
		if e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
			bad("HF_TOKEN is not taken from a secretKeyRef alone")
		}
	}
	mounted := false
	for _, v := range pod.Volumes {
		if v.PersistentVolumeClaim == nil || v.PersistentVolumeClaim.ClaimName != pvc || v.PersistentVolumeClaim.ReadOnly {
			continue
		}
		for _, m := range c.VolumeMounts {
			mounted = mounted || m.Name == v.Name && m.MountPath == mountPath && !m.ReadOnly
		}
	}
	if !mounted {
		bad("the PVC %q is not mounted writable at %s", pvc, mountPath)
	}
	return out
}

func TestEveryJobIsHardenedAndMountsThePVC(t *testing.T) {
	for name, input := range map[string]string{"DefaultInput": "", "FullInput": fullInput} {
		t.Run(name, func(t *testing.T) {
			mountPath := read.DefaultMountPath
			if input != "" {
				mountPath = "/data/models"
			}
			r := withToken(xrYAML(twoModels))
			r.input = input
			rsp := run(t, r.build())
			if len(jobResources(rsp)) != 2 {
				t.Fatalf("want 2 Jobs, got %d", len(jobResources(rsp)))
			}
			for key, res := range jobResources(rsp) {
				for _, p := range jobProblems(asJob(t, res.GetResource()), "models", mountPath) {
					t.Errorf("%s: %s", key, p)
				}
			}
		})
	}
}

// TestJobProblemsFindsThem: the check above fails for each field it guards.
func TestJobProblemsFindsThem(t *testing.T) {
	rsp := run(t, withToken(xrYAML(twoModels)).build())
	base := jobResources(rsp)[keyOf(t, rsp, "org/alpha")].GetResource()
	for name, breakIt := range map[string]func(j *batchv1.Job){
		"PodRunAsNonRoot":       func(j *batchv1.Job) { j.Spec.Template.Spec.SecurityContext.RunAsNonRoot = nil },
		"ContainerRunAsNonRoot": func(j *batchv1.Job) { j.Spec.Template.Spec.Containers[0].SecurityContext.RunAsNonRoot = nil },
		"Escalation": func(j *batchv1.Job) {
			j.Spec.Template.Spec.Containers[0].SecurityContext.AllowPrivilegeEscalation = nil
		},
		"Capabilities": func(j *batchv1.Job) { j.Spec.Template.Spec.Containers[0].SecurityContext.Capabilities = nil },
		"Seccomp":      func(j *batchv1.Job) { j.Spec.Template.Spec.SecurityContext.SeccompProfile = nil },
		"TokenAsValue": func(j *batchv1.Job) {
			for i := range j.Spec.Template.Spec.Containers[0].Env {
				if e := &j.Spec.Template.Spec.Containers[0].Env[i]; e.Name == script.EnvToken {
					e.ValueFrom, e.Value = nil, "hf_x"
				}
			}
		},
		"NoPVC": func(j *batchv1.Job) { j.Spec.Template.Spec.Volumes[0].PersistentVolumeClaim.ClaimName = "other" },
	} {
		t.Run(name, func(t *testing.T) {
			j := asJob(t, base)
			breakIt(j)
			if len(jobProblems(j, "models", read.DefaultMountPath)) == 0 {
				t.Error("the broken Job passed")
			}
		})
	}
}

// contentHashEnv is HFDL_CONTENT_HASH of a model's desired Job.
func contentHashEnv(t *testing.T, rsp *fnv1.RunFunctionResponse, model string) string {
	t.Helper()
	j := asJob(t, jobResources(rsp)[keyOf(t, rsp, model)].GetResource())
	for _, e := range j.Spec.Template.Spec.Containers[0].Env {
		if e.Name == script.EnvContentHash {
			return e.Value
		}
	}
	t.Fatalf("%s: no %s", model, script.EnvContentHash)
	return ""
}

// TestContentHashIsWhatLandsOnDisk: the hash the script compares with its
// marker covers the repo, its type, the revision and the glob set, and
// nothing else: a rotated token, more CPU or memory, or another Input re-run
// the Job, which must then exit at the marker rather than download again.
func TestContentHashIsWhatLandsOnDisk(t *testing.T) {
	const model = "storagePVC: models\nhfTokenRef: {name: hf}\nmodels:\n- name: org/alpha\n  include: ['*.json', '*.bin']\n"
	hashOf := func(spec, token, input string) (string, string) {
		r := withToken(xrYAML(spec))
		r.secret = secretResource("token", token)
		r.input = input
		rsp := run(t, r.build())
		return contentHashEnv(t, rsp, "org/alpha"), statusEntry(t, rsp, "org/alpha")["contentHash"]
	}
	base, recorded := hashOf(model, testToken, "")
	if base != recorded || len(base) != 16 {
		t.Fatalf("the Job's %s %q must be the contentHash status records (%q)", script.EnvContentHash, base, recorded)
	}
	same := map[string][3]string{
		"token":           {model, testToken + "-rotated", ""},
		"cpu":             {model + "settings: {cpu: '3'}\n", testToken, ""},
		"memory":          {model + "settings: {memory: 9Gi}\n", testToken, ""},
		"forceReload":     {model + "settings: {forceReload: true}\n", testToken, ""},
		"retryCount":      {strings.Replace(model, "- name: org/alpha\n", "- name: org/alpha\n  retryCount: 7\n", 1), testToken, ""},
		"sha":             {strings.Replace(model, "- name: org/alpha\n", "- name: org/alpha\n  sha: abc\n", 1), testToken, ""},
		"globOrder":       {strings.Replace(model, "['*.json', '*.bin']", "['*.bin', '*.json', '*.bin']", 1), testToken, ""},
		"input":           {model, testToken, fullInput},
		"nodePool":        {model + "nodePool: gpu\n", testToken, ""},
		"keepAliveSecond": {model + "settings: {keepAliveSeconds: 99}\n", testToken, ""},
	}
	for name, c := range same {
		if got, _ := hashOf(c[0], c[1], c[2]); got != base {
			t.Errorf("%s changed the content hash (%s -> %s): the Job would download again what is on disk", name, base, got)
		}
	}
	differ := map[string]string{
		"repo":     strings.Replace(model, "org/alpha", "org/alpha2", 1),
		"revision": strings.Replace(model, "- name: org/alpha\n", "- name: org/alpha\n  revision: v2\n", 1),
		"repoType": strings.Replace(model, "- name: org/alpha\n", "- name: org/alpha\n  repoType: dataset\n", 1),
		"include":  strings.Replace(model, "'*.bin']", "'*.txt']", 1),
		"exclude":  model + "  exclude: ['*.h5']\n",
	}
	for name, spec := range differ {
		m := "org/alpha"
		if name == "repo" {
			m = "org/alpha2"
		}
		r := withToken(xrYAML(spec))
		if got := contentHashEnv(t, run(t, r.build()), m); got == base {
			t.Errorf("%s did not change the content hash: the Job would stop at a marker of other content", name)
		}
	}
}

func TestSummaryOnlyFromAPodThatSucceeded(t *testing.T) {
	s := newXRSim(t, newAPIServer(), xrYAML(oneModel))
	s.reconcile()
	// A pod that exited 1 after writing a summary-shaped line, then the Job
	// completed through another pod with no summary (killed by its log
	// rotation, say): no commit may come from the failed one.
	s.finish("org/alpha", false, `{"commit":"dead","files":1,"bytes":1,"seconds":1}`)
	s.jobOf("org/alpha").Fields["status"] = structpb.NewStructValue(mustStruct(jobComplete))
	s.reconcile()
	if e := s.entry("org/alpha"); e["phase"] != read.PhaseCompleted || e["commit"] != "" {
		t.Fatalf("a summary from a pod that exited non-zero was taken: %v", e)
	}
}

func TestSuspendedJobIsPending(t *testing.T) {
	s := newXRSim(t, newAPIServer(), xrYAML(oneModel))
	s.reconcile()
	s.jobOf("org/alpha").Fields["status"] = structpb.NewStructValue(mustStruct("conditions: [{type: Suspended, status: 'True'}]\nactive: 0\n"))
	s.reconcile()
	if e := s.entry("org/alpha"); e["phase"] != read.PhasePending || e["message"] != "the Job is suspended" || s.xrReady() {
		t.Fatalf("a suspended Job: want Pending, saying so, got %v", e)
	}
}

func TestOnlyOneCurrentJobKeptWhileTokenUnreadable(t *testing.T) {
	// Two Jobs of the current spec, made under two tokens (rotated between
	// calls), observed while the Secret is gone: only the recorded one is
	// kept, the other goes (two writers, one directory).
	api := newAPIServer()
	s := newXRSim(t, api, xrYAML(oneModel))
	s.reconcile()
	first := s.entry("org/alpha")["jobName"]
	s.start("org/alpha")
	s.reconcile()
	s.secret = secretResource("token", testToken+"-rotated")
	// Crossplane has not deleted the first Job yet when the Secret goes.
	keepFirst := map[string]*fnv1.Resource{}
	for k, v := range s.observed {
		keepFirst[k] = v
	}
	firstJob := proto.Clone(s.api.jobs[first]).(*structpb.Struct)
	s.reconcile()
	second := s.entry("org/alpha")["jobName"]
	if second == first {
		t.Fatal("a rotated token makes a new Job")
	}
	for k, v := range keepFirst {
		s.observed[k] = v
	}
	s.api.jobs[first] = firstJob
	s.refresh()
	if len(s.observed) != 7 {
		t.Fatalf("want both Jobs (and the script's ConfigMap and the four progress objects) observed, got %d", len(s.observed))
	}
	s.secret = nil
	s.reconcile()
	if got := s.desiredJobs(); len(got) != 1 || got[0] != second {
		t.Fatalf("want only the recorded current Job %s kept, got %v", second, got)
	}
}

func TestRecordedFinishedObjectIsNotDesired(t *testing.T) {
	for _, outcome := range []bool{true, false} {
		t.Run(fmt.Sprint("succeeded=", outcome), func(t *testing.T) {
			s := newXRSim(t, newAPIServer(), claimXR(oneModel))
			s.reconcile()
			s.finish("org/alpha", outcome, `{"commit":"aaaa","files":1,"bytes":1,"seconds":1}`)
			s.reconcile()
			if got := s.desiredJobs(); len(got) != 1 {
				t.Fatalf("the call that sees the outcome keeps the Object, observing only: %v", got)
			}
			for _, r := range jobResources(s.last) {
				if !observesOnly(r.GetResource()) || !orphans(r.GetResource()) {
					t.Fatalf("a finished Job's Object must only observe it and never delete it: %v", read.Get(r.GetResource(), "spec"))
				}
			}
			s.reconcile()
			if got := s.desiredJobs(); len(got) != 0 {
				t.Fatalf("once the outcome is recorded the Object goes: %v", got)
			}
			if _, ok := s.api.jobs[s.entry("org/alpha")["jobName"]]; !ok {
				t.Fatal("the Object went, and took the Job (and its pods' logs) with it before its TTL")
			}
		})
	}
}
