package read

import (
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/hfops/function-hf-download/apis/v1alpha1"
	"github.com/hfops/function-hf-download/script"
)

// Reclaiming a removed model's directory (settings.reclaim Delete): the
// setting, the reclaims the last call recorded, and what a reclaim pod
// reported.

// Values of settings.reclaim.
const (
	ReclaimRetain = "Retain"
	ReclaimDelete = "Delete"
)

// PhaseKept: a reclaim that removed nothing, because another ModelDownload
// wants the directory. Reclaims share the models' other phases.
const PhaseKept = "Kept"

// RecordedReclaims reads status.reclaims[] of the observed XR, in order,
// as leniently as RecordedStatus: an entry whose name is no repo id, or
// whose phase is none of the API's, is dropped (a status edited by hand
// must never name a directory outside the mount).
func RecordedReclaims(xr *structpb.Struct) []v1alpha1.ReclaimStatus {
	entries := recordedList[v1alpha1.ReclaimStatus](xr, "reclaims")
	out := entries[:0]
	seen := map[string]bool{}
	for _, e := range entries {
		switch {
		case !ValidRepoID(e.Name), seen[e.Name]:
		case e.Phase != PhasePending && e.Phase != PhaseRunning && !Terminal(e.Phase) && e.Phase != PhaseKept:
		default:
			if e.Attempt < 1 || e.Attempt > MaxAttempt {
				e.Attempt = 1
			}
			seen[e.Name] = true
			out = append(out, e)
		}
	}
	return out
}

// ValidRepoID: name is a repo id the API accepts, and so a directory
// inside the mount.
func ValidRepoID(name string) bool { return repoIDProblem(name) == "" }

// parseReclaimed accepts exactly one JSON object with script.Reclaimed's
// fields, both non-negative.
func parseReclaimed(msg string) (script.Reclaimed, bool) {
	r, ok := decodeReport[script.Reclaimed](msg)
	return r, ok && r.BytesFreed >= 0 && r.Files >= 0
}
