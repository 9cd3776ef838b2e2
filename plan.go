package main

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/crossplane/function-sdk-go/resource"
	"github.com/crossplane/function-sdk-go/resource/composed"
)

// The state machine: model by model, from what Crossplane observed and what
// status recorded, to the Job that is desired (or none) and the model's
// status. What status promises (the README's "What status promises") lives
// here:
//
//   - A model is Completed only if a Job of the current attempt completed on
//     the current volume, or the recorded completion names that attempt. An
//     attempt's Job name is its own (jobHash): a spec that comes back to an
//     earlier value, a Job killed or lost mid-run, and a retry each start a
//     new attempt, so an old Job, orphaned or lingering, is never taken for
//     the current one.
//   - Completed and Failed are remembered: a finished Job that its TTL (or
//     anyone) removed is not made again for the same attempt.
//   - Nothing is hidden while the function waits (token unreadable, PVC
//     missing, directory taken): a model whose content or volume changed is
//     not Completed.

// annotationRetry on the ModelDownload retries its failed models: each
// Failed model records the value it failed under, and a new value starts a
// new attempt (kubectl annotate modeldownload x hfops.kamal.dev/retry=$(date +%s)).
const annotationRetry = "hfops.kamal.dev/retry"

// maxAttempt bounds the attempt numbers read back from status.
const maxAttempt = 1 << 31

// attempt is one try at a model's spec: its number and the hash that names
// its Job.
type attempt struct {
	number int64
	hash   string
}

func terminal(phase string) bool { return phase == phaseCompleted || phase == phaseFailed }

// composer decides, model by model, which Job is desired and what the model's
// status is.
type composer struct {
	*observation
	builder  *jobBuilder
	envelope envelope
	token    tokenState
	storage  storageState
	xrDigest []byte
	// retry is the ModelDownload's retry annotation.
	retry string

	dirs     directories
	self     dirUser
	conflict []string

	// queue decides which models may start a Job now (queue.go).
	queue *downloadQueue
	// scriptReady: the ConfigMap the Jobs mount exists; until it does no Job
	// starts (its pod could not).
	scriptReady bool

	desired map[string]*resource.DesiredComposed
}

func (c *composer) compose() []modelStatus {
	spec := c.builder.spec
	for _, js := range c.jobs {
		for _, oj := range js {
			if !oj.deleting && !terminal(oj.phase) {
				c.queue.active++
			}
		}
	}
	out := make([]modelStatus, 0, len(spec.Models))
	for i := range spec.Models {
		m := &spec.Models[i]
		rec, hasRec := c.recorded[m.Name]
		switch {
		case len(m.errs) > 0:
			out = append(out, modelStatus{Name: m.Name, Phase: phaseFailed, Message: joinErrors(m.errs)})
		case !c.storage.ready():
			out = append(out, c.wait(m, rec, c.storage.problem))
		default:
			out = append(out, c.composeModel(m, rec, hasRec))
		}
	}
	return out
}

// wait starts nothing for a model and keeps the Jobs it has: no volume, so
// nothing is Completed.
func (c *composer) wait(m *modelSpec, rec modelStatus, why string) modelStatus {
	for _, oj := range c.jobs[m.Name] {
		c.keep(oj, rec)
	}
	return modelStatus{Name: m.Name, Path: c.builder.localDir(m), Phase: phasePending, Message: why,
		Attempt: c.lastAttempt(m, rec)}
}

