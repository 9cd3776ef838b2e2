package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/protobuf/types/known/structpb"

	fnv1 "github.com/crossplane/function-sdk-go/proto/v1"

	"github.com/hfops/function-hf-download/internal/build"
	"github.com/hfops/function-hf-download/internal/decide"
	"github.com/hfops/function-hf-download/internal/read"
)

// What status promises (the README's "What status promises"), each tested as Crossplane drives the
// function: several calls through the simulator of sim_test.go, status
// carried over, the desired set becoming the observed set, Jobs finishing and
// removed by their TTL, provider-kubernetes adopting and orphaning.

const accessDenied = "download of org/alpha@main failed: access denied (gated or private repo; check the token and accept the licence at https://huggingface.co/org/alpha)"

func TestFailedStaysFailedAfterTTLUntilRetried(t *testing.T) {
	modes(t, func(t *testing.T, s *xrSim) {
		s.reconcile()
		s.start("org/alpha")
		s.reconcile()
		failedJob := s.entry("org/alpha")["jobName"]
		s.finish("org/alpha", false, accessDenied)
		s.reconcile()
		s.ttl("org/alpha")
		for i := range 3 {
			s.reconcile()
			e := s.entry("org/alpha")
			if e["phase"] != read.PhaseFailed || !strings.HasPrefix(e["message"], accessDenied) {
				t.Fatalf("call %d after the TTL: want Failed with the pod's reason, got %v", i, e)
			}
			if jobs := s.desiredJobs(); len(jobs) != 0 {
				t.Fatalf("call %d after the TTL: a failed model's Job came back: %v", i, jobs)
			}
			if _, ok := s.api.jobs[failedJob]; ok {
				t.Fatalf("call %d after the TTL: the failed Job %s exists again", i, failedJob)
			}
		}

		// The documented retry: a new annotation value, a new attempt.
		s.annotate(annotationRetry, "1")
		s.reconcile()
		e := s.entry("org/alpha")
		if e["phase"] != read.PhasePending || e["attempt"] != "2" || e["jobName"] == failedJob {
			t.Fatalf("after the retry annotation: want attempt 2 Pending under a new Job name, got %v", e)
		}
		s.finish("org/alpha", true, `{"commit":"abc123","files":2,"bytes":10,"seconds":1}`)
		s.reconcile()
		if e := s.entry("org/alpha"); e["phase"] != read.PhaseCompleted || e["commit"] != "abc123" || !s.xrReady() {
			t.Fatalf("the retried attempt completed: want Completed with its commit and the XR ready, got %v", e)
		}
		// The same annotation value asks for nothing more.
		s.reconcile()
		if e := s.entry("org/alpha"); e["attempt"] != "2" || e["phase"] != read.PhaseCompleted {
			t.Fatalf("a retry value already acted on started another attempt: %v", e)
		}
	})
}

func TestFailedModelRerunsWhenItsSpecChanges(t *testing.T) {
	modes(t, func(t *testing.T, s *xrSim) {
		s.reconcile()
		s.finish("org/alpha", false, accessDenied)
		s.reconcile()
		s.ttl("org/alpha")
		s.reconcile()
		s.setSpec(`"name":"org/alpha"`, `"name":"org/alpha","revision":"v2"`)
		s.reconcile()
		if e := s.entry("org/alpha"); e["phase"] != read.PhasePending || len(s.desiredJobs()) != 1 {
			t.Fatalf("a failed model whose spec changed runs again: got %v, Jobs %v", e, s.desiredJobs())
		}
	})
}

func TestRetryAnnotationSetWhileRunningIsNotARetryOfALaterFailure(t *testing.T) {
	modes(t, func(t *testing.T, s *xrSim) {
		s.reconcile()
		s.start("org/alpha")
		s.annotate(annotationRetry, "early")
		s.reconcile()
		s.finish("org/alpha", false, accessDenied)
		s.reconcile()
		s.reconcile()
		if e := s.entry("org/alpha"); e["phase"] != read.PhaseFailed || e["attempt"] != "1" || e["retry"] != "early" {
			t.Fatalf("a failure after the annotation was set is remembered under it: %v", e)
		}
	})
}

