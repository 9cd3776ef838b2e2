package decide

import (
	"strings"
	"time"

	"github.com/hfops/function-hf-download/apis/v1alpha1"
	"github.com/hfops/function-hf-download/internal/naming"
	"github.com/hfops/function-hf-download/internal/read"
	"github.com/hfops/function-hf-download/script"
)

// Checks of a completed model's revision, under settings.resyncInterval. A
// model whose revision is a branch or tag (not a commit) is checked again an
// interval after it was last checked: a check Job, the model's download Job
// with the script in its check mode (script.EnvResync), asks the Hub which
// commit the revision names now, and downloads and switches to it when it
// moved. The check belongs to the model's current attempt and never changes
// its phase: the model stays Completed, its files usable, while a check
// waits, runs or fails. Status is the memory: status.models[].checkedAt says
// when the Hub last answered, .resync the last check (numbered, so each has
// a Job of its own), and a completed check's report is the model's summary
// from then on. A failed check is tried again failedCheckWait after it
// failed; the files on disk stay as they were.

// failedCheckWait: a check that failed (the Hub down, a token refused) is
// tried again this long after, rather than at once on every call.
const failedCheckWait = time.Hour

// Check is what the function does about one model's check.
type Check struct {
	Model string
	// Hash names the current check's Job. Build: a new Job is built for it;
	// Keep: an observed Job composed again as it is (one under way, or a
	// failed one until its TTL).
	Hash  string
	Build bool
	Keep  *read.SeenJob
	// Moved: the check completed in this call and found the revision moved:
	// Now is on disk, From was. Failed: it failed in this call, saying Why.
	Moved, Failed bool
	From          string
	Now           *script.Summary
	Why           string
	// Due is when the next check is due, when none is under way.
	Due time.Time
}

// WantsSlot: the check would start a Job now.
func (c *Check) WantsSlot() bool { return c.Build }

// Under way: the check's Job is composed, or about to be.
func (c *Check) UnderWay() bool { return c.Build || c.Keep != nil && !read.Terminal(c.Keep.Phase) }

// Queued holds back a check that wanted to start a Job.
func (c *Check) Queued(st *ModelStatus, why string) {
	c.Build = false
	st.Resync.Message = why
}

// IsCommit: the revision is a full commit hash, which never moves (the
// Hub's own test, huggingface_hub's REGEX_COMMIT_HASH).
func IsCommit(revision string) bool {
	return len(revision) == 40 && strings.IndexFunc(revision, naming.NotLowerHex) < 0
}

