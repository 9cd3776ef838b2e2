package main

import (
	"reflect"
	"strconv"
	"strings"

	"google.golang.org/protobuf/types/known/structpb"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"

	fnv1 "github.com/crossplane/function-sdk-go/proto/v1"

	"github.com/hfops/function-hf-download/apis/v1alpha1"
	"github.com/hfops/function-hf-download/internal/decode"
	"github.com/hfops/function-hf-download/internal/naming"
	"github.com/hfops/function-hf-download/script"
)

// Status folding: how a Job ended (jobEnd) and the XR's status, written
// (statusValue) and read back (recordedStatus), both as the API's types.
// decide.go decides each model's state from these.

// Phases of a model in status.models[].phase.
const (
	phasePending   = "Pending"
	phaseRunning   = "Running"
	phaseCompleted = "Completed"
	phaseFailed    = "Failed"
)

// modelStatus is one entry of status.models[].
type modelStatus struct {
	Name    string
	JobName string
	// Hash names the Job of the current attempt; Attempt numbers it.
	Hash    string
	Attempt int64
	// state is where the model stands (decide.go); status shows its phase.
	// A recorded entry's is what its phase says (phaseState).
	state   modelState
	Message string
	Path    string
	// ContentHash says what the Job puts on disk: while the token is
	// unreadable it, and the volume status.pvcUID names, alone tell whether a
	// recorded completion still holds.
	ContentHash string
	// IntentHash says what the user and the platform asked for
	// (naming.Hashes.intent): a completion recorded under the current intent
	// holds when only the function changed.
	IntentHash string
	// Retry is the retry annotation's value when the model failed: a
	// different value asks for a new attempt.
	Retry string
	// Queue is the limit that holds the model back while it is queued.
	Queue queueLimit
	// summary is set once the download pod reported what is on disk;
	// progress while it downloads.
	summary  *script.Summary
	progress *script.Progress
}

// jobPhase is a Job's phase: how it ended (jobEnd), else Running while it
// has an active pod.
func jobPhase(job *batchv1.Job) (phase, message string) {
	if phase, message = jobEnd(job.Status.Conditions); phase != phasePending || message != "" {
		return phase, message
	}
	if job.Status.Active > 0 {
		return phaseRunning, ""
	}
	return phasePending, ""
}

// jobEnd is the one place that reads whether, and how, a Job ended: from
// its conditions, as the Job controller sets them. Jobs have no Ready
// condition: Complete and Failed (True) are the terminal ones, whatever
// else the list holds and in whatever order; Suspended holds a Job that has
// not ended; anything else is Pending here. The namespace queue, the status
// and readiness all take a Job's end from it, and jobReadyQuery says the same
// to people reading an Object (TestJobReadyQueryIsJobEnd).
func jobEnd(conditions []batchv1.JobCondition) (phase, message string) {
	suspended := false
	for _, c := range conditions {
		if c.Status != corev1.ConditionTrue {
			continue
		}
		switch c.Type {
		case batchv1.JobComplete:
			return phaseCompleted, ""
		case batchv1.JobFailed:
			return phaseFailed, joinNonEmpty(": ", c.Reason, c.Message)
		case batchv1.JobSuspended:
			suspended = true
		}
	}
	if suspended {
		return phasePending, "the Job is suspended"
	}
	return phasePending, ""
}

// statusModelsPath is where the function's memory lives in the XR.
var statusModelsPath = field.NewPath("status", "models")

// recordedStatus reads status.models[] of the observed XR: the function's
// memory of what it saw before, keyed by model name. It is read leniently: a
// value of the wrong type (a status edited by hand) is read as absent.
func recordedStatus(xr *structpb.Struct) map[string]modelStatus {
	v := get(xr, "status", "models")
	if len(v.GetListValue().GetValues()) == 0 {
		return nil
	}
	var entries []v1alpha1.ModelStatus
	d := &decode.Decoder{}
	d.Value(statusModelsPath, v, decode.ModelDownload().Properties["status"].Properties["models"], reflect.ValueOf(&entries).Elem())
	out := make(map[string]modelStatus, len(entries))
	for i := range entries {
		e := &entries[i]
		ms := modelStatus{
			Name:        e.Name,
			JobName:     e.JobName,
			Hash:        e.Hash,
			state:       phaseState(e.Phase),
			Message:     e.Message,
			Path:        e.Path,
			ContentHash: e.ContentHash,
			IntentHash:  e.IntentHash,
			Retry:       e.Retry,
		}
		// Only a positive attempt is one; anything else, as if none was
		// recorded.
		if e.Attempt >= 1 && e.Attempt <= maxAttempt {
			ms.Attempt = e.Attempt
		}
		if e.Commit != "" || e.Files != nil {
			// A status edited by hand may hold anything; only a summary
			// that would pass parseSummary's checks is carried over.
			sum := script.Summary{
				Commit:   e.Commit,
				Files:    ptr.Deref(e.Files, 0),
				Bytes:    ptr.Deref(e.Bytes, 0),
				Seconds:  ptr.Deref(e.DurationSeconds, 0),
				Verified: ptr.Deref(e.Verified, false),
				Card:     shownCard(e.Card),
			}
			if validSummary(sum) {
				ms.summary = &sum
			}
		}
		out[ms.Name] = ms
	}
	return out
}