func TestJobNameNeverStandsForTwoAttempts(t *testing.T) {
	modes(t, func(t *testing.T, s *xrSim) {
		s.reconcile()
		first := s.entry("org/alpha")["jobName"]
		s.finish("org/alpha", true, `{"commit":"aaaa","files":1,"bytes":1,"seconds":1}`)
		s.reconcile()
		s.reconcile()
		// A -> B: B downloads (and overwrites the directory), then B -> A
		// while A's finished Job still exists (orphaned in Object mode,
		// or lingering while being deleted in Job mode).
		if j, ok := s.api.jobs[first]; ok && !s.objects {
			_ = j
			s.api.beginDelete(first)
		}
		s.setSpec(`"name":"org/alpha"`, `"name":"org/alpha","revision":"v2"`)
		s.reconcile()
		s.finish("org/alpha", true, `{"commit":"bbbb","files":1,"bytes":1,"seconds":1}`)
		s.reconcile()
		s.setSpec(`,"revision":"v2"`, ``)
		s.reconcile()
		e := s.entry("org/alpha")
		if e["jobName"] == first {
			t.Fatalf("back to the first spec: the Job name %s of the first attempt stands for the third", first)
		}
		if e["phase"] == read.PhaseCompleted || s.xrReady() {
			t.Fatalf("back to the first spec: Completed before a Job of this attempt ran (B is on disk): %v", e)
		}
		if e["attempt"] != "3" {
			t.Fatalf("want attempt 3, got %v", e)
		}
		s.reconcile()
		s.finish("org/alpha", true, `{"commit":"cccc","files":1,"bytes":1,"seconds":1}`)
		s.reconcile()
		if e := s.entry("org/alpha"); e["phase"] != read.PhaseCompleted || e["commit"] != "cccc" {
			t.Fatalf("the third attempt completed: %v", e)
		}
	})
}

func TestJobLostMidRunStartsANewAttempt(t *testing.T) {
	modes(t, func(t *testing.T, s *xrSim) {
		killed := s.running("org/alpha")
		// Deleted by hand while running: it lingers while its pod stops.
		s.api.beginDelete(killed)
		s.reconcile()
		e := s.entry("org/alpha")
		if e["phase"] != read.PhasePending || e["jobName"] == killed || !strings.Contains(e["message"], "being deleted") {
			t.Fatalf("while the killed Job goes: want Pending under a new name, waiting for it, got %v", e)
		}
		for _, n := range s.desiredJobs() {
			if n == killed || n == e["jobName"] {
				t.Fatalf("no Job may start while the killed one may still write: desired %v", s.desiredJobs())
			}
		}
		s.api.delete(killed)
		s.reconcile()
		if got := s.desiredJobs(); len(got) != 1 || got[0] != e["jobName"] {
			t.Fatalf("once the killed Job is gone the new attempt starts: desired %v, want [%s]", got, e["jobName"])
		}
	})
}

func TestNamesUniquePerModelDownload(t *testing.T) {
	for name, pair := range map[string][2]string{
		"CutToTheSamePrefix": {"inference-model-cache-team-a", "inference-model-cache-team-b"},
		"SameOnceSanitized":  {"llama.cache", "llama-cache"},
	} {
		t.Run(name, func(t *testing.T) {
			api := newAPIServer()
			var sims []*xrSim
			for _, xrName := range pair {
				sims = append(sims, newXRSim(t, api, strings.Replace(xrYAML(oneModel), "name: cache\n", "name: "+xrName+"\n", 1)))
			}
			for _, s := range sims {
				s.reconcile()
			}
			a, b := sims[0].entry("org/alpha")["jobName"], sims[1].entry("org/alpha")["jobName"]
			if a == b {
				t.Fatalf("%s and %s share the Job %s", pair[0], pair[1], a)
			}
			for i, s := range sims {
				s.finish("org/alpha", true, fmt.Sprintf(`{"commit":"%d","files":1,"bytes":1,"seconds":1}`, i))
				s.reconcile()
				if e := s.entry("org/alpha"); e["phase"] != read.PhaseCompleted || e["commit"] != fmt.Sprint(i) {
					t.Fatalf("%s: want its own Job Completed, got %v", pair[i], e)
				}
			}
		})
	}
}

