package decide

import (
	"fmt"
	"path"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/hfops/function-hf-download/internal/naming"
	"github.com/hfops/function-hf-download/internal/read"
)

// The state machine of one model. decide is a pure function: from the facts
// of a call (what Crossplane observed and fetched, what status recorded) to
// the model's state, its current attempt, the Jobs it keeps as observed and
// whether the current attempt's Job is composed. The composer (main's
// plan.go) does what a decision says, and the queue (queue.go) admits the
// models that want to start a Job, in spec order. What status promises (the
// README's "What status promises") is decided here:
//
//   - A model is Completed only if a Job of the current attempt completed on
//     the current volume, or the recorded completion names that attempt. An
//     attempt's Job name is its own (naming.JobHash): a spec that comes back to an
//     earlier value, a Job killed or lost mid-run, and a retry each start a
//     new attempt, so an old Job, orphaned or lingering, is never taken for
//     the current one.
//   - Completed and Failed are remembered: a finished Job that its TTL (or
//     anyone) removed is not made again for the same attempt.
//   - Nothing is hidden while the function waits (token unreadable, PVC
//     missing, directory taken): a model whose content or volume changed is
//     not Completed.

// State is where a model stands. Its phase in status, whether it is
// settled and whether the XR may be Ready follow from it alone.
type State int

const (
	// StateInvalid: the model's spec is invalid; it is skipped.
	StateInvalid State = iota + 1
	// StateWaitingForStorage: the PVC is not there (or not bound) yet.
	StateWaitingForStorage
	// StateBlocked: an older ModelDownload puts other content into the
	// model's directory.
	StateBlocked
	// StateWaitingForToken: the token is unreadable and no Job of the
	// model's spec exists.
	StateWaitingForToken
	// StateWaiting: a new Job cannot start yet: the script's ConfigMap or
	// the pods' ServiceAccount is not there, a Job of the model is being
	// deleted, or another ModelDownload downloads the same content into
	// the directory.
	StateWaiting
	// StateQueued: a new Job could start, but a limit holds it back.
	StateQueued
	// StateStarting: the Job is composed, no pod of it runs yet.
	StateStarting
	StateRunning
	StateCompleted
	StateFailed
)

// phase is the state as status.models[].phase shows it.
func (s State) Phase() string {
	switch s {
	case StateRunning:
		return read.PhaseRunning
	case StateCompleted:
		return read.PhaseCompleted
	case StateFailed, StateInvalid:
		return read.PhaseFailed
	default:
		return read.PhasePending
	}
}

// terminal: the model's download ended, as it will stay.
func (s State) Terminal() bool { return read.Terminal(s.Phase()) }

// jobState is the state a Job of the current attempt puts a model in, by
// the Job's phase (read.JobPhase): Pending is starting.
func jobState(phase string) State { return stateOfPhase(phase, StateStarting) }

// PhaseState is what a recorded phase says of a model: Pending is waiting
// (0 for what is no phase).
func PhaseState(phase string) State { return stateOfPhase(phase, StateWaiting) }

func stateOfPhase(phase string, pending State) State {
	switch phase {
	case read.PhasePending:
		return pending
	case read.PhaseRunning:
		return StateRunning
	case read.PhaseCompleted:
		return StateCompleted
	case read.PhaseFailed:
		return StateFailed
	}
	return 0
}

// Facts are the facts every model of a call shares.
type Facts struct {
	*read.Observation
	// NameBase starts every Job name: the XR's name, or its claim's.
	NameBase string
	// MountPath is where the PVC is mounted in the download pods; pvc is
	// its name.
	MountPath, PVC string
	Token          read.TokenState
	Storage        read.StorageState
	// digests are what every model's hashes cover but the model and the
	// token.
	Digests naming.Digests
	Dirs    Directories
	// Claims are the model names the other ModelDownloads list on the
	// PVC (PeerClaims), which no reclaim removes.
	Claims     map[string][]string
	Self       DirUser
	Retry      string
	ObjectMode bool
	// prerequisite says why no new Job may start yet, whatever the model:
	// the script's ConfigMap or the pods' ServiceAccount is not there.
	Prerequisite string
	// ResyncEvery is settings.resyncInterval (0: never); Now is the
	// call's time, which says whether a check is due.
	ResyncEvery time.Duration
	Now         time.Time
}

// decision is what the function does about one model.
type Decision struct {
	// status is the model's entry; status.state says where it stands.
	Status ModelStatus
	// attempt is the current attempt, and job its Job as observed (nil:
	// none yet).
	Attempt naming.Attempt
	Job     *read.SeenJob
	// compose: the current attempt's Job is composed as the function
	// builds it (a new one when job is nil). Then hashes are the model's.
	Compose bool
	Hashes  naming.Hashes
	// keep are observed Jobs composed again as they are.
	Keep []*read.SeenJob
	// conflicts are the notes on the model's directory, for the
	// DirectoryConflict condition.
	Conflicts []string
}

