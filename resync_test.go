package main

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	fnv1 "github.com/crossplane/function-sdk-go/proto/v1"

	"github.com/hfops/function-hf-download/internal/naming"
	"github.com/hfops/function-hf-download/internal/read"
	"github.com/hfops/function-hf-download/script"
)

// Resync, as Crossplane drives it: a completed model of a moving revision is
// checked again when settings.resyncInterval has passed since it was last
// checked, by a check Job that runs, completes (the revision moved, or not)
// or fails and is let go, the model Completed and the XR Ready throughout.

const resyncing = oneModel + "settings:\n  resyncInterval: 24h\n"

const (
	commitA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	commitB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

func summaryAt(commit string, files int) string {
	return `{"commit":"` + commit + `","files":` + strconv.Itoa(files) + `,"bytes":1000,"seconds":2,"verified":true}`
}

// checkJob is the Job of org/alpha's current check, as the apiserver has it.
func (s *xrSim) checkJob() *structpb.Struct {
	s.t.Helper()
	name := s.entry("org/alpha")["resync.jobName"]
	j, ok := s.api.jobs[name]
	if !ok {
		s.t.Fatalf("no check Job %q in the apiserver (entry %v)", name, s.entry("org/alpha"))
	}
	return j
}

// checkDue downloads org/alpha at commitA and calls again a day later,
// when its first check is due.
func (s *xrSim) checkDue() {
	s.t.Helper()
	s.reconcile()
	s.finish("org/alpha", true, summaryAt(commitA, 3))
	s.reconcile()
	s.now = s.now.Add(25 * time.Hour)
	s.reconcile()
}

// checkJobs are the check Jobs the last call desired.
func (s *xrSim) checkJobs() []string { return s.desiredJobsNamed("-resync-") }

// completedWithResync checks what every call of a resyncing model promises:
// Completed, the XR Ready.
func (s *xrSim) completedWithResync(when string) map[string]string {
	s.t.Helper()
	e := s.entry("org/alpha")
	if e["phase"] != read.PhaseCompleted || !s.xrReady() {
		s.t.Fatalf("%s: the model is %s, the XR Ready %v; a check never changes either: %v", when, e["phase"], s.xrReady(), e)
	}
	return e
}

func resyncEvents(msgs []string) []string {
	var out []string
	for _, m := range msgs {
		if strings.Contains(m, "moved upstream") || strings.Contains(m, "against the Hub") {
			out = append(out, m)
		}
	}
	return out
}

func TestResyncChecksAMovingRevision(t *testing.T) {
	specModes(t, resyncing, func(t *testing.T, s *xrSim) {
		s.reconcile()
		s.finish("org/alpha", true, summaryAt(commitA, 3))
		s.reconcile()
		e := s.completedWithResync("downloaded")
		checked, err := time.Parse(time.RFC3339, e["checkedAt"])
		if err != nil || e["commit"] != commitA || e["resync.phase"] != "" {
			t.Fatalf("the download is the first check, when its pod ended: %v (%v)", e, err)
		}
		if ttl := s.last.GetMeta().GetTtl().AsDuration(); ttl != ttlSettled {
			t.Fatalf("a check a day away: called again as when settled (%v), got %v", ttlSettled, ttl)
		}
		s.now = checked.Add(24*time.Hour - 30*time.Second)
		s.reconcile()
		if ttl := s.last.GetMeta().GetTtl().AsDuration(); ttl != 30*time.Second || len(s.checkJobs()) != 0 {
			t.Fatalf("called again when the check is due, in 30s: %v, check Jobs %v", ttl, s.checkJobs())
		}

		s.now = checked.Add(24 * time.Hour)
		s.reconcile()
		e = s.completedWithResync("a check due")
		if e["resync.check"] != "1" || e["resync.phase"] != read.PhasePending || !strings.Contains(e["resync.jobName"], "resync-org-alpha") {
			t.Fatalf("check 1 starts: %v", e)
		}
		if got := s.checkJobs(); len(got) != 1 || got[0] != e["resync.jobName"] {
			t.Fatalf("its Job is desired: %v", s.desiredJobs())
		}
		job := asJob(t, s.checkJob())
		env := map[string]string{}
		for _, v := range job.Spec.Template.Spec.Containers[0].Env {
			env[v.Name] = v.Value
		}
		if env[script.EnvResync] != "true" || env[script.EnvRepoID] != "org/alpha" || job.Annotations[naming.AnnotationResync] != "1" ||
			job.Spec.Template.Spec.Containers[0].Name != naming.ContainerName {
			t.Fatalf("the check Job is the model's download Job in check mode: %v %v", env, job.Annotations)
		}

		s.checkJob().Fields["status"] = structpb.NewStructValue(mustStruct(jobRunning))
		s.reconcile()
		if e := s.completedWithResync("a check running"); e["resync.phase"] != read.PhaseRunning || e["commit"] != commitA {
			t.Fatalf("running, the old commit on disk: %v", e)
		}
		if ttl := s.last.GetMeta().GetTtl().AsDuration(); ttl != ttlDownloading {
			t.Fatalf("a running check is looked at again within %v, got %v", ttlDownloading, ttl)
		}

		s.finishJob(s.checkJob(), naming.ContainerName, true, summaryAt(commitB, 4))
		name := e["resync.jobName"]
		s.reconcile()
		e = s.completedWithResync("the revision moved")
		if e["commit"] != commitB || e["files"] != "4" || e["resync.phase"] != read.PhaseCompleted || e["resync.movedFrom"] != commitA ||
			e["resync.movedAt"] == "" || e["checkedAt"] != e["resync.movedAt"] {
			t.Fatalf("the new commit is on disk and status says it moved: %v", e)
		}
		if got := resyncEvents(s.results(fnv1.Severity_SEVERITY_NORMAL)); len(got) != 1 ||
			!strings.HasPrefix(got[0], "org/alpha moved upstream from commit "+commitA+" to "+commitB) {
			t.Fatalf("an event says the upstream moved: %q", got)
		}
		if len(s.checkJobs()) != 0 {
			t.Fatalf("a completed check's Job is let go: %v", s.desiredJobs())
		}
		if _, ok := s.api.jobs[name]; ok && !s.objects {
			t.Fatalf("the check Job %s is still there", name)
		}

		s.reconcile()
		e = s.completedWithResync("after the move")
		if e["commit"] != commitB || len(resyncEvents(s.results(fnv1.Severity_SEVERITY_NORMAL))) != 0 || len(s.checkJobs()) != 0 {
			t.Fatalf("the download pod's older report does not take the commit back, the event is said once: %v %q",
				e, s.results(fnv1.Severity_SEVERITY_NORMAL))
		}

		// Check 2: the revision names the commit on disk.
		checked, _ = time.Parse(time.RFC3339, e["checkedAt"])
		s.now = checked.Add(24 * time.Hour)
		s.reconcile()
		s.finishJob(s.checkJob(), naming.ContainerName, true, summaryAt(commitB, 4))
		s.reconcile()
		e = s.completedWithResync("unmoved")
		if e["resync.check"] != "2" || e["resync.phase"] != read.PhaseCompleted || e["commit"] != commitB || e["resync.movedFrom"] != commitA ||
			e["checkedAt"] == checked.Format(time.RFC3339) {
			t.Fatalf("check 2 completed, nothing moved, checkedAt moved on: %v", e)
		}
		if got := resyncEvents(s.results(fnv1.Severity_SEVERITY_NORMAL)); len(got) != 0 {
			t.Fatalf("no event when nothing moved: %q", got)
		}

		// Check 3 fails: the files stay, the next comes an hour later.
		checked, _ = time.Parse(time.RFC3339, e["checkedAt"])
		s.now = checked.Add(24 * time.Hour)
		s.reconcile()
		failedJob := s.entry("org/alpha")["resync.jobName"]
		s.finishJob(s.checkJob(), naming.ContainerName, false, "download of org/alpha@main failed: Server error '500 Internal Server Error'")
		s.reconcile()
		e = s.completedWithResync("a failed check")
		if e["resync.check"] != "3" || e["resync.phase"] != read.PhaseFailed || !strings.Contains(e["resync.message"], "500 Internal Server Error") ||
			e["resync.failedAt"] != s.now.Format(time.RFC3339) || e["commit"] != commitB {
			t.Fatalf("check 3 failed, the files on disk as they were: %v", e)
		}
		if got := resyncEvents(s.results(fnv1.Severity_SEVERITY_WARNING)); len(got) != 1 || !strings.Contains(got[0], "checking org/alpha against the Hub failed") {
			t.Fatalf("a warning says the check failed: %q", got)
		}
		if kept := s.checkJobs(); len(kept) != 1 || kept[0] != failedJob {
			t.Fatalf("the failed Job stays for its logs: %v", kept)
		}
		s.now = s.now.Add(30 * time.Minute)
		s.reconcile()
		if kept := s.checkJobs(); s.objects && len(kept) != 0 || !s.objects && (len(kept) != 1 || kept[0] != failedJob) {
			t.Fatalf("the failed Job stays until its TTL, its Object (Object mode) goes once the failure is recorded: %v", kept)
		}
		if _, ok := s.api.jobs[failedJob]; !ok {
			t.Fatalf("the failed check Job %s is gone before its TTL", failedJob)
		}
		if ttl := s.last.GetMeta().GetTtl().AsDuration(); ttl > 30*time.Minute || s.entry("org/alpha")["resync.check"] != "3" {
			t.Fatalf("no check again before the hour: %v, ttl %v", s.entry("org/alpha"), ttl)
		}
		s.api.delete(failedJob)
		s.now = s.now.Add(30 * time.Minute)
		s.reconcile()
		if e := s.completedWithResync("an hour after the failure"); e["resync.check"] != "4" || e["resync.phase"] != read.PhasePending {
			t.Fatalf("check 4 starts an hour after the failure: %v", e)
		}
	})
}

func TestResyncLeavesCommitsAndUnsetIntervalsAlone(t *testing.T) {
	for name, spec := range map[string]string{
		"commit": strings.Replace(resyncing, "- name: org/alpha\n", "- name: org/alpha\n  revision: "+commitA+"\n", 1),
		"unset":  oneModel,
		"empty":  oneModel + "settings:\n  resyncInterval: \"\"\n",
	} {
		t.Run(name, func(t *testing.T) {
			s := newXRSim(t, newAPIServer(), xrYAML(spec))
			s.reconcile()
			s.finish("org/alpha", true, summaryAt(commitA, 3))
			s.reconcile()
			s.now = s.now.Add(1000 * time.Hour)
			s.reconcile()
			if e := s.entry("org/alpha"); e["checkedAt"] != "" || e["resync.check"] != "" || len(s.checkJobs()) != 0 {
				t.Fatalf("nothing is checked: %v %v", e, s.desiredJobs())
			}
		})
	}
}

// TestResyncGoesWithANewSpec: a check under way when the spec changes goes
// with the attempt it checked; the new attempt downloads, and its own
// completion is the first check again.
func TestResyncGoesWithANewSpec(t *testing.T) {
	specModes(t, resyncing, func(t *testing.T, s *xrSim) {
		s.checkDue()
		if len(s.checkJobs()) != 1 {
			t.Fatalf("a check: %v", s.desiredJobs())
		}
		s.setSpec(`"name":"org/alpha"`, `"name":"org/alpha","revision":"v3"`)
		s.reconcile()
		e := s.entry("org/alpha")
		if e["phase"] == read.PhaseCompleted || e["resync.check"] != "" || e["checkedAt"] != "" || len(s.checkJobs()) != 0 {
			t.Fatalf("the new revision downloads, the old attempt's check goes: %v %v", e, s.desiredJobs())
		}
	})
}

func TestResyncIntervalIsValidated(t *testing.T) {
	for value, want := range map[string]string{
		"30m":  "at least 1h",
		"1x":   "a duration such as 24h",
		"-24h": "a duration such as 24h",
	} {
		t.Run(value, func(t *testing.T) {
			rsp := checkInvariants(t, withToken(xrYAML(oneModel+"settings:\n  resyncInterval: "+value+"\n")).build())
			var got []string
			for _, r := range rsp.GetResults() {
				if r.GetSeverity() == fatal {
					got = append(got, r.GetMessage())
				}
			}
			if len(got) != 1 || !strings.Contains(got[0], "spec.settings.resyncInterval") || !strings.Contains(got[0], want) {
				t.Fatalf("a Fatal result says %q, got %q", want, got)
			}
		})
	}
}

// TestResyncStartsOverWhenItsJobIsLost: a running check whose Job is gone
// (deleted by hand, say) starts over under a new number and Job name. (In
// Object mode provider-kubernetes makes the Job of the Object again.)
func TestResyncStartsOverWhenItsJobIsLost(t *testing.T) {
	s := newXRSim(t, newAPIServer(), xrYAML(resyncing))
	s.checkDue()
	s.checkJob().Fields["status"] = structpb.NewStructValue(mustStruct(jobRunning))
	s.reconcile()
	lost := s.entry("org/alpha")["resync.jobName"]
	s.api.delete(lost)
	s.reconcile()
	e := s.completedWithResync("a lost check")
	if e["resync.check"] != "2" || e["resync.jobName"] == lost || e["resync.phase"] != read.PhasePending {
		t.Fatalf("the check starts over as check 2: %v (lost %s)", e, lost)
	}
}
