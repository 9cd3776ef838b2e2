package decide

import (
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/hfops/function-hf-download/apis/v1alpha1"
	"github.com/hfops/function-hf-download/internal/naming"
	"github.com/hfops/function-hf-download/internal/read"
)

// Reclaiming the directories of models removed from the spec, under
// settings.reclaim Delete. Status is the memory, as for the models: a model
// recorded in status.models[] on this volume but gone from the spec starts a
// reclaim, recorded in status.reclaims[] until it ends. A reclaim, once
// recorded, runs to its end whatever settings.reclaim says by then, unless
// its model comes back to the spec, which drops it (and its Job). Its Job
// starts only when no other ModelDownload of the namespace wants that
// directory on that PVC (else it is Kept, and removes nothing), the PVC is
// there, and a download slot is free (a reclaim pod mounts the volume as a
// download's does). Completed and Kept remove nothing more; Failed is tried
// again under a new value of the retry annotation.

// maxReclaimHistory bounds the finished reclaims status keeps, the oldest
// going first: they are a record, not memory the function needs.
const maxReclaimHistory = 32

// Reclaim is what the function does about one model's directory.
type Reclaim struct {
	Status v1alpha1.ReclaimStatus
	// Hash names the current attempt's Job. Compose: it is composed as the
	// function builds it; Keep: an observed Job composed again as it is
	// (a failed one, until its TTL).
	Hash    string
	Compose bool
	Keep    *read.SeenJob
	// Freed: the reclaim completed in this call.
	Freed bool
	// job is the current attempt's Job as observed.
	job *read.SeenJob
}

// WantsSlot: the reclaim would start a Job now.
func (r *Reclaim) WantsSlot() bool { return r.Compose && r.job == nil }

// Queued holds back a reclaim that wanted to start a Job.
func (r *Reclaim) Queued(why string) {
	r.Compose = false
	r.Status.Message = why
}

// Settled: the reclaim has ended.
func (r *Reclaim) Settled() bool { return reclaimEnded(r.Status.Phase) }

func reclaimEnded(phase string) bool { return read.Terminal(phase) || phase == read.PhaseKept }

// PeerClaims are the model names the other ModelDownloads of the namespace
// list on the PVC, each with who lists it: as written, valid or not, since
// a reclaim must leave alone whatever any of them may want.
func PeerClaims(peers []read.Peer, pvc string) map[string][]string {
	out := map[string][]string{}
	for _, p := range peers {
		if p.PVC != pvc {
			continue
		}
		for _, m := range p.Models {
			if !slices.Contains(out[m], p.Name) {
				out[m] = append(out[m], p.Name)
			}
		}
	}
	return out
}

// DecideReclaims decides the recorded reclaims and those of the models
// removed from the spec since the last call. wanted are the names the spec
// lists (valid or not: either wants its directory kept); reclaim is
// settings.reclaim; who names the Jobs (its PVCUID is the current volume's).
func (f *Facts) DecideReclaims(wanted map[string]bool, reclaim string, who naming.Owner) []Reclaim {
	sameVolume := f.Storage.UID == "" || f.Storage.UID == f.RecordedPVC
	if !sameVolume {
		// Every record speaks of another volume, where nothing is done.
		return nil
	}
	var out []Reclaim
	recorded := map[string]bool{}
	for _, rs := range f.Reclaiming {
		recorded[rs.Name] = true
		if !wanted[rs.Name] {
			out = append(out, f.reclaim(rs, who, wanted))
		}
	}
	if reclaim == read.ReclaimDelete && f.Storage.UID != "" {
		var removed []string
		for name := range f.Recorded {
			if !wanted[name] && !recorded[name] && read.ValidRepoID(name) {
				removed = append(removed, name)
			}
		}
		slices.Sort(removed)
		for _, name := range removed {
			out = append(out, f.reclaim(v1alpha1.ReclaimStatus{Name: name, Phase: read.PhasePending, Attempt: 1}, who, wanted))
		}
	}
	return trimHistory(out)
}

