package decide

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/hfops/function-hf-download/apis/v1alpha1"
	"github.com/hfops/function-hf-download/internal/naming"
	"github.com/hfops/function-hf-download/internal/read"
	"github.com/hfops/function-hf-download/script"
)

// TestDecideReclaims is the reclaim of a removed model's directory as a
// table: from the facts of a call (the spec's names, settings.reclaim, the
// recorded models and reclaims, the observed reclaim Jobs and what their
// pods reported, the peers, the volume) to each reclaim's phase, attempt,
// and whether its Job is composed or kept. reclaim_test.go in main drives
// the same decisions through whole calls.
func TestDecideReclaims(t *testing.T) {
	who := naming.Owner{Namespace: "ns", Name: "md", XRName: "md", XRUID: "uid", PVCUID: "vol"}
	hash := func(n int64) string { return naming.ReclaimHash(who, "org/gone", n) }
	job := func(n int64, phase string) *read.SeenJob {
		return &read.SeenJob{Key: naming.ReclaimKey("org/gone", hash(n)), Model: "org/gone", Hash: hash(n), Attempt: n, Phase: phase,
			Job: &batchv1.Job{ObjectMeta: metav1.ObjectMeta{UID: types.UID(fmt.Sprint("uid-", n))}}}
	}
	recorded := func(phase string, attempt int64, retry string) v1alpha1.ReclaimStatus {
		return v1alpha1.ReclaimStatus{Name: "org/gone", Phase: phase, Attempt: attempt, Retry: retry}
	}
	removed := map[string]read.RecordedModel{"org/gone": {Name: "org/gone", Phase: read.PhaseCompleted}, "org/kept": {Name: "org/kept"}}

	type want struct {
		phase   string
		attempt int64
		compose bool
		keep    int64
		freed   bool
		bytes   int64
	}
	cases := []struct {
		name     string
		reclaim  string
		models   map[string]read.RecordedModel
		records  []v1alpha1.ReclaimStatus
		jobs     []*read.SeenJob
		reports  map[string]read.PodReport
		facts    func(f *Facts)
		wanted   []string
		want     []want
		wantNone bool
	}{
		{name: "RemovedUnderDeleteStarts", reclaim: read.ReclaimDelete, models: removed,
			want: []want{{phase: read.PhasePending, attempt: 1, compose: true}}},
		{name: "RemovedUnderRetainIsLeft", reclaim: read.ReclaimRetain, models: removed, wantNone: true},
		{name: "RemovedUnderDeleteWithoutAVolumeIsLeft", reclaim: read.ReclaimDelete, models: removed,
			facts: func(f *Facts) { f.Storage = read.StorageState{Problem: "no PVC"} }, wantNone: true},
		{name: "RecordedWaitsForTheVolume", records: []v1alpha1.ReclaimStatus{recorded(read.PhasePending, 1, "")},
			facts: func(f *Facts) { f.Storage = read.StorageState{Problem: "no PVC"} }, want: []want{{phase: read.PhasePending, attempt: 1}}},
		{name: "RecordedWaitsForTheServiceAccount", records: []v1alpha1.ReclaimStatus{recorded(read.PhasePending, 1, "")},
			facts: func(f *Facts) { f.Prerequisite = "no ServiceAccount" }, want: []want{{phase: read.PhasePending, attempt: 1}}},
		{name: "APeerWantsItKept", reclaim: read.ReclaimDelete, models: removed,
			facts: func(f *Facts) { f.Claims = map[string][]string{"org/gone": {"other"}} }, want: []want{{phase: read.PhaseKept, attempt: 1}}},
		{name: "AWantedModelHoldsIt", reclaim: read.ReclaimDelete, models: removed, wanted: []string{"org"},
			want: []want{{phase: read.PhaseKept, attempt: 1}}},
		{name: "APeersModelHoldsIt", reclaim: read.ReclaimDelete, models: removed,
			facts: func(f *Facts) { f.Claims = map[string][]string{"org": {"other"}} }, want: []want{{phase: read.PhaseKept, attempt: 1}}},
		{name: "APeerComingLateDoesNotStopARunningJob", records: []v1alpha1.ReclaimStatus{recorded(read.PhaseRunning, 1, "")},
			jobs: []*read.SeenJob{job(1, read.PhaseRunning)}, facts: func(f *Facts) { f.Claims = map[string][]string{"org/gone": {"other"}} },
			want: []want{{phase: read.PhaseRunning, attempt: 1, compose: true}}},
		{name: "ItsJobRuns", records: []v1alpha1.ReclaimStatus{recorded(read.PhasePending, 1, "")}, jobs: []*read.SeenJob{job(1, read.PhaseRunning)},
			want: []want{{phase: read.PhaseRunning, attempt: 1, compose: true}}},
		{name: "ItsJobIsMadeButNotStarted", records: []v1alpha1.ReclaimStatus{recorded(read.PhasePending, 1, "")}, jobs: []*read.SeenJob{job(1, read.PhasePending)},
			want: []want{{phase: read.PhasePending, attempt: 1, compose: true}}},
		{name: "ItsJobCompleted", records: []v1alpha1.ReclaimStatus{recorded(read.PhaseRunning, 1, "")}, jobs: []*read.SeenJob{job(1, read.PhaseCompleted)},
			reports: map[string]read.PodReport{"uid-1": {Reclaimed: &script.Reclaimed{BytesFreed: 4096, Files: 1}}},
			want:    []want{{phase: read.PhaseCompleted, attempt: 1, freed: true, bytes: 4096}}},
		{name: "ItsJobCompletedItsPodGone", records: []v1alpha1.ReclaimStatus{recorded(read.PhaseRunning, 1, "")}, jobs: []*read.SeenJob{job(1, read.PhaseCompleted)},
			want: []want{{phase: read.PhaseCompleted, attempt: 1, freed: true}}},
		{name: "CompletedIsRemembered", records: []v1alpha1.ReclaimStatus{recorded(read.PhaseCompleted, 1, "")},
			want: []want{{phase: read.PhaseCompleted, attempt: 1}}},
		{name: "ItsJobFailed", records: []v1alpha1.ReclaimStatus{recorded(read.PhaseRunning, 1, "")}, jobs: []*read.SeenJob{job(1, read.PhaseFailed)},
			want: []want{{phase: read.PhaseFailed, attempt: 1, keep: 1}}},
		{name: "FailedStaysUnderTheSameRetry", records: []v1alpha1.ReclaimStatus{recorded(read.PhaseFailed, 1, "r1")}, jobs: []*read.SeenJob{job(1, read.PhaseFailed)},
			facts: func(f *Facts) { f.Retry = "r1" }, want: []want{{phase: read.PhaseFailed, attempt: 1, keep: 1}}},
		{name: "FailedInObjectModeLetsItsObjectGo", records: []v1alpha1.ReclaimStatus{recorded(read.PhaseFailed, 1, "r1")}, jobs: []*read.SeenJob{job(1, read.PhaseFailed)},
			facts: func(f *Facts) { f.Retry, f.ObjectMode = "r1", true }, want: []want{{phase: read.PhaseFailed, attempt: 1}}},
		{name: "FailedAndItsJobGone", records: []v1alpha1.ReclaimStatus{recorded(read.PhaseFailed, 1, "")},
			want: []want{{phase: read.PhaseFailed, attempt: 1}}},
		{name: "ANewRetryIsANewAttempt", records: []v1alpha1.ReclaimStatus{recorded(read.PhaseFailed, 1, "r1")}, jobs: []*read.SeenJob{job(1, read.PhaseFailed)},
			facts: func(f *Facts) { f.Retry = "r2" }, want: []want{{phase: read.PhasePending, attempt: 2, compose: true}}},
		{name: "BackInTheSpecEndsIt", records: []v1alpha1.ReclaimStatus{recorded(read.PhaseRunning, 1, "")}, jobs: []*read.SeenJob{job(1, read.PhaseRunning)},
			wanted: []string{"org/gone"}, wantNone: true},
		{name: "AnotherVolumeEndsIt", records: []v1alpha1.ReclaimStatus{recorded(read.PhaseRunning, 1, "")}, jobs: []*read.SeenJob{job(1, read.PhaseRunning)},
			facts: func(f *Facts) { f.RecordedPVC = "old-vol" }, wantNone: true},
		{name: "RecordedRunsOnUnderRetain", reclaim: read.ReclaimRetain, records: []v1alpha1.ReclaimStatus{recorded(read.PhasePending, 1, "")},
			want: []want{{phase: read.PhasePending, attempt: 1, compose: true}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := &read.Observation{Recorded: c.models, Reclaiming: c.records, Reclaims: map[string][]*read.SeenJob{}, Reports: c.reports, RecordedPVC: "vol"}
			for _, j := range c.jobs {
				o.Reclaims[j.Model] = append(o.Reclaims[j.Model], j)
			}
			f := &Facts{Observation: o, NameBase: "md", MountPath: "/models", PVC: "pvc", Storage: read.StorageState{UID: "vol"}}
			if c.facts != nil {
				c.facts(f)
			}
			wanted := map[string]bool{"org/kept": true}
			for _, n := range c.wanted {
				wanted[n] = true
			}
			if c.wantNone {
				c.want = nil
			}
			var got []want
			for _, r := range f.DecideReclaims(wanted, c.reclaim, who) {
				g := want{phase: r.Status.Phase, attempt: r.Status.Attempt, compose: r.Compose, freed: r.Freed}
				if r.Keep != nil {
					g.keep = r.Keep.Attempt
				}
				if r.Status.BytesFreed != nil {
					g.bytes = *r.Status.BytesFreed
				}
				if r.Status.Name != "org/gone" || r.Status.Path != "/models/org/gone" || r.Hash != hash(r.Status.Attempt) ||
					r.Status.JobName != naming.JobName("md", "reclaim-org/gone", r.Hash) {
					t.Errorf("reclaim %+v: not org/gone's, under its attempt's hash", r.Status)
				}
				got = append(got, g)
			}
			if diff := cmp.Diff(c.want, got, cmp.AllowUnexported(want{})); diff != "" {
				t.Errorf("reclaims (-want +got):\n%s", diff)
			}
		})
	}
}

