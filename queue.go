package main

import (
	"fmt"

	"google.golang.org/protobuf/types/known/structpb"

	fnv1 "github.com/crossplane/function-sdk-go/proto/v1"

	"github.com/hfops/function-hf-download/internal/decode"
	"github.com/hfops/function-hf-download/internal/naming"
	"github.com/hfops/function-hf-download/internal/read"
)

// The download queue, without a controller: the function decides on every
// call which Jobs exist, so a model that may not start now simply gets no
// Job, stays Pending with a "queued" message, and is looked at again on the
// next call (ttlWaiting while anything is queued). Three limits apply, each
// only when set, and a Job that already exists is never taken away by them:
//
//   - a ReadWriteOncePod PVC takes one download at a time;
//   - settings.maxParallel bounds the ModelDownload's own active Jobs;
//   - the Input's maxActiveJobsPerNamespace bounds the namespace's active
//     download Jobs, whichever ModelDownload they belong to.
//
// Models are admitted in spec order. The namespace's free slots are shared
// fairly: every ModelDownload computes, from the same observations (the
// namespace's download Jobs and its peers' status), how the free slots are
// handed out one at a time, each to the claimant with the fewest active Jobs,
// then to the one whose newest Job is oldest (so none takes every slot while
// others wait), then by name; it starts only the Jobs that hand-out gives it.

// requirementNamespaceJobs: the namespace's download Jobs, asked for only
// when the Input sets a namespace limit.
const requirementNamespaceJobs = "namespace-download-jobs"

// queuedPrefix starts the message of every queued model, and
// namespaceLimitReached is in it when the namespace's limit holds it back;
// for people: status.models[].queue says the same for peers and tools.
const (
	queuedPrefix          = "queued: "
	namespaceLimitReached = "the namespace's limit of active download Jobs is reached"
)

// queueLimit is the limit that holds a queued model back, as
// status.models[].queue names it ("" when the model is not queued). Peers
// count the models that wait for the namespace's slots by it.
type queueLimit string

const (
	queueVolume        queueLimit = "Volume"        // a ReadWriteOncePod PVC: one download at a time
	queueModelDownload queueLimit = "ModelDownload" // settings.maxParallel
	queueNamespace     queueLimit = "Namespace"     // the Input's maxActiveJobsPerNamespace
)

// downloadQueue decides, model by model in spec order, whether a new Job may
// start now.
type downloadQueue struct {
	// limit bounds this ModelDownload's active Jobs; 0: none. by is where
	// it comes from, and why says so in the message.
	limit int
	by    queueLimit
	why   string
	// active counts this ModelDownload's Jobs running or about to.
	active int
	// queued counts the models queued so far in this call.
	queued int
	// namespace, when the Input sets a namespace limit.
	namespace *namespaceShare
}

// namespaceShare is this ModelDownload's share of the namespace's free slots.
type namespaceShare struct {
	limit int
	// granted is how many new Jobs the fair hand-out gives this
	// ModelDownload; used counts those started.
	granted, used int
}

// newDownloadQueue is the queue of one call: rwop (the PVC's access mode)
// and maxParallel limit the ModelDownload.
func newDownloadQueue(pvc string, rwop bool, maxParallel int64) *downloadQueue {
	q := &downloadQueue{}
	if maxParallel > 0 {
		q.limit, q.by = int(maxParallel), queueModelDownload
	}
	if rwop && (q.limit == 0 || q.limit > 1) {
		q.limit, q.by = 1, queueVolume
		q.why = fmt.Sprintf("PersistentVolumeClaim %q is ReadWriteOncePod, so its downloads run one at a time", pvc)
	}
	return q
}

// admit says whether a model may start a new Job now and, if it may not,
// which limit holds it back and its queued message. A model admitted counts
// as active at once.
func (q *downloadQueue) admit() (queueLimit, string) {
	ns := q.namespace
	switch {
	case q.limit > 0 && q.active >= q.limit:
		return q.by, q.wait(q.why)
	case ns != nil && ns.used >= ns.granted:
		return queueNamespace, q.wait(fmt.Sprintf("%s (%d)", namespaceLimitReached, ns.limit))
	}
	q.active++
	if ns != nil {
		ns.used++
	}
	return "", ""
}

func (q *downloadQueue) wait(why string) string {
	msg := fmt.Sprintf("%s%d ahead", queuedPrefix, q.queued)
	q.queued++
	if why != "" {
		msg += "; " + why
	}
	return msg
}

// claimant is one ModelDownload wanting slots in the namespace: its Jobs'
// parent label, its active Jobs, how many more it would start (-1: as many as
// it gets), and when its newest Job was created (RFC 3339; "" if none).
type claimant struct {
	parent    string
	active    int
	wants     int
	lastStart string
}