// recordedPVC is the volume the recorded status speaks of.
func recordedPVC(xr *structpb.Struct) string { return getString(xr, "status", "pvcUID") }

// statusValue renders the XR status the function owns. pvcUID names the
// volume every entry speaks of: a completion is recorded only on it.
func statusValue(models []modelStatus, pvcUID string) map[string]any {
	st := v1alpha1.ModelDownloadStatus{
		Pending: []string{}, Completed: []string{}, Failed: []string{},
		Models: make([]v1alpha1.ModelStatus, len(models)),
		PVCUID: pvcUID,
	}
	for i := range models {
		m := &models[i]
		switch m.state.phase() {
		case phaseCompleted:
			st.Completed = append(st.Completed, m.Name)
		case phaseFailed:
			st.Failed = append(st.Failed, m.Name)
		default:
			st.Pending = append(st.Pending, m.Name)
		}
		st.Models[i] = m.api()
	}
	st.Progress = strconv.Itoa(len(st.Completed)) + "/" + strconv.Itoa(len(models))
	st.Downloaded = downloaded(models)
	out, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&st)
	if err != nil {
		// Only a type the converter cannot take fails, and the API has none.
		panic(err)
	}
	return out
}

// api is a model's entry in status.models[]: what the model has is shown
// only in the phases it speaks of.
func (m *modelStatus) api() v1alpha1.ModelStatus {
	e := v1alpha1.ModelStatus{
		Name: m.Name, JobName: m.JobName, Hash: m.Hash, Attempt: m.Attempt, Phase: m.state.phase(), Message: m.Message,
		Path: m.Path, ContentHash: m.ContentHash, IntentHash: m.IntentHash, Queue: string(m.Queue),
	}
	if m.state == stateFailed {
		e.Retry = m.Retry
	}
	if p := m.progress; p != nil && !m.state.terminal() {
		e.Progress = &p.Progress
	}
	if s := m.summary; s != nil && m.state == stateCompleted {
		e.Commit = s.Commit
		e.Files, e.Bytes, e.DurationSeconds, e.Verified = &s.Files, &s.Bytes, &s.Seconds, &s.Verified
		e.Card = shownCard(s.Card)
	}
	return e
}

// summary is the ModelsDownloaded condition: its status, reason and message.
func summary(models []modelStatus) (fnv1.Status, string, string) {
	var done int
	var failed, waiting, queued []string
	for _, m := range models {
		switch {
		case m.state == stateCompleted:
			done++
		case m.state.terminal():
			failed = append(failed, m.Name)
		case isQueued(m):
			queued = append(queued, m.Name)
		default:
			waiting = append(waiting, m.Name)
		}
	}
	msg := strconv.Itoa(done) + "/" + strconv.Itoa(len(models)) + " models downloaded"
	// With a queue, how many download now and how many wait for a slot.
	progress := "in progress: " + strings.Join(waiting, ", ")
	if len(queued) > 0 {
		progress = joinNonEmpty(": ", strconv.Itoa(len(waiting))+" downloading", strings.Join(waiting, ", ")) +
			"; " + strconv.Itoa(len(queued)) + " queued: " + strings.Join(queued, ", ")
	}
	switch {
	case len(failed) > 0 && len(queued) > 0:
		return fnv1.Status_STATUS_CONDITION_FALSE, "DownloadFailed", msg + "; failed: " + strings.Join(failed, ", ") + "; " + progress
	case len(failed) > 0:
		return fnv1.Status_STATUS_CONDITION_FALSE, "DownloadFailed", msg + "; failed: " + strings.Join(failed, ", ")
	case len(waiting) > 0 || len(queued) > 0:
		return fnv1.Status_STATUS_CONDITION_FALSE, "Downloading", joinNonEmpty("; ", msg, progress, slowest(models))
	}
	return fnv1.Status_STATUS_CONDITION_TRUE, "Downloaded", msg
}

// isQueued: the model waits for a download slot (queue.go).
func isQueued(m modelStatus) bool { return m.state == stateQueued }

func validSummary(s script.Summary) bool {
	return len(s.Commit) <= 64 && strings.IndexFunc(s.Commit, naming.NotLowerHex) < 0 && s.Files >= 0 && s.Bytes >= 0 && s.Seconds >= 0 &&
		validCard(s.Card)
}

// maxCardString bounds each string of a model card, as the script does.
const maxCardString = 64

// validCard: what the script promises of a card (short printable ASCII, no
// negative numbers); anything else is not the script's and is not shown.
func validCard(c *script.Card) bool {
	if c == nil {
		return true
	}
	for _, v := range []string{c.Architecture, c.ModelType, c.Dtype, c.License} {
		if len(v) > maxCardString || strings.IndexFunc(v, notPrintableASCII) >= 0 {
			return false
		}
	}
	return c.ContextLength >= 0 && c.Parameters >= 0
}

func notPrintableASCII(r rune) bool { return r < ' ' || r > '~' }

// shownCard is a card as status shows it: nil for one that knows nothing.
func shownCard(c *script.Card) *script.Card {
	if c == nil || *c == (script.Card{}) {
		return nil
	}
	return c
}

func joinNonEmpty(sep string, parts ...string) string {
	out := parts[:0:0]
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, sep)
}
