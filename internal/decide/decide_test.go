package decide

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/structpb"
	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/hfops/function-hf-download/apis/v1alpha1"
	"github.com/hfops/function-hf-download/input/v1beta1"
	"github.com/hfops/function-hf-download/internal/naming"
	"github.com/hfops/function-hf-download/internal/read"
	"github.com/hfops/function-hf-download/script"
)

// TestDecideTransitions is the state machine of one model as a table: from
// the facts of a call (the recorded status, the observed Jobs, the token,
// the volume, the directory, the ConfigMap) to the state, the attempt, and
// what is composed: the current attempt's Job (anew, or as observed) and the
// Jobs kept as they are. The simulator and the promise tests drive the same
// decisions through whole calls.
func TestDecideTransitions(t *testing.T) {
	spec := &read.XRSpec{ModelDownloadSpec: v1alpha1.ModelDownloadSpec{StoragePVC: "pvc"}}
	m := &read.ModelSpec{Model: v1alpha1.Model{Name: "org/m", Revision: "main", RepoType: "model", RetryCount: 2}}
	plat, errs := read.ResolvePlatform(&v1beta1.Input{}, "downloader:v1")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	token := read.TokenState{Digest: naming.TokenDigest([]byte("hf_token"))}
	// The digests of the function's script and Job template are the build
	// stage's; any stand for them here.
	digests := naming.Digests{
		XR:       naming.HashXR(&spec.ModelDownloadSpec, naming.Owner{Namespace: "ns", Name: "md", XRUID: "uid", PVCUID: "vol"}, plat.CPU, plat.Memory, ""),
		Platform: plat.Digest, PlatformIntent: plat.IntentDigest, Script: []byte("script"), Template: []byte("template"),
	}
	withToken := digests
	withToken.Token = token.Digest
	h := naming.HashModel(&m.Model, withToken)
	hashOf := func(n int64) string { return naming.JobHash(h.Spec, n) }

	// job is attempt n of the current spec, observed in phase.
	job := func(n int64, phase string, mods ...func(*read.SeenJob)) *read.SeenJob {
		j := &read.SeenJob{
			Key: naming.ResourceKey(m.Name, hashOf(n)), Model: m.Name, Config: h.Config, Hash: hashOf(n), Attempt: n, Phase: phase,
			Manifest: &structpb.Struct{Fields: map[string]*structpb.Value{"metadata": structpb.NewStructValue(&structpb.Struct{
				Fields: map[string]*structpb.Value{"name": structpb.NewStringValue(naming.JobName("md", m.Name, hashOf(n)))}})}},
			Job: &batchv1.Job{ObjectMeta: metav1.ObjectMeta{UID: types.UID("uid-" + read.Itoa(n))}},
		}
		for _, mod := range mods {
			mod(j)
		}
		return j
	}
	deleting := func(j *read.SeenJob) { j.Deleting = true }
	ofAnotherToken := func(j *read.SeenJob) {
		j.Config, j.Hash, j.Key = "0ther0c0nf1g", "abcdef0123", naming.ResourceKey(m.Name, "abcdef0123")
	}
	// rec is the recorded entry of attempt n.
	rec := func(n int64, phase string) read.RecordedModel {
		return read.RecordedModel{Name: m.Name, Hash: hashOf(n), Attempt: n, Phase: phase, ContentHash: h.Content, IntentHash: h.Intent,
			Summary: &script.Summary{Commit: "c0ffee"}}
	}
	olderPeer := Directories{m.Name: {{Name: "older", Created: "2000-01-01T00:00:00Z", XRName: "older", Content: "other"}}}
	sameContentRunning := Directories{m.Name: {{Name: "older", Created: "2000-01-01T00:00:00Z", XRName: "older", Content: h.Content, Running: true}}}

	// want is what a decision comes to: the job and keep fields name Jobs
	// by their attempt (0: none).
	type want struct {
		state   State
		attempt int64
		compose bool
		job     int64
		keep    []int64
	}
	cases := []struct {
		name    string
		invalid bool
		facts   func(*Facts)
		rec     *read.RecordedModel
		jobs    []*read.SeenJob
		want    want
	}{
		{name: "NewModelStarts", want: want{state: StateStarting, attempt: 1, compose: true}},
		{name: "ItsJobRuns", jobs: []*read.SeenJob{job(1, read.PhaseRunning)},
			want: want{state: StateRunning, attempt: 1, compose: true, job: 1}},
		{name: "ItsJobCompletes", rec: new(rec(1, read.PhaseRunning)), jobs: []*read.SeenJob{job(1, read.PhaseCompleted)},
			want: want{state: StateCompleted, attempt: 1, compose: true, job: 1}},
		{name: "ItsJobFails", rec: new(rec(1, read.PhaseRunning)), jobs: []*read.SeenJob{job(1, read.PhaseFailed)},
			want: want{state: StateFailed, attempt: 1, compose: true, job: 1}},
		{name: "CompletedStaysWhenTheTTLDeletedItsJob", rec: new(rec(1, read.PhaseCompleted)),
			want: want{state: StateCompleted, attempt: 1}},
		{name: "CompletedStaysWhileTheTTLDeletesItsJob", rec: new(rec(1, read.PhaseCompleted)), jobs: []*read.SeenJob{job(1, read.PhaseCompleted, deleting)},
			want: want{state: StateCompleted, attempt: 1}},
		{name: "FailedStaysWhenItsJobIsGone", rec: new(rec(1, read.PhaseFailed)),
			want: want{state: StateFailed, attempt: 1}},
		{name: "ARetryStartsTheNextAttempt", rec: new(rec(1, read.PhaseFailed)), facts: func(f *Facts) { f.Retry = "again" },
			want: want{state: StateStarting, attempt: 2, compose: true}},
		{name: "AJobLostMidRunStartsTheNextAttempt", rec: new(rec(1, read.PhaseRunning)),
			want: want{state: StateStarting, attempt: 2, compose: true}},
		{name: "AJobKilledMidRunIsWaitedFor", rec: new(rec(1, read.PhaseRunning)), jobs: []*read.SeenJob{job(1, read.PhaseRunning, deleting)},
			want: want{state: StateWaiting, attempt: 2}},
		{name: "ANewSpecStartsTheNextAttempt", rec: &read.RecordedModel{Name: m.Name, Hash: "0123456789", Attempt: 3, Phase: read.PhaseCompleted, ContentHash: "other", IntentHash: "other"},
			want: want{state: StateStarting, attempt: 4, compose: true}},
		{name: "InObjectModeACompletedJobIsLeftToItsTTL", rec: new(rec(1, read.PhaseCompleted)), jobs: []*read.SeenJob{job(1, read.PhaseCompleted)},
			facts: func(f *Facts) { f.ObjectMode = true }, want: want{state: StateCompleted, attempt: 1}},
		{name: "AnUpgradeKeepsACompletion", rec: &read.RecordedModel{Name: m.Name, Hash: "0123456789", Attempt: 1, Phase: read.PhaseCompleted, ContentHash: h.Content, IntentHash: h.Intent},
			want: want{state: StateCompleted, attempt: 1}},
		{name: "InvalidModel", invalid: true, want: want{state: StateInvalid}},
		{name: "NoVolumeKeepsItsJobs", rec: new(rec(1, read.PhaseCompleted)), jobs: []*read.SeenJob{job(1, read.PhaseRunning)},
			facts: func(f *Facts) { f.Storage.Problem = "no PVC" }, want: want{state: StateWaitingForStorage, attempt: 1, keep: []int64{1}}},
		{name: "AnOlderModelDownloadsDirectoryBlocks", jobs: []*read.SeenJob{job(1, read.PhaseRunning)},
			facts: func(f *Facts) { f.Dirs = olderPeer }, want: want{state: StateBlocked, attempt: 1}},
		{name: "TheSameContentDownloadingElsewhereIsWaitedFor", facts: func(f *Facts) { f.Dirs = sameContentRunning },
			want: want{state: StateWaiting, attempt: 1}},
		{name: "NoScriptYet", facts: func(f *Facts) { f.Prerequisite = "waiting for the ConfigMap" },
			want: want{state: StateWaiting, attempt: 1}},
		{name: "NoTokenNoJob", facts: func(f *Facts) { f.Token.Problem = "no Secret" },
			want: want{state: StateWaitingForToken}},
		{name: "NoTokenItsJobRunsOn", jobs: []*read.SeenJob{job(1, read.PhaseRunning)}, facts: func(f *Facts) { f.Token.Problem = "no Secret" },
			want: want{state: StateRunning, attempt: 1, job: 1, keep: []int64{1}}},
		{name: "NoTokenAnOlderTokensJobRunsOn", jobs: []*read.SeenJob{job(1, read.PhaseRunning, ofAnotherToken)}, facts: func(f *Facts) { f.Token.Problem = "no Secret" },
			want: want{state: StateWaitingForToken, attempt: 1, keep: []int64{1}}},
		{name: "NoTokenACompletionOnTheVolumeHolds", rec: new(rec(1, read.PhaseCompleted)), facts: func(f *Facts) { f.Token.Problem = "no Secret" },
			want: want{state: StateCompleted, attempt: 1}},
		{name: "NoTokenACompletionOnAnotherVolumeDoesNot", rec: new(rec(1, read.PhaseCompleted)),
			facts: func(f *Facts) { f.Token.Problem, f.RecordedPVC = "no Secret", "old-vol" }, want: want{state: StateWaitingForToken, attempt: 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := &read.Observation{Jobs: map[string][]*read.SeenJob{}, ByKey: map[string]*read.SeenJob{}, RecordedPVC: "vol"}
			for _, j := range c.jobs {
				o.Jobs[m.Name] = append(o.Jobs[m.Name], j)
				o.ByKey[j.Key] = j
			}
			f := &Facts{Observation: o, NameBase: "md", MountPath: plat.MountPath, PVC: spec.StoragePVC, Token: token,
				Storage: read.StorageState{UID: "vol"}, Digests: digests,
				Self: DirUser{Name: "md", Created: "2010-01-01T00:00:00Z", XRName: "md"}}
			model := *m
			if c.invalid {
				model.Errs = field.ErrorList{field.Invalid(read.ModelsPath.Index(0).Child("revision"), "-x", "must not start with '-'")}
			}
			if c.facts != nil {
				c.facts(f)
			}
			var r read.RecordedModel
			if c.rec != nil {
				r = *c.rec
			}
			d := f.Decide(&model, r, c.rec != nil)

			got := want{state: d.Status.State, attempt: d.Status.Attempt, compose: d.Compose}
			if d.Job != nil {
				got.job = d.Job.Attempt
			}
			for _, k := range d.Keep {
				got.keep = append(got.keep, k.Attempt)
			}
			if diff := cmp.Diff(c.want, got, cmp.AllowUnexported(want{})); diff != "" {
				t.Errorf("decision (-want +got):\n%s", diff)
			}
			if d.Compose && d.Status.Hash != hashOf(d.Attempt.Number) {
				t.Errorf("composes attempt %d under hash %q, want %q", d.Attempt.Number, d.Status.Hash, hashOf(d.Attempt.Number))
			}
			if d.WantsSlot() != (d.Compose && c.want.job == 0) {
				t.Errorf("wants a slot: %v, want it exactly when it starts a new Job", d.WantsSlot())
			}
		})
	}
}

// TestStatesRender: every state shows as one phase, and only a completed
// model lets the XR be Ready.
func TestStatesRender(t *testing.T) {
	want := map[State]string{
		StateInvalid: read.PhaseFailed, StateWaitingForStorage: read.PhasePending, StateBlocked: read.PhasePending,
		StateWaitingForToken: read.PhasePending, StateWaiting: read.PhasePending, StateQueued: read.PhasePending,
		StateStarting: read.PhasePending, StateRunning: read.PhaseRunning, StateCompleted: read.PhaseCompleted, StateFailed: read.PhaseFailed,
	}
	for s := StateInvalid; s <= StateFailed; s++ {
		if got := s.Phase(); got != want[s] {
			t.Errorf("state %d shows as %q, want %q", s, got, want[s])
		}
	}
	if len(want) != int(StateFailed) {
		t.Errorf("the table covers %d states of %d", len(want), StateFailed)
	}
}