func TestMissingPVCStartsNothingAndSaysSo(t *testing.T) {
	modes(t, func(t *testing.T, s *xrSim) {
		s.api.pvc = nil
		s.reconcile()
		c := s.condition(read.ConditionStorageReady)
		want := `PersistentVolumeClaim "models" in namespace "ml" was not found; no download starts until it exists`
		if c.GetStatus() != condF || c.GetReason() != read.ReasonPVCNotFound || c.GetMessage() != want {
			t.Fatalf("StorageReady: got %v", c)
		}
		if len(s.desiredJobs()) != 0 || s.last.GetMeta().GetTtl().AsDuration() != ttlWaiting {
			t.Fatalf("no Job until the PVC exists, and a short TTL: Jobs %v, TTL %v", s.desiredJobs(), s.last.GetMeta().GetTtl().AsDuration())
		}
		s.api.pvc = pvcResource(testPVCUID)
		s.reconcile()
		if len(s.desiredJobs()) != 1 || s.condition(read.ConditionStorageReady).GetStatus() != condT {
			t.Fatalf("the PVC exists: want the Job, got %v", s.desiredJobs())
		}
	})
}

// TestReplacedPVCDownloadsAgain: a PVC of the same name with another uid is
// another, empty volume: what was recorded on the first is not Completed on
// it, whether a call saw the PVC missing in between or not, and whether the
// completed Job is still there or its TTL removed it.
func TestReplacedPVCDownloadsAgain(t *testing.T) {
	for _, tc := range []struct {
		name string
		// seenMissing: a call runs while the PVC is gone.
		seenMissing, ttl bool
	}{
		{name: "DeletedThenMadeAgain", seenMissing: true, ttl: true},
		{name: "SwappedBetweenTwoCalls", ttl: true},
		{name: "SwappedUnderItsCompletedJob"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			modes(t, func(t *testing.T, s *xrSim) {
				s.reconcile()
				first := s.entry("org/alpha")
				s.finish("org/alpha", true, `{"commit":"aaaa","files":1,"bytes":1,"seconds":1}`)
				s.reconcile()
				if tc.ttl {
					s.ttl("org/alpha")
					s.reconcile()
				}
				if e := s.entry("org/alpha"); e["phase"] != read.PhaseCompleted || s.pvcUID() != testPVCUID {
					t.Fatalf("completed on the first PVC: %v", e)
				}
				if tc.seenMissing {
					// Deleted: nothing is on disk, whatever was recorded.
					s.api.pvc = nil
					s.reconcile()
					if e := s.entry("org/alpha"); e["phase"] == read.PhaseCompleted || s.xrReady() {
						t.Fatalf("with the PVC gone nothing is Completed: %v", e)
					}
				}
				s.api.pvc = pvcResource("second-pvc-uid")
				s.reconcile()
				e := s.entry("org/alpha")
				if e["phase"] != read.PhasePending || s.xrReady() || s.pvcUID() != "second-pvc-uid" || e["jobName"] == first["jobName"] || len(s.desiredJobs()) != 1 {
					t.Fatalf("on the new PVC the model downloads again under a new Job: %v, Ready %v, Jobs %v (the first was %s)",
						e, s.xrReady(), s.desiredJobs(), first["jobName"])
				}
			})
		})
	}
}

func TestPVCBeingDeletedStartsNothing(t *testing.T) {
	s := newXRSim(t, newAPIServer(), xrYAML(oneModel))
	s.api.pvc.Resource.Fields["metadata"].GetStructValue().Fields["deletionTimestamp"] = str("2026-11-26T00:00:00Z")
	s.reconcile()
	if c := s.condition(read.ConditionStorageReady); c.GetReason() != read.ReasonPVCTerminating || len(s.desiredJobs()) != 0 {
		t.Fatalf("a PVC being deleted: got %v and Jobs %v", c, s.desiredJobs())
	}
}

