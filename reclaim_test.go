package main

import (
	"slices"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/structpb"

	fnv1 "github.com/crossplane/function-sdk-go/proto/v1"

	"github.com/hfops/function-hf-download/internal/naming"
	"github.com/hfops/function-hf-download/internal/read"
)

// Reclaim, as Crossplane drives it: a model removed from the spec under
// settings.reclaim Delete gets a reclaim Job, which runs, completes and is
// let go; status.reclaims[] remembers what it freed.

const reclaimingModels = twoModels + "settings:\n  reclaim: Delete\n"

// removeBeta is the edit that takes org/beta out of twoModels.
const removeBeta = `,{"name":"org/beta","revision":"v2"}`

const betaSummary = `{"commit":"bbbb","files":2,"bytes":8000,"seconds":3}`

// betaReclaim is org/beta's status.reclaims[] entry as the last call wrote
// it, its values as strings; nil when there is none.
func (s *xrSim) betaReclaim() map[string]string {
	const model = "org/beta"
	for _, v := range read.Get(s.last.GetDesired().GetComposite().GetResource(), "status", "reclaims").GetListValue().GetValues() {
		e := v.GetStructValue()
		if read.GetString(e, "name") != model {
			continue
		}
		out := map[string]string{}
		for k, f := range e.GetFields() {
			if n, ok := f.GetKind().(*structpb.Value_NumberValue); ok {
				out[k] = strconv.FormatInt(int64(n.NumberValue), 10)
			} else {
				out[k] = f.GetStringValue()
			}
		}
		return out
	}
	return nil
}

// betaReclaimJob is the reclaim Job org/beta's status entry names.
func (s *xrSim) betaReclaimJob() *structpb.Struct {
	s.t.Helper()
	e := s.betaReclaim()
	j, ok := s.api.jobs[e["jobName"]]
	if !ok {
		s.t.Fatalf("no reclaim Job %q for org/beta in the apiserver (entry %v)", e["jobName"], e)
	}
	return j
}

// reclaimJobs are the names of the reclaim Jobs the last call desired.
func (s *xrSim) reclaimJobs() []string { return s.desiredJobsNamed("-reclaim-") }

// desiredJobsNamed are the names of the Jobs the last call desired that
// hold part.
func (s *xrSim) desiredJobsNamed(part string) []string {
	var out []string
	for _, j := range s.desiredJobs() {
		if strings.Contains(j, part) {
			out = append(out, j)
		}
	}
	return out
}

// downloaded runs both models of twoModels to completion.
func (s *xrSim) downloaded() {
	s.t.Helper()
	s.reconcile()
	s.finish("org/alpha", true, `{"commit":"aaaa","files":1,"bytes":100,"seconds":1}`)
	s.finish("org/beta", true, betaSummary)
	s.reconcile()
	if !s.xrReady() {
		s.t.Fatalf("both models downloaded, the XR is not Ready: %v %v", s.entry("org/alpha"), s.entry("org/beta"))
	}
}

// results are the messages of the last call's results of a severity.
func (s *xrSim) results(severity fnv1.Severity) []string {
	var out []string
	for _, r := range s.last.GetResults() {
		if r.GetSeverity() == severity {
			out = append(out, r.GetMessage())
		}
	}
	return out
}

func reclaimResults(msgs []string) []string {
	var out []string
	for _, m := range msgs {
		if strings.Contains(m, "reclaim") {
			out = append(out, m)
		}
	}
	return out
}