// WantsSlot: the decision starts a new Job, which the queue may hold back.
func (d *Decision) WantsSlot() bool { return d.Compose && d.Job == nil }

// queued holds a model back that wanted to start a Job.
func (d *Decision) Queued(limit QueueLimit, why string) {
	d.Compose = false
	d.Status.State, d.Status.Message, d.Status.Queue, d.Status.Progress = StateQueued, why, limit, nil
}

// decide is the one decision about model m (rec, hasRec: its recorded
// status).
func (f *Facts) Decide(m *read.ModelSpec, rec read.RecordedModel, hasRec bool) Decision {
	if len(m.Errs) > 0 {
		return Decision{Status: ModelStatus{Name: m.Name, State: StateInvalid, Message: joinErrors(m.Errs)}}
	}
	path := path.Join(f.MountPath, m.Name)
	if !f.Storage.Ready() {
		// No volume, so nothing is Completed; the Jobs the model has stay.
		return Decision{
			Status: ModelStatus{Name: m.Name, Path: path, State: StateWaitingForStorage, Message: f.Storage.Problem,
				Attempt: f.lastAttempt(m, rec)},
			Keep: f.Jobs[m.Name],
		}
	}

	h := f.ModelHashes(m)
	self := f.Self
	self.Content, self.describe = h.Content, describeContent(m)
	verdict := f.Dirs.judge(self, m.Name)
	notes := verdict.notes(m.Name, f.PVC, self)
	if verdict.blockedBy != nil {
		// Not this one's directory: no Job, and the Jobs it had go.
		return Decision{
			Status: ModelStatus{Name: m.Name, Path: path, State: StateBlocked, Message: "directory conflict: " + notes[0],
				ContentHash: h.Content, IntentHash: h.Intent, Attempt: f.lastAttempt(m, rec)},
			Conflicts: notes,
		}
	}
	var d Decision
	switch {
	case !f.Token.Usable():
		d = f.withoutToken(m, h, rec)
	default:
		var kept bool
		if d, kept = f.acrossUpgrade(m, h, rec, hasRec); !kept {
			d = f.current(m, h, rec, hasRec, verdict)
		}
	}
	// A kept record says where its files are.
	d.Status.Path = read.OrDefault(d.Status.Path, path)
	d.Conflicts = notes
	return d
}

// ModelHashes are m's hashes, the token's included.
func (f *Facts) ModelHashes(m *read.ModelSpec) naming.Hashes {
	digests := f.Digests
	digests.Token = f.Token.Digest
	return naming.HashModel(&m.Model, digests)
}

// current decides on the current attempt (attemptFor): its recorded outcome
// when its Job is gone, the Job as observed, or a new Job once nothing
// stands in the way.
func (f *Facts) current(m *read.ModelSpec, h naming.Hashes, rec read.RecordedModel, hasRec bool, verdict dirVerdict) Decision {
	a := f.attemptFor(m, h, rec, hasRec)
	d := Decision{
		Attempt: a,
		Hashes:  h,
		Job:     f.ByKey[naming.ResourceKey(m.Name, a.Hash)],
		Status: ModelStatus{
			Name:        m.Name,
			JobName:     naming.JobName(f.NameBase, m.Name, a.Hash),
			Hash:        a.Hash,
			Attempt:     a.Number,
			ContentHash: h.Content,
			IntentHash:  h.Intent,
		},
	}
	sameAttempt := hasRec && rec.Hash == a.Hash
	if oj := d.Job; sameAttempt && PhaseState(rec.Phase).Terminal() && (oj == nil || oj.Deleting || f.ObjectMode) {
		// The Job is gone (its TTL, or anyone), going, or, in Object mode,
		// left to its TTL: provider-kubernetes would make a deleted Job
		// again while its Object manages it, so the Object goes once the
		// outcome is recorded (desireJob made it observe only). Status
		// is the memory: the model stays as it ended and no Job comes back.
		d.Job = nil
		remembered(&d.Status, rec)
		return d
	}
	if d.Job == nil {
		if why := f.mustWait(m, verdict); why != "" {
			d.Status.State, d.Status.Message = StateWaiting, why
			return d
		}
		d.Status.State = StateStarting
	} else {
		d.Status.State, d.Status.Message = jobState(d.Job.Phase), d.Job.Message
	}
	d.Compose = true
	f.outcome(&d.Status, d.Job, rec, sameAttempt)
	return d
}