func TestReadWriteOnceColocatesPods(t *testing.T) {
	s := newXRSim(t, newAPIServer(), xrYAML(twoModels))
	s.api.pvc = pvcResource(testPVCUID, "ReadWriteOnce")
	s.reconcile()
	for key, r := range jobResources(s.last) {
		pod := read.Get(r.GetResource(), "spec", "template").GetStructValue()
		term := read.Get(pod, "spec", "affinity", "podAffinity", "requiredDuringSchedulingIgnoredDuringExecution").GetListValue().GetValues()
		if len(term) != 1 {
			t.Fatalf("%s: want one required pod affinity term, got %v", key, read.Get(pod, "spec", "affinity"))
		}
		want := fmt.Sprintf("%s=%s on %s", build.LabelPVC, read.GetString(pod, "metadata", "labels", build.LabelPVC), "kubernetes.io/hostname")
		got := fmt.Sprintf("%s=%s on %s", build.LabelPVC, read.GetString(term[0].GetStructValue(), "labelSelector", "matchLabels", build.LabelPVC),
			read.GetString(term[0].GetStructValue(), "topologyKey"))
		if got != want || read.GetString(pod, "metadata", "labels", build.LabelPVC) != "models" {
			t.Fatalf("%s: the pods of one PVC must share a node: got %s, want %s", key, got, want)
		}
	}
	// ReadWriteMany needs nothing of the kind.
	rwx := newXRSim(t, newAPIServer(), xrYAML(twoModels))
	rwx.reconcile()
	for key, r := range jobResources(rwx.last) {
		if a := read.Get(r.GetResource(), "spec", "template", "spec", "affinity"); a != nil {
			t.Fatalf("%s: a ReadWriteMany PVC needs no affinity, got %v", key, a)
		}
	}
}

func TestReadWriteOncePodRunsOneAtATime(t *testing.T) {
	three := twoModels + "- name: org/gamma\n"
	s := newXRSim(t, newAPIServer(), xrYAML(three))
	s.api.pvc = pvcResource(testPVCUID, "ReadWriteOncePod")
	for _, done := range []string{"org/alpha", "org/beta", "org/gamma"} {
		s.reconcile()
		if got := s.desiredJobs(); len(got) != 1 || s.entry(done)["jobName"] != got[0] {
			t.Fatalf("want only %s's Job, got %v", done, got)
		}
		s.finish(done, true, `{"commit":"ab","files":1,"bytes":1,"seconds":1}`)
		s.reconcile()
		s.ttl(done)
	}
	s.reconcile()
	if !s.xrReady() {
		t.Fatalf("all three done one after another: %v", s.last.GetDesired().GetComposite().GetResource().GetFields()["status"])
	}
}

func TestSpecChangeNeverHiddenWhileWaiting(t *testing.T) {
	for name, wait := range map[string]func(s *xrSim){
		"TokenUnreadable": func(s *xrSim) { s.secret = nil },
		"PVCMissing":      func(s *xrSim) { s.api.pvc = nil },
	} {
		t.Run(name, func(t *testing.T) {
			modes(t, func(t *testing.T, s *xrSim) {
				s.reconcile()
				s.finish("org/alpha", true, `{"commit":"aaaa","files":1,"bytes":1,"seconds":1}`)
				s.reconcile()
				s.ttl("org/alpha")
				s.reconcile()
				wait(s)
				s.setSpec(`"name":"org/alpha"`, `"name":"org/alpha","revision":"v2"`)
				s.reconcile()
				e := s.entry("org/alpha")
				if e["phase"] == read.PhaseCompleted || s.xrReady() {
					t.Fatalf("a changed spec is not Completed while the function waits: %v", e)
				}
				if !strings.Contains(e["message"], "waiting") && !strings.Contains(e["message"], "not found") {
					t.Fatalf("status says what it waits for: %q", e["message"])
				}
			})
		})
	}
}