func TestReclaimRemovesARemovedModel(t *testing.T) {
	specModes(t, reclaimingModels, func(t *testing.T, s *xrSim) {
		s.downloaded()
		betaJob := s.entry("org/beta")["jobName"]
		s.setSpec(removeBeta, ``)
		s.reconcile()
		e := s.betaReclaim()
		if e["phase"] != read.PhasePending || e["path"] != "/models/org/beta" || e["attempt"] != "1" {
			t.Fatalf("the removed model's reclaim starts: %v", e)
		}
		jobs := s.desiredJobs()
		if r := s.reclaimJobs(); len(r) != 1 || r[0] != e["jobName"] || !strings.Contains(e["jobName"], "reclaim-org-beta") || slices.Contains(jobs, betaJob) {
			t.Fatalf("the reclaim Job is desired, beta's download Job %s is let go: %v (entry %v)", betaJob, jobs, e)
		}
		job := asJob(t, s.betaReclaimJob())
		env := map[string]string{}
		for _, v := range job.Spec.Template.Spec.Containers[0].Env {
			env[v.Name] = v.Value
		}
		if env["HFDL_RECLAIM_MODEL"] != "org/beta" || env["HFDL_RECLAIM_ROOT"] != "/models" || job.Annotations[naming.AnnotationReclaim] != "org/beta" {
			t.Fatalf("the Job removes org/beta under /models: %v %v", env, job.Annotations)
		}
		if !s.xrReady() {
			t.Fatal("a reclaim holds the XR's readiness back: the models it has are all there")
		}

		s.betaReclaimJob().Fields["status"] = structpb.NewStructValue(mustStruct(jobRunning))
		s.reconcile()
		if e := s.betaReclaim(); e["phase"] != read.PhaseRunning || !s.xrReady() {
			t.Fatalf("running, the XR still Ready: %v %v", e, s.xrReady())
		}
		if ttl := s.last.GetMeta().GetTtl().AsDuration(); ttl != ttlDownloading {
			t.Fatalf("a running reclaim is looked at again within %v, got %v", ttlDownloading, ttl)
		}

		name := e["jobName"]
		s.finishJob(s.betaReclaimJob(), naming.ReclaimContainerName, true, `{"bytesFreed":12288,"files":3}`)
		s.reconcile()
		e = s.betaReclaim()
		if e["phase"] != read.PhaseCompleted || e["bytesFreed"] != "12288" || e["files"] != "3" || e["message"] != "" {
			t.Fatalf("completed, with what it freed: %v", e)
		}
		if got := reclaimResults(s.results(fnv1.Severity_SEVERITY_NORMAL)); len(got) != 1 ||
			got[0] != `reclaimed /models/org/beta from PersistentVolumeClaim "models": 3 files, 12.3 kB freed` {
			t.Fatalf("an event says what was freed: %q", got)
		}
		if len(s.reclaimJobs()) != 0 {
			t.Fatalf("a completed reclaim's Job is let go: %v", s.desiredJobs())
		}
		if _, ok := s.api.jobs[name]; ok && !s.objects {
			t.Fatalf("the reclaim Job %s is still there", name)
		}
		s.reconcile()
		if got := reclaimResults(s.results(fnv1.Severity_SEVERITY_NORMAL)); len(got) != 0 {
			t.Fatalf("the event is said once: %q", got)
		}
		if e := s.betaReclaim(); e["phase"] != read.PhaseCompleted || e["bytesFreed"] != "12288" || len(s.reclaimJobs()) != 0 {
			t.Fatalf("remembered, and no Job again: %v %v", e, s.desiredJobs())
		}
		if s.last.GetMeta().GetTtl().AsDuration() == ttlDownloading {
			t.Fatal("settled: no faster calls")
		}
	})
}

func TestReclaimRetainLeavesTheDirectory(t *testing.T) {
	for name, tc := range map[string]struct{ spec, from, to string }{
		"default": {twoModels, `"storagePVC":"models"}`, `"storagePVC":"models","settings":{"reclaim":"Delete"}}`},
		"Retain":  {twoModels + "settings:\n  reclaim: Retain\n", `"Retain"`, `"Delete"`},
	} {
		t.Run(name, func(t *testing.T) {
			s := newXRSim(t, newAPIServer(), xrYAML(tc.spec))
			s.downloaded()
			s.setSpec(removeBeta, ``)
			s.reconcile()
			if e := s.betaReclaim(); e != nil || len(s.reclaimJobs()) != 0 {
				t.Fatalf("nothing is removed: %v %v", e, s.desiredJobs())
			}
			// Delete set later: a model removed before it is not reclaimed.
			s.setSpec(tc.from, tc.to)
			s.reconcile()
			if e := s.betaReclaim(); e != nil || len(s.reclaimJobs()) != 0 {
				t.Fatalf("a model removed under Retain stays: %v %v", e, s.desiredJobs())
			}
		})
	}
}