func (c *composer) composeModel(m *modelSpec, rec modelStatus, hasRec bool) modelStatus {
	h := hashModel(m, c.xrDigest, c.builder.platform, c.token.digest)
	c.self.content, c.self.describe = h.content, describeContent(m)
	verdict := c.dirs.judge(c.self, m.Name)
	c.conflict = append(c.conflict, verdict.notes(m.Name, c.builder.spec.StoragePVC, c.self)...)
	if verdict.blockedBy != nil {
		// Not this one's directory: no Job, and the Jobs it had go.
		return modelStatus{Name: m.Name, Path: c.builder.localDir(m), Phase: phasePending,
			Message:     "directory conflict: " + verdict.notes(m.Name, c.builder.spec.StoragePVC, c.self)[0],
			ContentHash: h.content, IntentHash: h.intent, Attempt: c.lastAttempt(m, rec)}
	}
	if !c.token.usable() {
		return c.keepWhileTokenMissing(m, h, rec)
	}
	if st, kept := c.keepAcrossUpgrade(m, h, rec, hasRec); kept {
		return st
	}

	a := c.attemptFor(m, h, rec, hasRec)
	key := resourceKey(m.Name, a.hash)
	st := modelStatus{
		Name:        m.Name,
		JobName:     jobName(c.builder.nameBase, m.Name, a.hash),
		Hash:        a.hash,
		Attempt:     a.number,
		Path:        c.builder.localDir(m),
		Phase:       phasePending,
		ContentHash: h.content,
		IntentHash:  h.intent,
	}
	sameAttempt := hasRec && rec.Hash == a.hash
	oj := c.byKey[key]
	if sameAttempt && terminal(rec.Phase) && (oj == nil || oj.deleting || c.envelope.object) {
		// The Job is gone (its TTL, or anyone), going, or, in Object mode,
		// left to its TTL: provider-kubernetes would make a deleted Job
		// again while its Object manages it, so the Object goes once the
		// outcome is recorded (desireJob made it observe only). Status
		// is the memory: the model stays as it ended and no Job comes back.
		return c.remembered(st, rec)
	}
	if oj == nil {
		if why, queue := c.mustWait(m, verdict); why != "" {
			st.Message, st.Queue = why, queue
			return st
		}
	} else {
		st.Phase, st.Message = oj.phase, oj.message
	}
	c.desireJob(key, c.builder.manifest(m, st.JobName, h, a), st.Phase)
	c.outcome(&st, oj, rec, sameAttempt)
	if !terminal(st.Phase) {
		st.progress = readProgress(c.progress, &st)
	}
	return st
}

// keepAcrossUpgrade keeps a model's recorded attempt when only the function
// changed (its version, the script, the Job's template, the default image)
// since it was recorded: a completed model stays completed, with its commit
// and no new Job; one whose Job still runs (or just completed) finishes on
// that Job, kept as it is. Anything else the user or the platform changed
// moves the intent, and then the attempt moves on as attemptFor says. A
// record that an older version wrote has no intent: for it, as while the
// token is unreadable, the content and the volume decide.
func (c *composer) keepAcrossUpgrade(m *modelSpec, h modelHashes, rec modelStatus, hasRec bool) (modelStatus, bool) {
	if !hasRec || rec.Attempt == 0 || !isSpecHash(rec.Hash) || c.recordedPVC != c.storage.uid {
		return modelStatus{}, false
	}
	if rec.IntentHash != h.intent && (rec.IntentHash != "" || rec.ContentHash != h.content) {
		return modelStatus{}, false
	}
	oj := c.byKey[resourceKey(m.Name, rec.Hash)]
	onJob := oj != nil && !oj.deleting && oj.phase != phaseFailed
	// Last, as it hashes: when the function did not change either, the
	// attempt goes on as attemptFor says.
	if rec.Phase != phaseCompleted && !onJob || jobHash(h.spec, rec.Attempt) == rec.Hash {
		return modelStatus{}, false
	}
	st := modelStatus{
		Name:        m.Name,
		JobName:     jobName(c.builder.nameBase, m.Name, rec.Hash),
		Hash:        rec.Hash,
		Attempt:     rec.Attempt,
		Path:        c.builder.localDir(m),
		Phase:       phasePending,
		ContentHash: h.content,
		IntentHash:  h.intent,
	}
	if oj != nil {
		c.keep(oj, rec)
	}
	if rec.Phase == phaseCompleted {
		return c.remembered(st, rec), true
	}
	st.Phase, st.Message = oj.phase, oj.message
	c.outcome(&st, oj, rec, true)
	if !terminal(st.Phase) {
		st.progress = readProgress(c.progress, &st)
	}
	return st, true
}

// attemptFor decides which attempt is current. The recorded one goes on
// unless it failed and a retry was asked for, or its Job was killed or lost
// before it finished; a new spec starts the attempt after every one recorded
// or observed. With no record at all (status not written yet, or written by
// an older version), a Job observed for this very spec is the current one.
func (c *composer) attemptFor(m *modelSpec, h modelHashes, rec modelStatus, hasRec bool) attempt {
	cur := attempt{rec.Attempt, rec.Hash}
	phase := rec.Phase
	if !hasRec || rec.Attempt == 0 {
		cur, phase = attempt{}, ""
		for _, oj := range c.jobs[m.Name] {
			if oj.attempt > cur.number && jobHash(h.spec, oj.attempt) == oj.hash {
				cur, phase = attempt{oj.attempt, oj.hash}, oj.phase
			}
		}
	}
	if cur.number == 0 || jobHash(h.spec, cur.number) != cur.hash {
		n := c.lastAttempt(m, rec) + 1
		return attempt{n, jobHash(h.spec, n)}
	}
	oj := c.byKey[resourceKey(m.Name, cur.hash)]
	switch {
	case phase == phaseFailed && rec.Retry != c.retry && hasRec:
	case oj != nil && oj.deleting && !terminal(oj.phase):
	case oj == nil && phase == phaseRunning:
	default:
		return cur
	}
	n := cur.number + 1
	return attempt{n, jobHash(h.spec, n)}
}

