package read

import (
	"reflect"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/structpb"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"

	"github.com/hfops/function-hf-download/apis/v1alpha1"
	"github.com/hfops/function-hf-download/internal/decode"
	"github.com/hfops/function-hf-download/internal/naming"
	"github.com/hfops/function-hf-download/script"
)

// The status as it was recorded, and how an observed Job ended: what the
// last call wrote, and what the Job controller says, read as facts for
// deciding. Both speak in the API's phases.

// Phases of a model in status.models[].phase.
const (
	PhasePending   = "Pending"
	PhaseRunning   = "Running"
	PhaseCompleted = "Completed"
	PhaseFailed    = "Failed"
)

// Terminal: a model or Job in this phase has ended.
func Terminal(phase string) bool { return phase == PhaseCompleted || phase == PhaseFailed }

// JobPhase is a Job's phase: how it ended (JobEnd), else Running while it
// has an active pod.
func JobPhase(job *batchv1.Job) (phase, message string) {
	if phase, message = JobEnd(job.Status.Conditions); phase != PhasePending || message != "" {
		return phase, message
	}
	if job.Status.Active > 0 {
		return PhaseRunning, ""
	}
	return PhasePending, ""
}

// JobEnd is the one place that reads whether, and how, a Job ended: from
// its conditions, as the Job controller sets them. Jobs have no Ready
// condition: Complete and Failed (True) are the terminal ones, whatever
// else the list holds and in whatever order; Suspended holds a Job that has
// not ended; anything else is Pending here. The namespace queue, the status
// and readiness all take a Job's end from it, and jobReadyQuery says the same
// to people reading an Object (TestJobReadyQueryIsJobEnd).
func JobEnd(conditions []batchv1.JobCondition) (phase, message string) {
	suspended := false
	for _, c := range conditions {
		if c.Status != corev1.ConditionTrue {
			continue
		}
		switch c.Type {
		case batchv1.JobComplete:
			return PhaseCompleted, ""
		case batchv1.JobFailed:
			return PhaseFailed, JoinNonEmpty(": ", c.Reason, c.Message)
		case batchv1.JobSuspended:
			suspended = true
		}
	}
	if suspended {
		return PhasePending, "the Job is suspended"
	}
	return PhasePending, ""
}

// MaxAttempt bounds the attempt numbers read back from status and Jobs.
const MaxAttempt = 1 << 31

// RecordedModel is one entry of status.models[] as the last call wrote
// it: the function's memory of a model.
type RecordedModel struct {
	Name, JobName string
	// Hash names the Job of the recorded attempt; Attempt numbers it.
	Hash    string
	Attempt int64
	Phase   string
	Message string
	Path    string
	// ContentHash and IntentHash are the hashes the attempt was made
	// under (naming.Hashes).
	ContentHash, IntentHash string
	Retry                   string
	// Queue is the limit that held the model back, if it was queued.
	Queue string
	// summary is what the pod reported on disk, when it passes the
	// script's checks.
	Summary *script.Summary
	// CheckedAt and Resync are the checks of the revision
	// (settings.resyncInterval): when it was last checked, and the last
	// check.
	CheckedAt time.Time
	Resync    *v1alpha1.ResyncStatus
}

// RecordedStatus reads status.models[] of the observed XR, keyed by model
// name. It is read leniently: a value of the wrong type (a status edited by
// hand) is read as absent.
func RecordedStatus(xr *structpb.Struct) map[string]RecordedModel {
	entries := recordedList[v1alpha1.ModelStatus](xr, "models")
	if len(entries) == 0 {
		return nil
	}
	out := make(map[string]RecordedModel, len(entries))
	for i := range entries {
		e := &entries[i]
		rec := RecordedModel{
			Name:        e.Name,
			JobName:     e.JobName,
			Hash:        e.Hash,
			Phase:       e.Phase,
			Message:     e.Message,
			Path:        e.Path,
			ContentHash: e.ContentHash,
			IntentHash:  e.IntentHash,
			Retry:       e.Retry,
			Queue:       e.Queue,
		}
		// Only a positive attempt is one; anything else, as if none was
		// recorded.
		if e.Attempt >= 1 && e.Attempt <= MaxAttempt {
			rec.Attempt = e.Attempt
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
				Card:     ShownCard(e.Card),
			}
			if validSummary(sum) {
				rec.Summary = &sum
			}
		}
		rec.CheckedAt = ParseTime(e.CheckedAt)
		if r := e.Resync; r != nil && r.Check >= 1 && r.Check < MaxAttempt {
			rec.Resync = r
		}
		out[rec.Name] = rec
	}
	return out
}

// ParseTime reads a time as the API writes it (RFC 3339); the zero time for
// anything else. Most are absent, which costs nothing (time.Parse would
// allocate its error for each).
func ParseTime(s string) time.Time {
	if s == "" {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}
	}
	return t
}

// recordedList decodes the list status.<name>[] of the observed XR, the
// function's memory, by the API's schema and leniently: a value of the
// wrong type is read as absent.
func recordedList[T any](xr *structpb.Struct, name string) []T {
	v := Get(xr, "status", name)
	if len(v.GetListValue().GetValues()) == 0 {
		return nil
	}
	var entries []T
	d := &decode.Decoder{}
	d.Value(field.NewPath("status", name), v, decode.ModelDownload().Properties["status"].Properties[name], reflect.ValueOf(&entries).Elem())
	return entries
}

// RecordedPVC is the volume the recorded status speaks of.
func RecordedPVC(xr *structpb.Struct) string { return GetString(xr, "status", "pvcUID") }

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

// ShownCard is a card as status shows it: nil for one that knows nothing.
func ShownCard(c *script.Card) *script.Card {
	if c == nil || *c == (script.Card{}) {
		return nil
	}
	return c
}

func JoinNonEmpty(sep string, parts ...string) string {
	out := parts[:0:0]
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, sep)
}