func TestUnchangedSpecStaysCompletedWhileTokenUnreadable(t *testing.T) {
	modes(t, func(t *testing.T, s *xrSim) {
		s.reconcile()
		s.finish("org/alpha", true, `{"commit":"aaaa","files":1,"bytes":1,"seconds":1}`)
		s.reconcile()
		s.ttl("org/alpha")
		s.reconcile()
		s.secret = nil
		s.reconcile()
		if e := s.entry("org/alpha"); e["phase"] != read.PhaseCompleted || e["commit"] != "aaaa" || !s.xrReady() {
			t.Fatalf("the files have not changed: want Completed with its commit, got %v", e)
		}
	})
}

func TestOnlyOwnPodsSpeakForAJob(t *testing.T) {
	s := newXRSim(t, newAPIServer(), xrYAML(oneModel))
	s.reconcile()
	j := s.jobOf("org/alpha")
	j.Fields["status"] = mustStruct("s: {}").Fields["s"]
	s.finish("org/alpha", true, `{"commit":"beef","files":1,"bytes":1,"seconds":1}`)
	uid := read.GetString(j, "metadata", "uid")
	own := s.api.pods[uid][0]
	// A pod with the Job's labels but another controller, and one with no
	// owner at all, each claiming another commit.
	// And one that names the Job as an owner, but not as its controller.
	for i, owner := range []string{"  ownerReferences: [{apiVersion: batch/v1, kind: Job, name: x, uid: someone-else, controller: true}]\n", "",
		"  ownerReferences: [{apiVersion: batch/v1, kind: Job, name: x, uid: " + read.GetString(j, "metadata", "uid") + "}]\n"} {
		fake := mustStruct(fmt.Sprintf("apiVersion: v1\nkind: Pod\nmetadata:\n  name: fake-%d\n  namespace: ml\n  labels: {app: hf-downloader, parent: cache, batch.kubernetes.io/job-name: %s}\n%s"+
			"status: {containerStatuses: [{name: download, state: {terminated: {exitCode: 0, message: '{\"commit\":\"f00d\",\"files\":9,\"bytes\":9,\"seconds\":9}'}}}]}\n",
			i, read.GetString(j, "metadata", "name"), owner))
		s.api.pods["x"] = append(s.api.pods["x"], &fnv1.Resource{Resource: fake})
	}
	s.api.pods[uid] = nil
	s.reconcile()
	if e := s.entry("org/alpha"); e["commit"] != "" {
		t.Fatalf("a pod that is not the Job's set the commit: %v", e)
	}
	s.api.pods[uid] = []*fnv1.Resource{own}
	s.reconcile()
	if e := s.entry("org/alpha"); e["commit"] != "beef" {
		t.Fatalf("the Job's own pod sets the commit: %v", e)
	}
}

// TestPodsOfAnEarlierJobOfTheSameNameSayNothing: a Job deleted with its pods
// orphaned (kubectl delete --cascade=orphan) before its controller marked it
// finished is made again under the same name, by Crossplane or
// provider-kubernetes. Its predecessor's pod names it as controller by name
// but not by uid: what that pod reported is not the new Job's.
func TestPodsOfAnEarlierJobOfTheSameNameSayNothing(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ok     bool
		report string
		status string
	}{
		{name: "Completed", ok: true, report: `{"commit":"dead","files":1,"bytes":1,"seconds":1}`, status: jobComplete},
		{name: "Failed", report: accessDenied, status: jobFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			modes(t, func(t *testing.T, s *xrSim) {
				s.reconcile()
				s.finish("org/alpha", tc.ok, tc.report)
				old := s.jobOf("org/alpha")
				name, oldUID := read.GetString(old, "metadata", "name"), read.GetString(old, "metadata", "uid")
				delete(s.api.jobs, name)
				s.reconcile()
				j := s.jobOf("org/alpha")
				if read.GetString(j, "metadata", "name") != name || read.GetString(j, "metadata", "uid") == oldUID || len(s.api.pods[oldUID]) != 1 {
					t.Fatalf("want %s made again with a new uid beside the old pod; got uid %s (was %s)", name, read.GetString(j, "metadata", "uid"), oldUID)
				}
				j.Fields["status"] = structpb.NewStructValue(mustStruct(tc.status))
				s.reconcile()
				if e := s.entry("org/alpha"); e["commit"] != "" || strings.Contains(e["message"], accessDenied) {
					t.Fatalf("%s, made again, took what the pod of its predecessor (uid %s) reported: %v", name, oldUID, e)
				}
			})
		})
	}
}