// lastAttempt is the highest attempt recorded or observed for a model.
func (c *composer) lastAttempt(m *modelSpec, rec modelStatus) int64 {
	n := rec.Attempt
	for _, oj := range c.jobs[m.Name] {
		n = max(n, oj.attempt)
	}
	return min(n, maxAttempt-1)
}

// mustWait says why a model may not start a new Job now, if it may not, and
// which limit queues it, if one does.
func (c *composer) mustWait(m *modelSpec, v dirVerdict) (string, queueLimit) {
	for _, oj := range c.jobs[m.Name] {
		// One writer per directory: a Job being deleted may still run.
		if oj.deleting && !terminal(oj.phase) {
			return fmt.Sprintf("waiting for Job %q, which is being deleted, to go", oj.manifest.GetName()), ""
		}
	}
	if w := v.waitFor; w != nil {
		return fmt.Sprintf("ModelDownload %q is downloading the same content into this directory; waiting for it to finish", w.name), ""
	}
	if !c.scriptReady {
		return fmt.Sprintf("waiting for the ConfigMap %q that holds the download script to be created", c.builder.scriptMap), ""
	}
	if c.builder.platform.ServiceAccount == "" && !c.accountObserved {
		return fmt.Sprintf("waiting for the ServiceAccount %q of the download pods to be created", c.builder.progressMap), ""
	}
	// Last: only a model that could start now takes a slot.
	queue, why := c.queue.admit()
	return why, queue
}

// remembered is a model as its recorded outcome left it.
func (c *composer) remembered(st modelStatus, rec modelStatus) modelStatus {
	st.Phase, st.Message, st.summary, st.Retry = rec.Phase, rec.Message, rec.summary, rec.Retry
	return st
}

// outcome adds what the pods of the model's Job reported: the summary of a
// completion, the reason of a failure.
func (c *composer) outcome(st *modelStatus, oj *seenJob, rec modelStatus, sameAttempt bool) {
	var r podReport
	if oj != nil && oj.job != nil && oj.job.UID != "" {
		r = c.reports[string(oj.job.UID)]
	}
	switch st.Phase {
	case phaseCompleted:
		if r.summary != nil {
			st.summary = r.summary
		} else if sameAttempt {
			// The pod is gone; what it reported stays recorded.
			st.summary = rec.summary
		}
	case phaseFailed:
		if r.failure != "" {
			st.Message = joinNonEmpty("; ", c.token.scrub(r.failure), "Job "+st.Message)
		} else if sameAttempt && rec.Phase == phaseFailed {
			st.Message = rec.Message
		}
		st.Retry = c.retry
		if sameAttempt && rec.Phase == phaseFailed {
			st.Retry = rec.Retry
		}
	}
}

// keepWhileTokenMissing starts no new Job (the token is unreadable) but keeps
// the ones that exist: the newest Job of the current spec (the token aside)
// as it is, and Jobs of older specs until their successor can start. A
// recorded completion holds only for the same content on the same volume.
func (c *composer) keepWhileTokenMissing(m *modelSpec, h modelHashes, rec modelStatus) modelStatus {
	why := "waiting for the Hugging Face token: " + c.token.problem
	st := modelStatus{Name: m.Name, Path: c.builder.localDir(m), Phase: phasePending, Message: why,
		ContentHash: h.content, Attempt: c.lastAttempt(m, rec)}
	var current *seenJob
	for _, oj := range c.jobs[m.Name] {
		if oj.config != h.config || !isSpecHash(oj.hash) {
			continue
		}
		if current == nil || oj.hash == rec.Hash || current.hash != rec.Hash && oj.attempt > current.attempt {
			current = oj
		}
	}
	for _, oj := range c.jobs[m.Name] {
		// Only one Job of the current spec is kept (an older token's may
		// linger); a hand-edited spec-hash label names no Job, so such a
		// Job is kept as one of an older spec.
		if oj == current || oj.config != h.config || !isSpecHash(oj.hash) {
			c.keep(oj, rec)
		}
	}
	if current != nil {
		st.JobName, st.Hash, st.Attempt = jobName(c.builder.nameBase, m.Name, current.hash), current.hash, current.attempt
		same := rec.Hash == current.hash
		if same {
			st.IntentHash = rec.IntentHash
		}
		if same && terminal(rec.Phase) && (current.deleting || c.envelope.object) {
			return c.remembered(st, rec)
		}
		st.Phase = current.phase
		c.outcome(&st, current, rec, same)
		if st.Phase != phaseFailed {
			st.Message = why
		}
		return st
	}
	if terminal(rec.Phase) && rec.Hash != "" && rec.ContentHash == h.content && c.recordedPVC == c.storage.uid {
		// What is on disk has not changed; without the token the function
		// cannot tell whether the token did, so it keeps what it recorded
		// and says why nothing new starts.
		rec.Message = why
		return rec
	}
	return st
}