func TestReclaimKeepsADirectoryAPeerWants(t *testing.T) {
	sims := peerSims(t, reclaimingModels, "storagePVC: models\nmodels:\n- name: org/beta\n  revision: v2\n")
	a := sims[0]
	a.downloaded()
	a.setSpec(removeBeta, ``)
	a.reconcile()
	e := a.betaReclaim()
	if e["phase"] != read.PhaseKept || !strings.Contains(e["message"], `team-b`) || len(a.reclaimJobs()) != 0 {
		t.Fatalf("kept, naming who wants it, and no Job: %v %v", e, a.desiredJobs())
	}
	a.reconcile()
	if e := a.betaReclaim(); e["phase"] != read.PhaseKept || len(a.reclaimJobs()) != 0 {
		t.Fatalf("kept stays kept: %v %v", e, a.desiredJobs())
	}
}

func TestReclaimEndsWhenTheModelComesBack(t *testing.T) {
	specModes(t, reclaimingModels, func(t *testing.T, s *xrSim) {
		s.downloaded()
		s.setSpec(removeBeta, ``)
		s.reconcile()
		reclaimName := s.betaReclaim()["jobName"]
		s.setSpec(`"models":[{"name":"org/alpha"}]`, `"models":[{"name":"org/alpha"},{"name":"org/beta","revision":"v2"}]`)
		s.reconcile()
		if e := s.betaReclaim(); e != nil {
			t.Fatalf("the model is wanted again: no reclaim: %v", e)
		}
		if slices.Contains(s.desiredJobs(), reclaimName) {
			t.Fatalf("the reclaim Job %s is still desired", reclaimName)
		}
		if p := s.entry("org/beta")["phase"]; p == read.PhaseCompleted {
			t.Fatalf("beta is downloaded again, not taken as still on disk: %v", s.entry("org/beta"))
		}
	})
}