func TestFailureReasonReachesStatusClean(t *testing.T) {
	s := newXRSim(t, newAPIServer(), xrYAML(oneModel))
	s.reconcile()
	// The Secret's token, and another one a user pasted somewhere.
	noisy := "\x1b[31mError: Access denied.\x1b[0m\nHint: set HF_DEBUG=1\n\x1b[1m" + accessDenied + " token " + testToken + " or hf_OtherUsersToken0123\x1b[0m\n\n"
	s.finish("org/alpha", false, noisy)
	s.reconcile()
	e := s.entry("org/alpha")
	want := accessDenied + " token [token] or [token]; Job BackoffLimitExceeded: Job has reached the specified backoff limit"
	if diff := cmp.Diff(want, e["message"]); diff != "" {
		t.Fatalf("the failed pod's last line, plain and without the token; -want, +got:\n%s", diff)
	}
	var warned bool
	for _, r := range s.last.GetResults() {
		warned = warned || r.GetSeverity() == warning && strings.Contains(r.GetMessage(), want)
	}
	if !warned {
		t.Fatalf("a Warning on the XR carries the reason: %v", s.last.GetResults())
	}
	long := strings.Repeat("é", 600)
	s2 := newXRSim(t, newAPIServer(), xrYAML(oneModel))
	s2.reconcile()
	s2.finish("org/alpha", false, long)
	s2.reconcile()
	if m := s2.entry("org/alpha")["message"]; len(m) > read.MaxFailureBytes+100 || !strings.HasPrefix(m, "é") {
		t.Fatalf("a long reason is bounded (%d bytes) and stays valid text", len(m))
	}
}

// peerSims are ModelDownloads of one namespace that see each other as
// required resources, each created a second after the one before.
func peerSims(t *testing.T, specs ...string) []*xrSim {
	api := newAPIServer()
	var sims []*xrSim
	for i, spec := range specs {
		xr := strings.Replace(xrYAML(spec), "name: cache\n", fmt.Sprintf("name: team-%c\n  creationTimestamp: \"2026-11-26T00:00:0%dZ\"\n  uid: xr-%d\n", 'a'+i, i, i), 1)
		sims = append(sims, newXRSim(t, api, xr))
	}
	for _, s := range sims {
		s.peers = func() []*fnv1.Resource {
			var out []*fnv1.Resource
			for _, o := range sims {
				out = append(out, &fnv1.Resource{Resource: o.xr})
			}
			return out
		}
	}
	return sims
}

func TestDirectoryConflictBlocksTheLaterOne(t *testing.T) {
	sims := peerSims(t, oneModel, strings.Replace(oneModel, "org/alpha\n", "org/alpha\n  revision: v2\n", 1))
	a, b := sims[0], sims[1]
	a.reconcile()
	b.reconcile()
	a.reconcile()
	if len(b.desiredJobs()) != 0 || b.entry("org/alpha")["phase"] != read.PhasePending || !strings.Contains(b.entry("org/alpha")["message"], `ModelDownload "team-a"`) {
		t.Fatalf("the later one gets no Job and says why: %v %v", b.desiredJobs(), b.entry("org/alpha"))
	}
	for _, s := range sims {
		c := s.condition(decide.ConditionConflict)
		other := map[*xrSim]string{a: "team-b", b: "team-a"}[s]
		if c.GetStatus() != condT || !strings.Contains(c.GetMessage(), other) || !strings.Contains(c.GetMessage(), "org/alpha") {
			t.Fatalf("both name the other ModelDownload and the model: %v", c)
		}
	}
	if len(a.desiredJobs()) != 1 {
		t.Fatalf("the older one downloads: %v", a.desiredJobs())
	}
	// Resolved: the later one asks for the same content, and shares it.
	b.setSpec(`,"revision":"v2"`, ``)
	a.start("org/alpha")
	a.reconcile()
	b.reconcile()
	if len(b.desiredJobs()) != 0 || !strings.Contains(b.entry("org/alpha")["message"], "same content") {
		t.Fatalf("the same content: it waits while the other downloads: %v %v", b.desiredJobs(), b.entry("org/alpha"))
	}
	a.finish("org/alpha", true, `{"commit":"aaaa","files":1,"bytes":1,"seconds":1}`)
	a.reconcile()
	b.reconcile()
	if len(b.desiredJobs()) != 1 || b.condition(decide.ConditionConflict).GetStatus() != condF || a.condition(decide.ConditionConflict).GetStatus() != condF {
		t.Fatalf("then runs its own Job (which finds the marker), with no conflict left: %v", b.desiredJobs())
	}
}