// DecideCheck decides the check of the model that d decided (rec: its
// record), and writes it into d.Status.
func (f *Facts) DecideCheck(d *Decision, m *read.ModelSpec, rec read.RecordedModel, hasRec bool) Check {
	st := &d.Status
	if st.State != StateCompleted || f.ResyncEvery == 0 || IsCommit(m.Revision) {
		return Check{}
	}
	if hasRec && rec.Hash == st.Hash && PhaseState(rec.Phase) == StateCompleted {
		st.CheckedAt, st.Resync = rec.CheckedAt, cloneResync(rec.Resync)
		if rec.Resync != nil && rec.Summary != nil {
			// A check's report is newer than the download pod's.
			st.summary = rec.Summary
		}
	}
	if st.CheckedAt.IsZero() {
		// The download completed: it asked the Hub then.
		st.CheckedAt = f.Now
		if oj := d.Job; oj != nil && oj.Job != nil {
			if at := f.Reports[string(oj.Job.UID)].SucceededAt; !at.IsZero() {
				st.CheckedAt = at
			}
		}
	}
	c := Check{Model: st.Name}
	rs := st.Resync
	if rs == nil || read.Terminal(rs.Phase) {
		due := st.CheckedAt.Add(f.ResyncEvery)
		if rs != nil && rs.Phase == read.PhaseFailed {
			due = read.ParseTime(rs.FailedAt).Add(failedCheckWait)
			if oj := f.checkJob(st.Name, naming.CheckHash(st.Hash, rs.Check)); oj != nil && !f.ObjectMode {
				// Its logs say why, until its TTL.
				c.Keep = oj
			}
		}
		if f.Now.Before(due) {
			c.Due = due
			return c
		}
		next := &v1alpha1.ResyncStatus{Check: 1, Phase: read.PhasePending}
		if rs != nil {
			next.Check, next.MovedFrom, next.MovedAt = min(rs.Check+1, read.MaxAttempt-1), rs.MovedFrom, rs.MovedAt
		}
		rs, st.Resync, c.Keep = next, next, nil
	}
	if rs.Phase == read.PhaseRunning && f.checkJob(st.Name, naming.CheckHash(st.Hash, rs.Check)) == nil {
		// Its Job was lost mid-run: the check starts over under a name of
		// its own, as a download's attempt does.
		rs.Check = min(rs.Check+1, read.MaxAttempt-1)
	}
	c.Hash = naming.CheckHash(st.Hash, rs.Check)
	rs.JobName = naming.JobName(f.NameBase, "resync-"+st.Name, c.Hash)
	oj := f.checkJob(st.Name, c.Hash)
	switch {
	case oj != nil && oj.Job != nil:
		f.checkEnded(&c, st, oj)
	case oj != nil:
		// Composed, not made yet (an Object's Job).
		c.Keep, rs.Phase, rs.Message = oj, read.PhasePending, "starting"
	case !f.Token.Usable():
		rs.Phase, rs.Message = read.PhasePending, "waiting for the Hugging Face token: "+f.Token.Problem
	case f.Prerequisite != "":
		rs.Phase, rs.Message = read.PhasePending, f.Prerequisite
	default:
		c.Build, rs.Phase, rs.Message = true, read.PhasePending, "starting"
	}
	return c
}

// checkEnded reads the current check's Job into c and st.
func (f *Facts) checkEnded(c *Check, st *ModelStatus, oj *read.SeenJob) {
	rs := st.Resync
	report := f.Reports[string(oj.Job.UID)]
	switch oj.Phase {
	case read.PhaseCompleted:
		s := report.Summary
		if s == nil {
			// What is on disk is not known: the commit is not claimed.
			rs.Phase, rs.FailedAt = read.PhaseFailed, f.Now.UTC().Format(time.RFC3339)
			rs.Message = "the check's Job completed, but what its pod reported was not read: the commit on disk is not known until the next check"
			if st.summary != nil {
				unknown := *st.summary
				unknown.Commit = ""
				st.summary = &unknown
			}
			return
		}
		at := report.SucceededAt
		if at.IsZero() {
			at = f.Now
		}
		rs.Phase, rs.Message, rs.FailedAt = read.PhaseCompleted, "", ""
		if st.summary == nil || st.summary.Commit != s.Commit {
			rs.MovedAt = at.UTC().Format(time.RFC3339)
			rs.MovedFrom, c.Moved, c.Now = "", true, s
			if st.summary != nil {
				rs.MovedFrom = st.summary.Commit
			}
			c.From, st.summary = rs.MovedFrom, s
		}
		st.CheckedAt = at
	case read.PhaseFailed:
		rs.Phase, rs.FailedAt, c.Failed = read.PhaseFailed, f.Now.UTC().Format(time.RFC3339), true
		rs.Message = read.JoinNonEmpty("; ", f.Token.Scrub(report.Failure), "Job "+oj.Message)
		// Observed only from now on: in Object mode its Object goes once
		// the failure is recorded, leaving the Job to its TTL.
		c.Why, c.Keep = rs.Message, oj
	default:
		c.Keep, rs.Phase, rs.Message = oj, oj.Phase, ""
		if oj.Phase == read.PhasePending {
			rs.Message = read.OrDefault(oj.Message, "starting")
		}
	}
}

// checkJob is the observed check Job of model named by hash, if any.
func (f *Facts) checkJob(model, hash string) *read.SeenJob {
	for _, oj := range f.Checks[model] {
		if oj.Hash == hash {
			return oj
		}
	}
	return nil
}

func cloneResync(r *v1alpha1.ResyncStatus) *v1alpha1.ResyncStatus {
	if r == nil {
		return nil
	}
	c := *r
	return &c
}