// reclaim decides one reclaim from its record.
func (f *Facts) reclaim(rs v1alpha1.ReclaimStatus, who naming.Owner, wanted map[string]bool) Reclaim {
	rs.Path = path.Join(f.MountPath, rs.Name)
	if rs.Phase == read.PhaseFailed && f.Retry != rs.Retry {
		rs.Attempt, rs.Phase, rs.Message, rs.Retry = rs.Attempt+1, read.PhasePending, "", ""
	}
	r := Reclaim{Hash: naming.ReclaimHash(who, rs.Name, rs.Attempt)}
	rs.JobName = naming.JobName(f.NameBase, "reclaim-"+rs.Name, r.Hash)
	for _, oj := range f.Reclaims[rs.Name] {
		if oj.Hash == r.Hash {
			r.job = oj
		}
	}
	r.Status = rs
	if reclaimEnded(rs.Phase) {
		// A failed Job stays for its logs until its TTL. In Object mode its
		// Object, which only observes it, goes once the failure is recorded
		// (the Job stays, orphaned), as a download's does.
		if rs.Phase == read.PhaseFailed && r.job != nil && !f.ObjectMode {
			r.Keep = r.job
		}
		return r
	}
	if oj := r.job; oj != nil && oj.Job != nil {
		f.reclaimJob(&r, oj)
		return r
	}
	if r.job != nil {
		// Composed, not made yet (an Object's Job).
		r.Compose, r.Status.Phase, r.Status.Message = true, read.PhasePending, "starting"
		return r
	}
	r.Status.Phase = read.PhasePending
	nest := nestedWith(rs.Name, wanted, f.Claims)
	switch {
	case len(f.Claims[rs.Name]) > 0:
		r.Status.Phase, r.Status.Message = read.PhaseKept, fmt.Sprintf("kept: %s on PersistentVolumeClaim %q is wanted by %s",
			rs.Path, f.PVC, strings.Join(f.Claims[rs.Name], ", "))
	case nest != "":
		r.Status.Phase, r.Status.Message = read.PhaseKept, fmt.Sprintf("kept: %s on PersistentVolumeClaim %q holds, or is inside, the directory of %s, which is still wanted",
			rs.Path, f.PVC, nest)
	case !f.Storage.Ready():
		r.Status.Message = f.Storage.Problem
	case f.Prerequisite != "":
		r.Status.Message = f.Prerequisite
	default:
		r.Compose, r.Status.Message = true, "starting"
	}
	return r
}

// reclaimJob reads the current attempt's Job into r.
func (f *Facts) reclaimJob(r *Reclaim, oj *read.SeenJob) {
	report := f.Reports[string(oj.Job.UID)]
	switch oj.Phase {
	case read.PhaseCompleted:
		r.Status.Phase, r.Status.Message, r.Freed = read.PhaseCompleted, "", true
		if rc := report.Reclaimed; rc != nil {
			r.Status.BytesFreed, r.Status.Files = &rc.BytesFreed, &rc.Files
		} else {
			r.Status.Message = "removed; what its pod reported was not read"
		}
	case read.PhaseFailed:
		r.Status.Phase, r.Keep = read.PhaseFailed, oj
		r.Status.Message = read.JoinNonEmpty("; ", report.Failure, "Job "+oj.Message)
		r.Status.Retry = f.Retry
	default:
		r.Compose, r.Status.Phase, r.Status.Message = true, oj.Phase, ""
		if oj.Phase == read.PhasePending {
			r.Status.Message = read.OrDefault(oj.Message, "starting")
		}
	}
}

// nestedWith is a model still wanted, by this ModelDownload or another on
// the PVC, whose directory is inside name's or holds it (org holds
// org/name): "" when none is.
func nestedWith(name string, wanted map[string]bool, claims map[string][]string) string {
	var found []string
	for other := range wanted {
		if nested(name, other) {
			found = append(found, other)
		}
	}
	for other := range claims {
		if nested(name, other) {
			found = append(found, other)
		}
	}
	if len(found) == 0 {
		return ""
	}
	slices.Sort(found)
	return found[0]
}

func nested(a, b string) bool { return strings.HasPrefix(a, b+"/") || strings.HasPrefix(b, a+"/") }

// trimHistory drops the oldest finished reclaims past maxReclaimHistory.
func trimHistory(rs []Reclaim) []Reclaim {
	ended := 0
	for i := range rs {
		if rs[i].Settled() {
			ended++
		}
	}
	out := rs[:0]
	for _, r := range rs {
		if r.Settled() && ended > maxReclaimHistory && r.Keep == nil {
			ended--
			continue
		}
		out = append(out, r)
	}
	return out
}

// ReclaimStatuses are status.reclaims[].
func ReclaimStatuses(rs []Reclaim) []v1alpha1.ReclaimStatus {
	if len(rs) == 0 {
		return nil
	}
	out := make([]v1alpha1.ReclaimStatus, len(rs))
	for i := range rs {
		out[i] = rs[i].Status
	}
	return out
}