func TestDirectoryConflictIgnoresOtherPVCsAndModels(t *testing.T) {
	sims := peerSims(t, oneModel,
		strings.Replace(strings.Replace(oneModel, "org/alpha\n", "org/alpha\n  revision: v2\n", 1), "storagePVC: models", "storagePVC: other", 1),
		strings.Replace(oneModel, "org/alpha\n", "org/beta\n", 1))
	for _, s := range sims {
		s.reconcile()
		if c := s.condition(decide.ConditionConflict); c.GetStatus() != condF || len(s.desiredJobs()) != 1 {
			t.Fatalf("another PVC or another model is no conflict: %v %v", c, s.desiredJobs())
		}
	}
}

// TestGlobOrderIsNotContent: hf applies globs as a set, so two orders are the
// same content and share a directory.
func TestGlobOrderIsNotContent(t *testing.T) {
	sims := peerSims(t, strings.Replace(oneModel, "org/alpha\n", "org/alpha\n  include: ['*.json', '*.safetensors']\n", 1),
		strings.Replace(oneModel, "org/alpha\n", "org/alpha\n  include: ['*.safetensors', '*.json', '*.json']\n", 1))
	for _, s := range sims {
		s.reconcile()
	}
	if a, b := sims[0].entry("org/alpha")["contentHash"], sims[1].entry("org/alpha")["contentHash"]; a != b || sims[1].condition(decide.ConditionConflict).GetStatus() != condF {
		t.Fatalf("one glob set in two orders: content %s and %s", a, b)
	}
}

func TestJobVanishedMidRunStartsANewAttempt(t *testing.T) {
	modes(t, func(t *testing.T, s *xrSim) {
		lost := s.running("org/alpha")
		// Gone between two calls (deleted by hand, or by a TTL so short the
		// outcome was never seen): nobody knows how it ended.
		s.api.delete(lost)
		s.reconcile()
		e := s.entry("org/alpha")
		if s.objects {
			// provider-kubernetes makes the Job of a managed Object again at
			// once: the same attempt starts over, from nothing.
			if e["jobName"] != lost || e["phase"] != read.PhasePending || s.api.jobs[lost] == nil {
				t.Fatalf("Object mode: the provider's new Job of the same attempt, Pending, got %v", e)
			}
			return
		}
		if e["jobName"] == lost || e["attempt"] != "2" || e["phase"] != read.PhasePending {
			t.Fatalf("a Job lost mid-run: want attempt 2 under a new name, got %v", e)
		}
		if got := s.desiredJobs(); len(got) != 1 || got[0] != e["jobName"] {
			t.Fatalf("the new attempt's Job starts: %v", got)
		}
	})
}

func TestModelDownloadMadeAgainGetsJobsOfItsOwn(t *testing.T) {
	// A ModelDownload deleted and applied again under the same name is a new
	// XR (a new uid): in Object mode its predecessor's finished Jobs may
	// still be there, orphaned, and must not be adopted as its own.
	api := newAPIServer()
	var names []string
	for _, uid := range []string{"first-uid", "second-uid"} {
		s := newXRSim(t, api, strings.Replace(claimXR(oneModel), "name: cache-x7k2p\n", "name: cache-x7k2p\n  uid: "+uid+"\n", 1))
		s.reconcile()
		names = append(names, s.entry("org/alpha")["jobName"])
		s.finish("org/alpha", true, `{"commit":"aaaa","files":1,"bytes":1,"seconds":1}`)
		s.reconcile()
		if e := s.entry("org/alpha"); len(names) == 2 && e["commit"] != "aaaa" {
			t.Fatalf("the second XR's own Job completed: %v", e)
		}
	}
	if names[0] == names[1] {
		t.Fatalf("an XR made again under the same name reuses the Job name %s", names[0])
	}
}