func TestReclaimFailureIsTriedAgainUnderANewRetry(t *testing.T) {
	specModes(t, reclaimingModels, func(t *testing.T, s *xrSim) {
		s.downloaded()
		s.setSpec(removeBeta, ``)
		s.reconcile()
		first := s.betaReclaim()["jobName"]
		s.finishJob(s.betaReclaimJob(), naming.ReclaimContainerName, false, "/models/org/beta is a symlink or a file, not a directory: it is left as it is")
		s.reconcile()
		e := s.betaReclaim()
		if e["phase"] != read.PhaseFailed || !strings.Contains(e["message"], "it is left as it is") || !strings.Contains(e["message"], "BackoffLimitExceeded") {
			t.Fatalf("failed, with the pod's reason: %v", e)
		}
		if w := reclaimResults(s.results(fnv1.Severity_SEVERITY_WARNING)); len(w) != 1 || !strings.Contains(w[0], "kubectl annotate --overwrite modeldownload cache hfops.kamal.dev/retry") {
			t.Fatalf("a warning says how to try again: %q", w)
		}
		if jobs := s.reclaimJobs(); len(jobs) != 1 || jobs[0] != first {
			t.Fatalf("the failed Job is kept, as it is, for its logs: %v", jobs)
		}
		s.reconcile()
		// Failed stays failed with no new Job; the failed Job stays for its TTL (in Object
		// mode orphaned by its Object, which goes once the failure is recorded, as a
		// download's does).
		wantKept := []string{first}
		if s.objects {
			wantKept = nil
		}
		if jobs := s.reclaimJobs(); s.betaReclaim()["phase"] != read.PhaseFailed || !slices.Equal(jobs, wantKept) {
			t.Fatalf("failed stays failed, no new Job: %v %v", s.betaReclaim(), jobs)
		}
		if _, ok := s.api.jobs[first]; !ok {
			t.Fatalf("the failed reclaim Job %s is gone before its TTL", first)
		}
		// Its TTL deletes the failed Job: it is not made again, and the reclaim stays Failed.
		s.api.delete(first)
		s.reconcile()
		if jobs := s.reclaimJobs(); s.betaReclaim()["phase"] != read.PhaseFailed || len(jobs) != 0 {
			t.Fatalf("after the TTL: %v, reclaim Jobs %v; want Failed and none", s.betaReclaim(), jobs)
		}
		if _, ok := s.api.jobs[first]; ok {
			t.Fatalf("the failed reclaim Job %s was made again after its TTL", first)
		}
		s.annotate("hfops.kamal.dev/retry", "1")
		s.reconcile()
		e = s.betaReclaim()
		if e["attempt"] != "2" || e["jobName"] == first || e["phase"] != read.PhasePending {
			t.Fatalf("a new attempt under a new Job: %v", e)
		}
		s.finishJob(s.betaReclaimJob(), naming.ReclaimContainerName, true, `{"bytesFreed":0,"files":0}`)
		s.reconcile()
		if e := s.betaReclaim(); e["phase"] != read.PhaseCompleted || e["retry"] != "" {
			t.Fatalf("completed: %v", e)
		}
	})
}

func TestReclaimSpeaksOfOneVolume(t *testing.T) {
	s := newXRSim(t, newAPIServer(), xrYAML(reclaimingModels))
	s.downloaded()
	s.setSpec(removeBeta, ``)
	s.reconcile()
	if s.betaReclaim() == nil {
		t.Fatal("no reclaim started")
	}
	// The PVC was deleted and made again: the directory went with the old volume.
	s.api.pvc = pvcResource("pvc-uid-2")
	s.reconcile()
	if e := s.betaReclaim(); e != nil {
		t.Fatalf("a reclaim of another volume: %v", e)
	}
	if r := s.reclaimJobs(); len(r) != 0 {
		t.Fatalf("a reclaim Job on the new volume: %v", r)
	}
}

func TestReclaimWaitsForASlot(t *testing.T) {
	spec := "storagePVC: models\nsettings: {reclaim: Delete, maxParallel: 1}\nmodels:\n- name: org/alpha\n- name: org/beta\n- name: org/gamma\n"
	s := newXRSim(t, newAPIServer(), xrYAML(spec))
	s.reconcile()
	s.finish("org/alpha", true, `{"commit":"aaaa","files":1,"bytes":100,"seconds":1}`)
	s.reconcile()
	s.finish("org/beta", true, `{"commit":"bbbb","files":1,"bytes":100,"seconds":1}`)
	s.reconcile()
	// gamma downloads; beta goes: its reclaim waits for gamma's slot.
	s.start("org/gamma")
	s.setSpec(`,{"name":"org/beta"}`, ``)
	s.reconcile()
	e := s.betaReclaim()
	if e["phase"] != read.PhasePending || !strings.Contains(e["message"], "queued") {
		t.Fatalf("the reclaim waits for a slot: %v", e)
	}
	if r := s.reclaimJobs(); len(r) != 0 {
		t.Fatalf("a reclaim Job beyond maxParallel: %v", s.desiredJobs())
	}
	s.finish("org/gamma", true, `{"commit":"cccc","files":1,"bytes":100,"seconds":1}`)
	s.reconcile()
	if e := s.betaReclaim(); e["message"] != "starting" {
		t.Fatalf("the slot is free: the reclaim starts: %v", e)
	}
}
