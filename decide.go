package main

import (
	"fmt"
	"path"
	"strings"

	"github.com/hfops/function-hf-download/internal/naming"
	"github.com/hfops/function-hf-download/internal/read"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// The state machine of one model. decide is a pure function: from the facts
// of a call (what Crossplane observed and fetched, what status recorded) to
// the model's state, its current attempt, the Jobs it keeps as observed and
// whether the current attempt's Job is composed. The composer (plan.go) does
// what a decision says, and the queue (queue.go) admits the models that want
// to start a Job, in spec order. What status promises (the README's "What
// status promises") is decided here:
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

// modelState is where a model stands. Its phase in status, whether it is
// settled and whether the XR may be Ready follow from it alone.
type modelState int

const (
	// stateInvalid: the model's spec is invalid; it is skipped.
	stateInvalid modelState = iota + 1
	// stateWaitingForStorage: the PVC is not there (or not bound) yet.
	stateWaitingForStorage
	// stateBlocked: an older ModelDownload puts other content into the
	// model's directory.
	stateBlocked
	// stateWaitingForToken: the token is unreadable and no Job of the
	// model's spec exists.
	stateWaitingForToken
	// stateWaiting: a new Job cannot start yet: the script's ConfigMap or
	// the pods' ServiceAccount is not there, a Job of the model is being
	// deleted, or another ModelDownload downloads the same content into
	// the directory.
	stateWaiting
	// stateQueued: a new Job could start, but a limit holds it back.
	stateQueued
	// stateStarting: the Job is composed, no pod of it runs yet.
	stateStarting
	stateRunning
	stateCompleted
	stateFailed
)

// phase is the state as status.models[].phase shows it.
func (s modelState) phase() string {
	switch s {
	case stateRunning:
		return read.PhaseRunning
	case stateCompleted:
		return read.PhaseCompleted
	case stateFailed, stateInvalid:
		return read.PhaseFailed
	default:
		return read.PhasePending
	}
}

// terminal: the model's download ended, as it will stay.
func (s modelState) terminal() bool { return read.Terminal(s.phase()) }

// jobState is the state a Job of the current attempt puts a model in, by
// the Job's phase (read.JobPhase): Pending is starting.
func jobState(phase string) modelState { return stateOfPhase(phase, stateStarting) }

// phaseState is what a recorded phase says of a model: Pending is waiting
// (0 for what is no phase).
func phaseState(phase string) modelState { return stateOfPhase(phase, stateWaiting) }

func stateOfPhase(phase string, pending modelState) modelState {
	switch phase {
	case read.PhasePending:
		return pending
	case read.PhaseRunning:
		return stateRunning
	case read.PhaseCompleted:
		return stateCompleted
	case read.PhaseFailed:
		return stateFailed
	}
	return 0
}

// callFacts are the facts every model of a call shares.
type callFacts struct {
	*read.Observation
	// nameBase starts every Job name: the XR's name, or its claim's.
	nameBase string
	// mountPath is where the PVC is mounted in the download pods; pvc is
	// its name.
	mountPath, pvc string
	token          read.TokenState
	storage        read.StorageState
	// digests are what every model's hashes cover but the model and the
	// token.
	digests    naming.Digests
	dirs       directories
	self       dirUser
	retry      string
	objectMode bool
	// prerequisite says why no new Job may start yet, whatever the model:
	// the script's ConfigMap or the pods' ServiceAccount is not there.
	prerequisite string
}

// decision is what the function does about one model.
type decision struct {
	// status is the model's entry; status.state says where it stands.
	status modelStatus
	// attempt is the current attempt, and job its Job as observed (nil:
	// none yet).
	attempt naming.Attempt
	job     *read.SeenJob
	// compose: the current attempt's Job is composed as the function
	// builds it (a new one when job is nil). Then hashes are the model's.
	compose bool
	hashes  naming.Hashes
	// keep are observed Jobs composed again as they are.
	keep []*read.SeenJob
	// conflicts are the notes on the model's directory, for the
	// DirectoryConflict condition.
	conflicts []string
}

// wantsSlot: the decision starts a new Job, which the queue may hold back.
func (d *decision) wantsSlot() bool { return d.compose && d.job == nil }

// queued holds a model back that wanted to start a Job.
func (d *decision) queued(limit queueLimit, why string) {
	d.compose = false
	d.status.state, d.status.Message, d.status.Queue, d.status.progress = stateQueued, why, limit, nil
}

// decide is the one decision about model m (rec, hasRec: its recorded
// status).
func (f *callFacts) decide(m *read.ModelSpec, rec read.RecordedModel, hasRec bool) decision {
	if len(m.Errs) > 0 {
		return decision{status: modelStatus{Name: m.Name, state: stateInvalid, Message: joinErrors(m.Errs)}}
	}
	path := path.Join(f.mountPath, m.Name)
	if !f.storage.Ready() {
		// No volume, so nothing is Completed; the Jobs the model has stay.
		return decision{
			status: modelStatus{Name: m.Name, Path: path, state: stateWaitingForStorage, Message: f.storage.Problem,
				Attempt: f.lastAttempt(m, rec)},
			keep: f.Jobs[m.Name],
		}
	}

	digests := f.digests
	digests.Token = f.token.Digest
	h := naming.HashModel(&m.Model, digests)
	self := f.self
	self.content, self.describe = h.Content, describeContent(m)
	verdict := f.dirs.judge(self, m.Name)
	notes := verdict.notes(m.Name, f.pvc, self)
	if verdict.blockedBy != nil {
		// Not this one's directory: no Job, and the Jobs it had go.
		return decision{
			status: modelStatus{Name: m.Name, Path: path, state: stateBlocked, Message: "directory conflict: " + notes[0],
				ContentHash: h.Content, IntentHash: h.Intent, Attempt: f.lastAttempt(m, rec)},
			conflicts: notes,
		}
	}
	var d decision
	switch {
	case !f.token.Usable():
		d = f.withoutToken(m, h, rec)
	default:
		var kept bool
		if d, kept = f.acrossUpgrade(m, h, rec, hasRec); !kept {
			d = f.current(m, h, rec, hasRec, verdict)
		}
	}
	// A kept record says where its files are.
	d.status.Path = read.OrDefault(d.status.Path, path)
	d.conflicts = notes
	return d
}

// current decides on the current attempt (attemptFor): its recorded outcome
// when its Job is gone, the Job as observed, or a new Job once nothing
// stands in the way.
func (f *callFacts) current(m *read.ModelSpec, h naming.Hashes, rec read.RecordedModel, hasRec bool, verdict dirVerdict) decision {
	a := f.attemptFor(m, h, rec, hasRec)
	d := decision{
		attempt: a,
		hashes:  h,
		job:     f.ByKey[naming.ResourceKey(m.Name, a.Hash)],
		status: modelStatus{
			Name:        m.Name,
			JobName:     naming.JobName(f.nameBase, m.Name, a.Hash),
			Hash:        a.Hash,
			Attempt:     a.Number,
			ContentHash: h.Content,
			IntentHash:  h.Intent,
		},
	}
	sameAttempt := hasRec && rec.Hash == a.Hash
	if oj := d.job; sameAttempt && phaseState(rec.Phase).terminal() && (oj == nil || oj.Deleting || f.objectMode) {
		// The Job is gone (its TTL, or anyone), going, or, in Object mode,
		// left to its TTL: provider-kubernetes would make a deleted Job
		// again while its Object manages it, so the Object goes once the
		// outcome is recorded (desireJob made it observe only). Status
		// is the memory: the model stays as it ended and no Job comes back.
		d.job = nil
		remembered(&d.status, rec)
		return d
	}
	if d.job == nil {
		if why := f.mustWait(m, verdict); why != "" {
			d.status.state, d.status.Message = stateWaiting, why
			return d
		}
		d.status.state = stateStarting
	} else {
		d.status.state, d.status.Message = jobState(d.job.Phase), d.job.Message
	}
	d.compose = true
	f.outcome(&d.status, d.job, rec, sameAttempt)
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
func (f *callFacts) acrossUpgrade(m *read.ModelSpec, h naming.Hashes, rec read.RecordedModel, hasRec bool) (decision, bool) {
	if !hasRec || rec.Attempt == 0 || !naming.IsSpecHash(rec.Hash) || f.RecordedPVC != f.storage.UID {
		return decision{}, false
	}
	if rec.IntentHash != h.Intent && (rec.IntentHash != "" || rec.ContentHash != h.Content) {
		return decision{}, false
	}
	oj := f.ByKey[naming.ResourceKey(m.Name, rec.Hash)]
	onJob := oj != nil && !oj.Deleting && oj.Phase != read.PhaseFailed
	// Last, as it hashes: when the function did not change either, the
	// attempt goes on as attemptFor says.
	if phaseState(rec.Phase) != stateCompleted && !onJob || naming.JobHash(h.Spec, rec.Attempt) == rec.Hash {
		return decision{}, false
	}
	d := decision{
		attempt: naming.Attempt{Number: rec.Attempt, Hash: rec.Hash},
		job:     oj,
		status: modelStatus{
			Name:        m.Name,
			JobName:     naming.JobName(f.nameBase, m.Name, rec.Hash),
			Hash:        rec.Hash,
			Attempt:     rec.Attempt,
			ContentHash: h.Content,
			IntentHash:  h.Intent,
		},
	}
	if oj != nil {
		d.keep = []*read.SeenJob{oj}
	}
	if phaseState(rec.Phase) == stateCompleted {
		remembered(&d.status, rec)
		return d, true
	}
	d.status.state, d.status.Message = jobState(oj.Phase), oj.Message
	f.outcome(&d.status, oj, rec, true)
	return d, true
}

// withoutToken starts no new Job (the token is unreadable) but keeps the
// ones that exist: the newest Job of the current spec (the token aside) as
// it is, and Jobs of older specs until their successor can start. A
// recorded completion holds only for the same content on the same volume.
func (f *callFacts) withoutToken(m *read.ModelSpec, h naming.Hashes, rec read.RecordedModel) decision {
	why := "waiting for the Hugging Face token: " + f.token.Problem
	var current *read.SeenJob
	for _, oj := range f.Jobs[m.Name] {
		if oj.Config != h.Config || !naming.IsSpecHash(oj.Hash) {
			continue
		}
		if current == nil || oj.Hash == rec.Hash || current.Hash != rec.Hash && oj.Attempt > current.Attempt {
			current = oj
		}
	}
	var d decision
	for _, oj := range f.Jobs[m.Name] {
		// Only one Job of the current spec is kept (an older token's may
		// linger); a hand-edited spec-hash label names no Job, so such a
		// Job is kept as one of an older spec.
		if oj == current || oj.Config != h.Config || !naming.IsSpecHash(oj.Hash) {
			d.keep = append(d.keep, oj)
		}
	}
	d.status = modelStatus{Name: m.Name, state: stateWaitingForToken, Message: why, ContentHash: h.Content,
		Attempt: f.lastAttempt(m, rec)}
	if current != nil {
		d.attempt, d.job = naming.Attempt{Number: current.Attempt, Hash: current.Hash}, current
		d.status.JobName, d.status.Hash, d.status.Attempt = naming.JobName(f.nameBase, m.Name, current.Hash), current.Hash, current.Attempt
		same := rec.Hash == current.Hash
		if same {
			d.status.IntentHash = rec.IntentHash
		}
		if same && phaseState(rec.Phase).terminal() && (current.Deleting || f.objectMode) {
			remembered(&d.status, rec)
			return d
		}
		d.status.state = jobState(current.Phase)
		f.outcome(&d.status, current, rec, same)
		if d.status.state != stateFailed {
			d.status.Message = why
		}
		return d
	}
	if phaseState(rec.Phase).terminal() && rec.Hash != "" && rec.ContentHash == h.Content && f.RecordedPVC == f.storage.UID {
		// What is on disk has not changed; without the token the function
		// cannot tell whether the token did, so it keeps what it recorded
		// and says why nothing new starts.
		d.status = modelStatus{Name: rec.Name, JobName: rec.JobName, Hash: rec.Hash, Attempt: rec.Attempt,
			state: phaseState(rec.Phase), Message: why, Path: rec.Path, ContentHash: rec.ContentHash,
			IntentHash: rec.IntentHash, Retry: rec.Retry, summary: rec.Summary}
	}
	return d
}

// attemptFor decides which attempt is current. The recorded one goes on
// unless it failed and a retry was asked for, or its Job was killed or lost
// before it finished; a new spec starts the attempt after every one recorded
// or observed. With no record at all (status not written yet, or written by
// an older version), a Job observed for this very spec is the current one.
func (f *callFacts) attemptFor(m *read.ModelSpec, h naming.Hashes, rec read.RecordedModel, hasRec bool) naming.Attempt {
	cur := naming.Attempt{Number: rec.Attempt, Hash: rec.Hash}
	state := phaseState(rec.Phase)
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
	case state == stateFailed && rec.Retry != f.retry && hasRec:
	case oj != nil && oj.Deleting && !read.Terminal(oj.Phase):
	case oj == nil && state == stateRunning:
	default:
		return cur
	}
	n := cur.Number + 1
	return naming.Attempt{Number: n, Hash: naming.JobHash(h.Spec, n)}
}

// lastAttempt is the highest attempt recorded or observed for a model.
func (f *callFacts) lastAttempt(m *read.ModelSpec, rec read.RecordedModel) int64 {
	n := rec.Attempt
	for _, oj := range f.Jobs[m.Name] {
		n = max(n, oj.Attempt)
	}
	return min(n, read.MaxAttempt-1)
}

// mustWait says why a model may not start a new Job now, if something other
// than a queue's limit stands in the way.
func (f *callFacts) mustWait(m *read.ModelSpec, v dirVerdict) string {
	for _, oj := range f.Jobs[m.Name] {
		// One writer per directory: a Job being deleted may still run.
		if oj.Deleting && !read.Terminal(oj.Phase) {
			return fmt.Sprintf("waiting for Job %q, which is being deleted, to go", oj.Name())
		}
	}
	if w := v.waitFor; w != nil {
		return fmt.Sprintf("ModelDownload %q is downloading the same content into this directory; waiting for it to finish", w.name)
	}
	return f.prerequisite
}

// remembered is a model as its recorded outcome left it.
func remembered(st *modelStatus, rec read.RecordedModel) {
	st.state, st.Message, st.summary, st.Retry = phaseState(rec.Phase), rec.Message, rec.Summary, rec.Retry
}

// outcome adds what the pods of the model's Job reported: the summary of a
// completion, the reason of a failure; and, while it runs, its progress.
func (f *callFacts) outcome(st *modelStatus, oj *read.SeenJob, rec read.RecordedModel, sameAttempt bool) {
	var r read.PodReport
	if oj != nil && oj.Job != nil && oj.Job.UID != "" {
		r = f.Reports[string(oj.Job.UID)]
	}
	switch st.state {
	case stateCompleted:
		if r.Summary != nil {
			st.summary = r.Summary
		} else if sameAttempt {
			// The pod is gone; what it reported stays recorded.
			st.summary = rec.Summary
		}
	case stateFailed:
		if r.Failure != "" {
			st.Message = read.JoinNonEmpty("; ", f.token.Scrub(r.Failure), "Job "+st.Message)
		} else if sameAttempt && phaseState(rec.Phase) == stateFailed {
			st.Message = rec.Message
		}
		st.Retry = f.retry
		if sameAttempt && phaseState(rec.Phase) == stateFailed {
			st.Retry = rec.Retry
		}
	default:
		st.progress = read.ReadProgress(f.Progress, st.ContentHash, st.JobName)
	}
}

func joinErrors(errs field.ErrorList) string {
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "; ")
}