// acrossUpgrade keeps a model's recorded attempt when only the function
// changed (its version, the script, the Job's template, the default image)
// since it was recorded: a completed model stays completed, with its commit
// and no new Job; one whose Job still runs (or just completed) finishes on
// that Job, kept as it is. Anything else the user or the platform changed
// moves the intent, and then the attempt moves on as attemptFor says. A
// record that an older version wrote has no intent: for it, as while the
// token is unreadable, the content and the volume decide.
func (f *Facts) acrossUpgrade(m *read.ModelSpec, h naming.Hashes, rec read.RecordedModel, hasRec bool) (Decision, bool) {
	if !hasRec || rec.Attempt == 0 || !naming.IsSpecHash(rec.Hash) || f.RecordedPVC != f.Storage.UID {
		return Decision{}, false
	}
	if rec.IntentHash != h.Intent && (rec.IntentHash != "" || rec.ContentHash != h.Content) {
		return Decision{}, false
	}
	oj := f.ByKey[naming.ResourceKey(m.Name, rec.Hash)]
	onJob := oj != nil && !oj.Deleting && oj.Phase != read.PhaseFailed
	// Last, as it hashes: when the function did not change either, the
	// attempt goes on as attemptFor says.
	if PhaseState(rec.Phase) != StateCompleted && !onJob || naming.JobHash(h.Spec, rec.Attempt) == rec.Hash {
		return Decision{}, false
	}
	d := Decision{
		Attempt: naming.Attempt{Number: rec.Attempt, Hash: rec.Hash},
		Job:     oj,
		Status: ModelStatus{
			Name:        m.Name,
			JobName:     naming.JobName(f.NameBase, m.Name, rec.Hash),
			Hash:        rec.Hash,
			Attempt:     rec.Attempt,
			ContentHash: h.Content,
			IntentHash:  h.Intent,
		},
	}
	if oj != nil {
		d.Keep = []*read.SeenJob{oj}
	}
	if PhaseState(rec.Phase) == StateCompleted {
		remembered(&d.Status, rec)
		return d, true
	}
	d.Status.State, d.Status.Message = jobState(oj.Phase), oj.Message
	f.outcome(&d.Status, oj, rec, true)
	return d, true
}

// withoutToken starts no new Job (the token is unreadable) but keeps the
// ones that exist: the newest Job of the current spec (the token aside) as
// it is, and Jobs of older specs until their successor can start. A
// recorded completion holds only for the same content on the same volume.
func (f *Facts) withoutToken(m *read.ModelSpec, h naming.Hashes, rec read.RecordedModel) Decision {
	why := "waiting for the Hugging Face token: " + f.Token.Problem
	var current *read.SeenJob
	for _, oj := range f.Jobs[m.Name] {
		if oj.Config != h.Config || !naming.IsSpecHash(oj.Hash) {
			continue
		}
		if current == nil || oj.Hash == rec.Hash || current.Hash != rec.Hash && oj.Attempt > current.Attempt {
			current = oj
		}
	}
	var d Decision
	for _, oj := range f.Jobs[m.Name] {
		// Only one Job of the current spec is kept (an older token's may
		// linger); a hand-edited spec-hash label names no Job, so such a
		// Job is kept as one of an older spec.
		if oj == current || oj.Config != h.Config || !naming.IsSpecHash(oj.Hash) {
			d.Keep = append(d.Keep, oj)
		}
	}
	d.Status = ModelStatus{Name: m.Name, State: StateWaitingForToken, Message: why, ContentHash: h.Content,
		Attempt: f.lastAttempt(m, rec)}
	if current != nil {
		d.Attempt, d.Job = naming.Attempt{Number: current.Attempt, Hash: current.Hash}, current
		d.Status.JobName, d.Status.Hash, d.Status.Attempt = naming.JobName(f.NameBase, m.Name, current.Hash), current.Hash, current.Attempt
		same := rec.Hash == current.Hash
		if same {
			d.Status.IntentHash = rec.IntentHash
		}
		if same && PhaseState(rec.Phase).Terminal() && (current.Deleting || f.ObjectMode) {
			remembered(&d.Status, rec)
			return d
		}
		d.Status.State = jobState(current.Phase)
		f.outcome(&d.Status, current, rec, same)
		if d.Status.State != StateFailed {
			d.Status.Message = why
		}
		return d
	}
	if PhaseState(rec.Phase).Terminal() && rec.Hash != "" && rec.ContentHash == h.Content && f.RecordedPVC == f.Storage.UID {
		// What is on disk has not changed; without the token the function
		// cannot tell whether the token did, so it keeps what it recorded
		// and says why nothing new starts.
		d.Status = ModelStatus{Name: rec.Name, JobName: rec.JobName, Hash: rec.Hash, Attempt: rec.Attempt,
			State: PhaseState(rec.Phase), Message: why, Path: rec.Path, ContentHash: rec.ContentHash,
			IntentHash: rec.IntentHash, Retry: rec.Retry, summary: rec.Summary}
	}
	return d
}

