package decide

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hfops/function-hf-download/apis/v1alpha1"
	"github.com/hfops/function-hf-download/internal/naming"
	"github.com/hfops/function-hf-download/internal/read"
	"github.com/hfops/function-hf-download/script"
)

// TestDecideCheck is the check of a completed model's revision as a table:
// from the model's decision, its record, the observed check Jobs and what
// their pods reported, the token and the clock, to the check's phase and
// number, whether its Job is built or kept, and when the next is due.
// resync_test.go in main drives the same decisions through whole calls.
func TestDecideCheck(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	const attempt = "0123456789"
	checked := now.Add(-25 * time.Hour)
	commit := "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	rec := func(rs *v1alpha1.ResyncStatus, at time.Time) read.RecordedModel {
		return read.RecordedModel{Name: "org/m", Hash: attempt, Attempt: 1, Phase: read.PhaseCompleted, CheckedAt: at, Resync: rs,
			Summary: &script.Summary{Commit: commit, Files: 1}}
	}
	job := func(n int64, phase string) *read.SeenJob {
		h := naming.CheckHash(attempt, n)
		return &read.SeenJob{Key: naming.CheckKey("org/m", h), Model: "org/m", Hash: h, Phase: phase,
			Job: &batchv1.Job{ObjectMeta: metav1.ObjectMeta{UID: "check"}}}
	}
	type want struct {
		phase, message string
		check          int64
		build, keep    bool
		due            time.Time
		none           bool
	}
	cases := []struct {
		name     string
		revision string
		every    time.Duration
		state    State
		rec      read.RecordedModel
		jobs     []*read.SeenJob
		report   *read.PodReport
		facts    func(f *Facts)
		want     want
	}{
		{name: "OffChecksNothing", state: StateCompleted, rec: rec(nil, checked), want: want{none: true}},
		{name: "ACommitNeverMoves", revision: commit, every: time.Hour, state: StateCompleted, rec: rec(nil, checked), want: want{none: true}},
		{name: "NotCompletedIsNotChecked", every: time.Hour, state: StateRunning, rec: rec(nil, checked), want: want{none: true}},
		{name: "NotDueSaysWhen", every: 48 * time.Hour, state: StateCompleted, rec: rec(nil, checked),
			want: want{due: checked.Add(48 * time.Hour)}},
		{name: "DueStartsCheckOne", every: 24 * time.Hour, state: StateCompleted, rec: rec(nil, checked),
			want: want{phase: read.PhasePending, message: "starting", check: 1, build: true}},
		{name: "DueWithoutTheTokenWaits", every: 24 * time.Hour, state: StateCompleted, rec: rec(nil, checked),
			facts: func(f *Facts) { f.Token = read.TokenState{Problem: "no Secret"} },
			want:  want{phase: read.PhasePending, message: "waiting for the Hugging Face token: no Secret", check: 1}},
		{name: "DueBeforeTheScriptWaits", every: 24 * time.Hour, state: StateCompleted, rec: rec(nil, checked),
			facts: func(f *Facts) { f.Prerequisite = "waiting for the ConfigMap" },
			want:  want{phase: read.PhasePending, message: "waiting for the ConfigMap", check: 1}},
		{name: "RunningIsKept", every: 24 * time.Hour, state: StateCompleted,
			rec: rec(&v1alpha1.ResyncStatus{Check: 2, Phase: read.PhaseRunning}, checked), jobs: []*read.SeenJob{job(2, read.PhaseRunning)},
			want: want{phase: read.PhaseRunning, check: 2, keep: true}},
		{name: "RunningWhoseJobWasLostStartsOver", every: 24 * time.Hour, state: StateCompleted,
			rec:  rec(&v1alpha1.ResyncStatus{Check: 2, Phase: read.PhaseRunning}, checked),
			want: want{phase: read.PhasePending, message: "starting", check: 3, build: true}},
		{name: "CompletedWithoutAReportClaimsNoCommit", every: 24 * time.Hour, state: StateCompleted,
			rec: rec(&v1alpha1.ResyncStatus{Check: 1, Phase: read.PhaseRunning}, checked), jobs: []*read.SeenJob{job(1, read.PhaseCompleted)},
			want: want{phase: read.PhaseFailed, check: 1,
				message: "the check's Job completed, but what its pod reported was not read: the commit on disk is not known until the next check"}},
		{name: "FailedKeepsItsJob", every: 24 * time.Hour, state: StateCompleted,
			rec: rec(&v1alpha1.ResyncStatus{Check: 1, Phase: read.PhaseRunning}, checked),
			jobs: []*read.SeenJob{func() *read.SeenJob {
				j := job(1, read.PhaseFailed)
				j.Message = "BackoffLimitExceeded"
				return j
			}()},
			report: &read.PodReport{Failure: "download of org/m@main failed: 500"},
			want:   want{phase: read.PhaseFailed, check: 1, keep: true, message: "download of org/m@main failed: 500; Job BackoffLimitExceeded"}},
		{name: "FailedIsTriedAgainAnHourLater", every: 24 * time.Hour, state: StateCompleted,
			rec:  rec(&v1alpha1.ResyncStatus{Check: 1, Phase: read.PhaseFailed, FailedAt: now.Add(-30 * time.Minute).Format(time.RFC3339)}, checked),
			want: want{phase: read.PhaseFailed, check: 1, due: now.Add(30 * time.Minute)}},
		{name: "FailedAnHourAgoStartsTheNext", every: 24 * time.Hour, state: StateCompleted,
			rec:  rec(&v1alpha1.ResyncStatus{Check: 1, Phase: read.PhaseFailed, FailedAt: now.Add(-time.Hour).Format(time.RFC3339)}, checked),
			want: want{phase: read.PhasePending, message: "starting", check: 2, build: true}},
		{name: "AnotherAttemptsRecordIsNotCarried", every: 24 * time.Hour, state: StateCompleted,
			rec: func() read.RecordedModel {
				r := rec(&v1alpha1.ResyncStatus{Check: 5, Phase: read.PhaseRunning}, checked)
				r.Hash = "9999999999"
				return r
			}(),
			want: want{due: now.Add(24 * time.Hour)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := &read.Observation{Checks: map[string][]*read.SeenJob{"org/m": tc.jobs}, Reports: map[string]read.PodReport{}}
			if tc.report != nil {
				o.Reports["check"] = *tc.report
			}
			f := &Facts{Observation: o, NameBase: "md", ResyncEvery: tc.every, Now: now}
			if tc.facts != nil {
				tc.facts(f)
			}
			d := Decision{Status: ModelStatus{Name: "org/m", Hash: attempt, Attempt: 1, State: tc.state}}
			m := &read.ModelSpec{Model: v1alpha1.Model{Name: "org/m", Revision: read.OrDefault(tc.revision, "main")}}
			c := f.DecideCheck(&d, m, tc.rec, true)
			rs := d.Status.Resync
			if tc.want.none {
				if c.Model != "" || rs != nil || !d.Status.CheckedAt.IsZero() {
					t.Fatalf("a check (%+v, %+v, checked %v), want none", c, rs, d.Status.CheckedAt)
				}
				return
			}
			got := want{due: c.Due, build: c.Build, keep: c.Keep != nil}
			if rs != nil {
				got.phase, got.message, got.check = rs.Phase, rs.Message, rs.Check
				if rs.JobName != naming.JobName("md", "resync-org/m", naming.CheckHash(attempt, rs.Check)) && c.Due.IsZero() {
					t.Errorf("the check's Job is %q, not its number's", rs.JobName)
				}
			}
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(want{})); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