// handOut gives the free slots one at a time and returns how many go to the
// claimant whose parent label is self.
func handOut(free int, cs []claimant, self string) int {
	got := 0
	for ; free > 0; free-- {
		best := -1
		for i := range cs {
			c := &cs[i]
			if c.wants == 0 {
				continue
			}
			if best < 0 || c.before(&cs[best]) {
				best = i
			}
		}
		if best < 0 {
			break
		}
		c := &cs[best]
		c.active++
		if c.wants > 0 {
			c.wants--
		}
		if c.parent == self {
			got++
		}
	}
	return got
}

func (c *claimant) before(o *claimant) bool {
	if c.active != o.active {
		return c.active < o.active
	}
	if c.lastStart != o.lastStart {
		return c.lastStart < o.lastStart // "" (never started) first
	}
	return c.parent < o.parent
}

// namespaceJobsRequirement asks for the namespace's download Jobs, of every
// ModelDownload.
func namespaceJobsRequirement(namespace string) *fnv1.ResourceSelector {
	return &fnv1.ResourceSelector{
		ApiVersion: "batch/v1",
		Kind:       "Job",
		Namespace:  &namespace,
		Match:      &fnv1.ResourceSelector_MatchLabels{MatchLabels: &fnv1.MatchLabels{Labels: map[string]string{naming.LabelApp: naming.AppName}}},
	}
}

// namespaceJob is what the queue needs of one download Job in the namespace.
type namespaceJob struct {
	parent  string
	created string
	active  bool
}

// readNamespaceJobs reads the namespace's download Jobs that Crossplane
// fetched for requirementNamespaceJobs.
func readNamespaceJobs(r *fnv1.Resources) []namespaceJob {
	items := r.GetItems()
	out := make([]namespaceJob, 0, len(items))
	for _, it := range items {
		j := it.GetResource()
		out = append(out, namespaceJob{
			parent:  read.GetString(j, "metadata", "labels", naming.LabelParent),
			created: read.GetString(j, "metadata", "creationTimestamp"),
			active:  !decode.Present(read.Get(j, "metadata", "deletionTimestamp")) && !finishedJob(j),
		})
	}
	return out
}

// finishedJob: a Job that ended, as jobPhase reads it (an unreadable
// status: not ended, so its slot stays taken).
func finishedJob(j *structpb.Struct) bool {
	job, err := read.ReadJobStatus(j)
	if err != nil {
		return false
	}
	phase, _ := read.JobPhase(job)
	return terminal(phase)
}

// share is this ModelDownload's share (self, its Jobs' parent label) of the
// namespace's free slots, from the namespace's Jobs and its peers' status.
func share(limit int, jobs []namespaceJob, peers []*structpb.Struct, selfXR read.Identity, self string) *namespaceShare {
	byParent := map[string]*claimant{self: {parent: self, wants: -1}}
	claim := func(parent string) *claimant {
		c, ok := byParent[parent]
		if !ok {
			c = &claimant{parent: parent}
			byParent[parent] = c
		}
		return c
	}
	active := 0
	for _, j := range jobs {
		c := claim(j.parent)
		if j.active {
			active++
			c.active++
		}
		c.lastStart = max(c.lastStart, j.created)
	}
	for _, xr := range peers {
		name := read.GetString(xr, "metadata", "name")
		if uid := read.GetString(xr, "metadata", "uid"); name == selfXR.Name || uid != "" && uid == selfXR.UID ||
			decode.Present(read.Get(xr, "metadata", "deletionTimestamp")) {
			continue
		}
		parent := naming.LabelValue(read.OrDefault(read.GetString(xr, "metadata", "labels", claimNameLabel), name))
		if parent == self {
			continue
		}
		if n := queuedForNamespace(xr); n > 0 {
			claim(parent).wants += n
		}
	}
	cs := make([]claimant, 0, len(byParent))
	for _, c := range byParent {
		cs = append(cs, *c)
	}
	return &namespaceShare{limit: limit, granted: handOut(limit-active, cs, self)}
}

// queuedForNamespace counts a peer's models that its status says wait for the
// namespace's limit (queue: Namespace). A model held back by its own
// ModelDownload's limit could not use a slot, so it does not count.
func queuedForNamespace(xr *structpb.Struct) int {
	n := 0
	for _, e := range read.Get(xr, "status", "models").GetListValue().GetValues() {
		m := e.GetStructValue()
		if read.GetString(m, "phase") == read.PhasePending && queueLimit(read.GetString(m, "queue")) == queueNamespace {
			n++
		}
	}
	return n
}
