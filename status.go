package main

import (
	"math"
	"strconv"
	"strings"

	"google.golang.org/protobuf/types/known/structpb"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"

	fnv1 "github.com/crossplane/function-sdk-go/proto/v1"

	"github.com/hfops/function-hf-download/script"
)

// Status folding: how a Job ended (jobEnd) and the XR's status, written
// (statusValue) and read back (recordedStatus). plan.go decides each model's
// phase from these.

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
	Phase   string
	Message string
	Path    string
	// ContentHash says what the Job puts on disk: while the token is
	// unreadable it, and the volume status.pvcUID names, alone tell whether a
	// recorded completion still holds.
	ContentHash string
	// IntentHash says what the user and the platform asked for
	// (modelHashes.intent): a completion recorded under the current intent
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
// condition: Complete and Failed (True) are the terminal ones; Suspended
// holds it; anything else is Pending here. The namespace queue, the status
// and readiness all take a Job's end from it, and jobReadyQuery says the same
// to people reading an Object.
func jobEnd(conditions []batchv1.JobCondition) (phase, message string) {
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
			return phasePending, "the Job is suspended"
		}
	}
	return phasePending, ""
}

// recordedStatus reads status.models[] of the observed XR: the function's
// memory of what it saw before, keyed by model name.
func recordedStatus(xr *structpb.Struct) map[string]modelStatus {
	entries := get(xr, "status", "models").GetListValue().GetValues()
	if len(entries) == 0 {
		return nil
	}
	out := make(map[string]modelStatus, len(entries))
	for _, e := range entries {
		s := e.GetStructValue()
		ms := modelStatus{
			Name:        getString(s, "name"),
			JobName:     getString(s, "jobName"),
			Hash:        getString(s, "hash"),
			Phase:       getString(s, "phase"),
			Message:     getString(s, "message"),
			Path:        getString(s, "path"),
			ContentHash: getString(s, "contentHash"),
			IntentHash:  getString(s, "intentHash"),
			Retry:       getString(s, "retry"),
		}
		// Only a whole positive number is an attempt; anything else, as if
		// none was recorded.
		if a := get(s, "attempt").GetNumberValue(); a >= 1 && a <= maxAttempt && a == math.Trunc(a) {
			ms.Attempt = int64(a)
		}
		if c := get(s, "commit"); present(c) {
			// A status edited by hand may hold anything; only a summary
			// that would pass parseSummary's checks is carried over.
			sum := script.Summary{
				Commit:   c.GetStringValue(),
				Files:    int64(get(s, "files").GetNumberValue()),
				Bytes:    int64(get(s, "bytes").GetNumberValue()),
				Seconds:  int64(get(s, "durationSeconds").GetNumberValue()),
				Verified: get(s, "verified").GetBoolValue(),
				Card:     recordedCard(get(s, "card").GetStructValue()),
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
	pending, completed, failed := []any{}, []any{}, []any{}
	entries := make([]any, len(models))
	for i, m := range models {
		switch m.Phase {
		case phaseCompleted:
			completed = append(completed, m.Name)
		case phaseFailed:
			failed = append(failed, m.Name)
		default:
			pending = append(pending, m.Name)
		}
		e := map[string]any{"name": m.Name, "phase": m.Phase}
		setIf(e, "jobName", m.JobName)
		setIf(e, "hash", m.Hash)
		if m.Attempt > 0 {
			e["attempt"] = m.Attempt
		}
		setIf(e, "message", m.Message)
		setIf(e, "path", m.Path)
		setIf(e, "contentHash", m.ContentHash)
		setIf(e, "intentHash", m.IntentHash)
		setIf(e, "queue", string(m.Queue))
		if m.Phase == phaseFailed {
			setIf(e, "retry", m.Retry)
		}
		if m.progress != nil && !terminal(m.Phase) {
			e["progress"] = progressValue(m.progress)
		}
		if s := m.summary; s != nil && m.Phase == phaseCompleted {
			e["commit"] = s.Commit
			e["files"] = s.Files
			e["bytes"] = s.Bytes
			e["durationSeconds"] = s.Seconds
			e["verified"] = s.Verified
			if c := cardValue(s.Card); c != nil {
				e["card"] = c
			}
		}
		entries[i] = e
	}
	out := map[string]any{
		"pending":    pending,
		"completed":  completed,
		"failed":     failed,
		"models":     entries,
		"progress":   strconv.Itoa(len(completed)) + "/" + strconv.Itoa(len(models)),
		"downloaded": downloaded(models),
	}
	setIf(out, "pvcUID", pvcUID)
	return out
}

func setIf(m map[string]any, k, v string) {
	if v != "" {
		m[k] = v
	}
}

// summary is the ModelsDownloaded condition: its status, reason and message.
func summary(models []modelStatus) (fnv1.Status, string, string) {
	var done int
	var failed, waiting, queued []string
	for _, m := range models {
		switch {
		case m.Phase == phaseCompleted:
			done++
		case m.Phase == phaseFailed:
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
func isQueued(m modelStatus) bool {
	return m.Phase == phasePending && m.Queue != ""
}

func validSummary(s script.Summary) bool {
	return len(s.Commit) <= 64 && strings.IndexFunc(s.Commit, notHex) < 0 && s.Files >= 0 && s.Bytes >= 0 && s.Seconds >= 0 &&
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

// cardValue is a card as status shows it: only what is known; nil for none.
func cardValue(c *script.Card) map[string]any {
	if c == nil {
		return nil
	}
	out := map[string]any{}
	setIf(out, "architecture", c.Architecture)
	setIf(out, "modelType", c.ModelType)
	setIf(out, "dtype", c.Dtype)
	setIf(out, "license", c.License)
	if c.ContextLength > 0 {
		out["contextLength"] = c.ContextLength
	}
	if c.Parameters > 0 {
		out["parameters"] = c.Parameters
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// recordedCard reads back a card that status shows.
func recordedCard(s *structpb.Struct) *script.Card {
	if s == nil {
		return nil
	}
	c := &script.Card{
		Architecture:  getString(s, "architecture"),
		ModelType:     getString(s, "modelType"),
		Dtype:         getString(s, "dtype"),
		License:       getString(s, "license"),
		ContextLength: int64(get(s, "contextLength").GetNumberValue()),
		Parameters:    int64(get(s, "parameters").GetNumberValue()),
	}
	if cardValue(c) == nil {
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
