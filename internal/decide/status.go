package decide

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime"

	fnv1 "github.com/crossplane/function-sdk-go/proto/v1"

	"github.com/hfops/function-hf-download/apis/v1alpha1"
	"github.com/hfops/function-hf-download/internal/read"
	"github.com/hfops/function-hf-download/script"
)

// The XR's status, rendered from the models' states alone: phase, the
// lists, the ModelsDownloaded condition, bytes on disk. It is written as the
// API's type; read.RecordedStatus reads it back on the next call.

// ModelStatus is one entry of status.models[].
type ModelStatus struct {
	Name    string
	JobName string
	// Hash names the Job of the current attempt; Attempt numbers it.
	Hash    string
	Attempt int64
	// state is where the model stands (decide.go); status shows its phase.
	// A recorded entry's is what its phase says (PhaseState).
	State   State
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
	Queue QueueLimit
	// summary is set once the download pod reported what is on disk;
	// progress while it downloads.
	summary  *script.Summary
	Progress *script.Progress
	// CheckedAt and Resync are the checks of a completed model's revision
	// (resync.go).
	CheckedAt time.Time
	Resync    *v1alpha1.ResyncStatus
}

// StatusValue renders the XR status the function owns. pvcUID names the
// volume every entry speaks of: a completion is recorded only on it.
func StatusValue(models []ModelStatus, reclaims []Reclaim, pvcUID string) map[string]any {
	st := v1alpha1.ModelDownloadStatus{
		Pending: []string{}, Completed: []string{}, Failed: []string{},
		Models:   make([]v1alpha1.ModelStatus, len(models)),
		Reclaims: ReclaimStatuses(reclaims),
		PVCUID:   pvcUID,
	}
	for i := range models {
		m := &models[i]
		switch m.State.Phase() {
		case read.PhaseCompleted:
			st.Completed = append(st.Completed, m.Name)
		case read.PhaseFailed:
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
func (m *ModelStatus) api() v1alpha1.ModelStatus {
	e := v1alpha1.ModelStatus{
		Name: m.Name, JobName: m.JobName, Hash: m.Hash, Attempt: m.Attempt, Phase: m.State.Phase(), Message: m.Message,
		Path: m.Path, ContentHash: m.ContentHash, IntentHash: m.IntentHash, Queue: string(m.Queue),
	}
	if m.State == StateFailed {
		e.Retry = m.Retry
	}
	if p := m.Progress; p != nil && !m.State.Terminal() {
		e.Progress = &p.Progress
	}
	if s := m.summary; s != nil && m.State == StateCompleted {
		e.Commit = s.Commit
		e.Files, e.Bytes, e.DurationSeconds, e.Verified = &s.Files, &s.Bytes, &s.Seconds, &s.Verified
		e.Card = read.ShownCard(s.Card)
	}
	if m.State == StateCompleted {
		if !m.CheckedAt.IsZero() {
			e.CheckedAt = m.CheckedAt.UTC().Format(time.RFC3339)
		}
		e.Resync = m.Resync
	}
	return e
}

// summary is the ModelsDownloaded condition: its status, reason and message.
func Summary(models []ModelStatus) (fnv1.Status, string, string) {
	var done int
	var failed, waiting, queued []string
	for _, m := range models {
		switch {
		case m.State == StateCompleted:
			done++
		case m.State.Terminal():
			failed = append(failed, m.Name)
		case IsQueued(m):
			queued = append(queued, m.Name)
		default:
			waiting = append(waiting, m.Name)
		}
	}
	msg := strconv.Itoa(done) + "/" + strconv.Itoa(len(models)) + " models downloaded"
	// With a queue, how many download now and how many wait for a slot.
	progress := "in progress: " + strings.Join(waiting, ", ")
	if len(queued) > 0 {
		progress = read.JoinNonEmpty(": ", strconv.Itoa(len(waiting))+" downloading", strings.Join(waiting, ", ")) +
			"; " + strconv.Itoa(len(queued)) + " queued: " + strings.Join(queued, ", ")
	}
	switch {
	case len(failed) > 0 && len(queued) > 0:
		return fnv1.Status_STATUS_CONDITION_FALSE, "DownloadFailed", msg + "; failed: " + strings.Join(failed, ", ") + "; " + progress
	case len(failed) > 0:
		return fnv1.Status_STATUS_CONDITION_FALSE, "DownloadFailed", msg + "; failed: " + strings.Join(failed, ", ")
	case len(waiting) > 0 || len(queued) > 0:
		return fnv1.Status_STATUS_CONDITION_FALSE, "Downloading", read.JoinNonEmpty("; ", msg, progress, slowest(models))
	}
	return fnv1.Status_STATUS_CONDITION_TRUE, "Downloaded", msg
}

// IsQueued: the model waits for a download slot (queue.go).
func IsQueued(m ModelStatus) bool { return m.State == StateQueued }

// downloaded is the XR's bytes on disk out of all it will hold, in the
// decimal unit of the total (37.2/140.5 GB), for `kubectl get
// modeldownloads`: a completed model counts its summary, a running one its
// progress, any other nothing yet.
func downloaded(models []ModelStatus) string {
	var done, total int64
	for _, m := range models {
		switch {
		case m.State == StateCompleted && m.summary != nil:
			done += m.summary.Bytes
			total += m.summary.Bytes
		case m.Progress != nil:
			done += m.Progress.Bytes
			total += max(m.Progress.TotalBytes, m.Progress.Bytes)
		}
	}
	scale, unit := 1.0, "B"
	for _, u := range []string{"kB", "MB", "GB", "TB"} {
		if float64(total)/scale < 1000 {
			break
		}
		scale, unit = scale*1000, u
	}
	if unit == "B" {
		return fmt.Sprintf("%d/%d B", done, total)
	}
	return fmt.Sprintf("%.1f/%.1f %s", float64(done)/scale, float64(total)/scale, unit)
}

// slowest names the running model that will take longest, for the
// ModelsDownloaded condition: "" when no running model reported a rate.
func slowest(models []ModelStatus) string {
	var worst *ModelStatus
	for i := range models {
		m := &models[i]
		if p := m.Progress; p != nil && p.ETASeconds > 0 && (worst == nil || p.ETASeconds > worst.Progress.ETASeconds) {
			worst = m
		}
	}
	if worst == nil {
		return ""
	}
	p := worst.Progress
	return fmt.Sprintf("slowest: %s at %s/s, %s left", worst.Name, DecimalBytes(p.BytesPerSecond), (time.Duration(p.ETASeconds) * time.Second).String())
}

// DecimalBytes is n in decimal units with one decimal, as the script's
// messages give sizes.
func DecimalBytes(n int64) string {
	f, unit := float64(n), "B"
	for _, u := range []string{"kB", "MB", "GB", "TB"} {
		if f < 1000 {
			break
		}
		f, unit = f/1000, u
	}
	if unit == "B" {
		return fmt.Sprintf("%d B", n)
	}
	return fmt.Sprintf("%.1f %s", f, unit)
}