// attemptFor decides which attempt is current. The recorded one goes on
// unless it failed and a retry was asked for, or its Job was killed or lost
// before it finished; a new spec starts the attempt after every one recorded
// or observed. With no record at all (status not written yet, or written by
// an older version), a Job observed for this very spec is the current one.
func (f *Facts) attemptFor(m *read.ModelSpec, h naming.Hashes, rec read.RecordedModel, hasRec bool) naming.Attempt {
	cur := naming.Attempt{Number: rec.Attempt, Hash: rec.Hash}
	state := PhaseState(rec.Phase)
	if !hasRec || rec.Attempt == 0 {
		cur, state = naming.Attempt{}, 0
		for _, oj := range f.Jobs[m.Name] {
			if oj.Attempt > cur.Number && naming.JobHash(h.Spec, oj.Attempt) == oj.Hash {
				cur, state = naming.Attempt{Number: oj.Attempt, Hash: oj.Hash}, jobState(oj.Phase)
			}
		}
	}
	if cur.Number == 0 || naming.JobHash(h.Spec, cur.Number) != cur.Hash {
		n := f.lastAttempt(m, rec) + 1
		return naming.Attempt{Number: n, Hash: naming.JobHash(h.Spec, n)}
	}
	oj := f.ByKey[naming.ResourceKey(m.Name, cur.Hash)]
	switch {
	case state == StateFailed && rec.Retry != f.Retry && hasRec:
	case oj != nil && oj.Deleting && !read.Terminal(oj.Phase):
	case oj == nil && state == StateRunning:
	default:
		return cur
	}
	n := cur.Number + 1
	return naming.Attempt{Number: n, Hash: naming.JobHash(h.Spec, n)}
}

// lastAttempt is the highest attempt recorded or observed for a model.
func (f *Facts) lastAttempt(m *read.ModelSpec, rec read.RecordedModel) int64 {
	n := rec.Attempt
	for _, oj := range f.Jobs[m.Name] {
		n = max(n, oj.Attempt)
	}
	return min(n, read.MaxAttempt-1)
}

// mustWait says why a model may not start a new Job now, if something other
// than a queue's limit stands in the way.
func (f *Facts) mustWait(m *read.ModelSpec, v dirVerdict) string {
	for _, oj := range f.Jobs[m.Name] {
		// One writer per directory: a Job being deleted may still run.
		if oj.Deleting && !read.Terminal(oj.Phase) {
			return fmt.Sprintf("waiting for Job %q, which is being deleted, to go", oj.Name())
		}
	}
	if w := v.waitFor; w != nil {
		return fmt.Sprintf("ModelDownload %q is downloading the same content into this directory; waiting for it to finish", w.Name)
	}
	return f.Prerequisite
}

// remembered is a model as its recorded outcome left it.
func remembered(st *ModelStatus, rec read.RecordedModel) {
	st.State, st.Message, st.summary, st.Retry = PhaseState(rec.Phase), rec.Message, rec.Summary, rec.Retry
}

// outcome adds what the pods of the model's Job reported: the summary of a
// completion, the reason of a failure; and, while it runs, its progress.
func (f *Facts) outcome(st *ModelStatus, oj *read.SeenJob, rec read.RecordedModel, sameAttempt bool) {
	var r read.PodReport
	if oj != nil && oj.Job != nil && oj.Job.UID != "" {
		r = f.Reports[string(oj.Job.UID)]
	}
	switch st.State {
	case StateCompleted:
		if r.Summary != nil {
			st.summary = r.Summary
		} else if sameAttempt {
			// The pod is gone; what it reported stays recorded.
			st.summary = rec.Summary
		}
	case StateFailed:
		if r.Failure != "" {
			st.Message = read.JoinNonEmpty("; ", f.Token.Scrub(r.Failure), "Job "+st.Message)
		} else if sameAttempt && PhaseState(rec.Phase) == StateFailed {
			st.Message = rec.Message
		}
		st.Retry = f.Retry
		if sameAttempt && PhaseState(rec.Phase) == StateFailed {
			st.Retry = rec.Retry
		}
	default:
		st.Progress = read.ReadProgress(f.Progress, st.ContentHash, st.JobName)
	}
}

func joinErrors(errs field.ErrorList) string {
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "; ")
}