// keep desires an observed Job as it is. In Object mode the Object of a
// finished Job only observes it, and goes once its outcome is recorded.
func (c *composer) keep(oj *seenJob, rec modelStatus) {
	if oj.object != c.envelope.object {
		return
	}
	if c.envelope.object && rec.Hash == oj.hash && terminal(rec.Phase) {
		return
	}
	if len(oj.manifest.Object) == 0 {
		return
	}
	c.desireJob(oj.key, keepAsObserved(oj.manifest), oj.phase)
}

// isSpecHash reports whether s is a Job hash as jobName needs it.
func isSpecHash(s string) bool {
	return len(s) == specHashLen && strings.IndexFunc(s, notHex) < 0
}

// desireJob composes a Job, in its envelope. It is ready when it completed.
// The Object of a finished Job only observes it: removing the Object then
// leaves the Job to its own TTL, and the TTL's deletion is not undone.
func (c *composer) desireJob(key string, job *unstructured.Unstructured, phase string) {
	policy := manage
	if terminal(phase) {
		policy = observeOnly
	}
	ready := resource.ReadyFalse
	if phase == phaseCompleted {
		ready = resource.ReadyTrue
	}
	c.desire(key, c.envelope.wrap(job, jobReadyQuery, policy), ready)
}

// desire composes an object (or what carries it) under key, unless the one
// observed there is being deleted: the TTL controller deletes in the
// foreground, so a finished Job lingers until its pods are gone, and
// applying it as it vanishes would create it again.
func (c *composer) desire(key string, obj *unstructured.Unstructured, ready resource.Ready) {
	if c.deleting[key] {
		return
	}
	c.desired[key] = &resource.DesiredComposed{Resource: &composed.Unstructured{Unstructured: *obj}, Ready: ready}
}

// keepAsObserved re-applies exactly what exists, so server-side apply
// changes nothing on an immutable Job (or on the Object that carries it).
func keepAsObserved(u *unstructured.Unstructured) *unstructured.Unstructured {
	md := map[string]any{}
	if m, ok := u.Object["metadata"].(map[string]any); ok {
		for _, k := range []string{"name", "namespace", "labels", "annotations"} {
			if v, ok := m[k]; ok {
				md[k] = v
			}
		}
	}
	out := map[string]any{"apiVersion": u.Object["apiVersion"], "kind": u.Object["kind"], "metadata": md}
	if spec, ok := u.Object["spec"]; ok {
		out["spec"] = spec
	}
	return &unstructured.Unstructured{Object: out}
}

// asUnstructured is a typed object as the map Crossplane applies: the
// fields it sets, as encoding/json writes them, without the zero-valued
// creation timestamps and the empty status a Go value always holds.
func asUnstructured(o runtime.Object) *unstructured.Unstructured {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
	if err != nil {
		// Only a value the converter cannot represent fails here: a bug.
		panic(err)
	}
	delete(m, "status")
	return &unstructured.Unstructured{Object: pruneNil(m)}
}

// pruneNil drops the map entries whose value is null, at every depth.
func pruneNil(m map[string]any) map[string]any {
	for k, v := range m {
		switch x := v.(type) {
		case nil:
			delete(m, k)
		case map[string]any:
			pruneNil(x)
		case []any:
			for _, e := range x {
				if em, ok := e.(map[string]any); ok {
					pruneNil(em)
				}
			}
		}
	}
	return m
}