// TestUpgradeRerunsNothingDone upgrades the function under a ModelDownload as a new release
// does: the default image (and with it every Job's hash) changes, nothing the user or the
// platform asked for does. A completed model stays completed with its commit and gets no Job;
// a running one finishes on the Job it has; a failed one moves to the new template. A rotated
// token afterwards still re-runs the downloads.
func TestUpgradeRerunsNothingDone(t *testing.T) {
	const three = "storagePVC: models\nhfTokenRef:\n  name: hf\nmodels:\n- name: org/alpha\n- name: org/beta\n- name: org/gamma\n"
	release := func(image string) string { return inputHeader + "image: " + image + "\n" }
	specModes(t, three, func(t *testing.T, s *xrSim) {
		s.input = release("registry.example/hf-downloader:v1")
		s.reconcile()
		for _, m := range []string{"org/alpha", "org/beta", "org/gamma"} {
			s.start(m)
		}
		s.finish("org/alpha", true, `{"commit":"aaaa","files":1,"bytes":1,"seconds":1}`)
		s.finish("org/gamma", false, "download of org/gamma@main failed: access denied")
		s.reconcile()
		s.ttl("org/alpha")
		s.reconcile()
		before := map[string]map[string]string{}
		for _, m := range []string{"org/alpha", "org/beta", "org/gamma"} {
			before[m] = s.entry(m)
		}

		s.input = release("registry.example/hf-downloader:v2")
		s.reconcile()
		alpha, beta, gamma := s.entry("org/alpha"), s.entry("org/beta"), s.entry("org/gamma")
		if alpha["phase"] != read.PhaseCompleted || alpha["commit"] != "aaaa" || alpha["jobName"] != before["org/alpha"]["jobName"] {
			t.Errorf("the completed model after the upgrade: %v, want Completed as recorded before it (%v)", alpha, before["org/alpha"])
		}
		if beta["phase"] != read.PhaseRunning || beta["jobName"] != before["org/beta"]["jobName"] {
			t.Errorf("the running model after the upgrade: %v, want Running on its Job %s", beta, before["org/beta"]["jobName"])
		}
		if gamma["phase"] != read.PhasePending || gamma["jobName"] == before["org/gamma"]["jobName"] || gamma["attempt"] != "2" {
			t.Errorf("the failed model after the upgrade: %v, want Pending in attempt 2 on a new Job", gamma)
		}
		if diff := cmp.Diff([]string{beta["jobName"], gamma["jobName"]}, s.desiredJobs(), cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
			t.Errorf("Jobs desired after the upgrade (-want +got): the running one as it is and the failed one's next\n%s", diff)
		}

		s.finish("org/beta", true, `{"commit":"bbbb","files":1,"bytes":1,"seconds":1}`)
		s.finish("org/gamma", true, `{"commit":"cccc","files":1,"bytes":1,"seconds":1}`)
		s.reconcile()
		s.reconcile()
		if beta := s.entry("org/beta"); beta["phase"] != read.PhaseCompleted || beta["commit"] != "bbbb" || beta["jobName"] != before["org/beta"]["jobName"] {
			t.Errorf("the model that ran through the upgrade: %v, want Completed on the Job it had", beta)
		}
		if !s.xrReady() {
			t.Errorf("every model is complete: want the XR Ready")
		}

		s.secret = secretResource("token", testToken+"-rotated")
		s.reconcile()
		for _, m := range []string{"org/alpha", "org/beta", "org/gamma"} {
			if e := s.entry(m); e["phase"] != read.PhasePending {
				t.Errorf("after the token rotated, %s: %v, want Pending on a new Job (a rotated token re-runs the downloads)", m, e)
			}
		}
	})
}