// TestReclaimKeepsADirectoryHoldingAWantedOne: a removed model "org" holds
// the directory of a model "org/name" still wanted; it is kept whole.
func TestReclaimKeepsADirectoryHoldingAWantedOne(t *testing.T) {
	f := &Facts{Observation: &read.Observation{Recorded: map[string]read.RecordedModel{"org": {Name: "org"}}, Reclaims: map[string][]*read.SeenJob{}, RecordedPVC: "vol"},
		MountPath: "/models", Storage: read.StorageState{UID: "vol"}}
	for name, claims := range map[string]map[string][]string{"its own": nil, "a peer's": {"org/name": {"other"}}} {
		wanted := map[string]bool{}
		if claims == nil {
			wanted["org/name"] = true
		}
		f.Claims = claims
		got := f.DecideReclaims(wanted, read.ReclaimDelete, naming.Owner{PVCUID: "vol"})
		if len(got) != 1 || got[0].Status.Phase != read.PhaseKept || got[0].Compose {
			t.Errorf("%s model inside: %+v, want org Kept and no Job", name, got)
		}
	}
}

// TestReclaimHistoryIsBounded: status keeps the last maxReclaimHistory
// finished reclaims, and every one still under way.
func TestReclaimHistoryIsBounded(t *testing.T) {
	var records []v1alpha1.ReclaimStatus
	for i := range maxReclaimHistory + 10 {
		records = append(records, v1alpha1.ReclaimStatus{Name: fmt.Sprintf("org/m%03d", i), Phase: read.PhaseCompleted, Attempt: 1})
	}
	records = append(records, v1alpha1.ReclaimStatus{Name: "org/pending", Phase: read.PhasePending, Attempt: 1})
	f := &Facts{Observation: &read.Observation{Reclaiming: records, Reclaims: map[string][]*read.SeenJob{}, RecordedPVC: "vol"},
		MountPath: "/models", Storage: read.StorageState{UID: "vol"}}
	got := ReclaimStatuses(f.DecideReclaims(map[string]bool{}, read.ReclaimDelete, naming.Owner{PVCUID: "vol"}))
	if len(got) != maxReclaimHistory+1 || got[0].Name != "org/m010" || got[len(got)-1].Name != "org/pending" {
		t.Fatalf("kept %d, from %s to %s; want the last %d finished and the pending one", len(got), got[0].Name, got[len(got)-1].Name, maxReclaimHistory)
	}
}
