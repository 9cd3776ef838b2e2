package decide

import (
	"fmt"

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

// QueuedPrefix starts the message of every queued model, and
// NamespaceLimitReached is in it when the namespace's limit holds it back;
// for people: status.models[].queue says the same for peers and tools.
const (
	QueuedPrefix          = "queued: "
	NamespaceLimitReached = "the namespace's limit of active download Jobs is reached"
)

// QueueLimit is the limit that holds a queued model back, as
// status.models[].queue names it ("" when the model is not queued). Peers
// count the models that wait for the namespace's slots by it.
type QueueLimit string

const (
	QueueVolume        QueueLimit = "Volume"        // a ReadWriteOncePod PVC: one download at a time
	QueueModelDownload QueueLimit = "ModelDownload" // settings.maxParallel
	QueueNamespace     QueueLimit = "Namespace"     // the Input's maxActiveJobsPerNamespace
)

// DownloadQueue decides, model by model in spec order, whether a new Job may
// start now.
type DownloadQueue struct {
	// limit bounds this ModelDownload's active Jobs; 0: none. by is where
	// it comes from, and why says so in the message.
	limit int
	by    QueueLimit
	why   string
	// active counts this ModelDownload's Jobs running or about to.
	Active int
	// queued counts the models queued so far in this call.
	queued int
	// namespace, when the Input sets a namespace limit.
	Namespace *namespaceShare
}

// namespaceShare is this ModelDownload's share of the namespace's free slots.
type namespaceShare struct {
	limit int
	// granted is how many new Jobs the fair hand-out gives this
	// ModelDownload; used counts those started.
	granted, used int
}

// NewDownloadQueue is the queue of one call: rwop (the PVC's access mode)
// and maxParallel limit the ModelDownload.
func NewDownloadQueue(pvc string, rwop bool, maxParallel int64) *DownloadQueue {
	q := &DownloadQueue{}
	if maxParallel > 0 {
		q.limit, q.by = int(maxParallel), QueueModelDownload
	}
	if rwop && (q.limit == 0 || q.limit > 1) {
		q.limit, q.by = 1, QueueVolume
		q.why = fmt.Sprintf("PersistentVolumeClaim %q is ReadWriteOncePod, so its downloads run one at a time", pvc)
	}
	return q
}

// admit says whether a model may start a new Job now and, if it may not,
// which limit holds it back and its queued message. A model admitted counts
// as active at once.
func (q *DownloadQueue) Admit() (QueueLimit, string) {
	ns := q.Namespace
	switch {
	case q.limit > 0 && q.Active >= q.limit:
		return q.by, q.wait(q.why)
	case ns != nil && ns.used >= ns.granted:
		return QueueNamespace, q.wait(fmt.Sprintf("%s (%d)", NamespaceLimitReached, ns.limit))
	}
	q.Active++
	if ns != nil {
		ns.used++
	}
	return "", ""
}

func (q *DownloadQueue) wait(why string) string {
	msg := fmt.Sprintf("%s%d ahead", QueuedPrefix, q.queued)
	q.queued++
	if why != "" {
		msg += "; " + why
	}
	return msg
}

// claimant is one ModelDownload wanting slots in the namespace: its Jobs'
// parent label, its active Jobs, how many more it would start (-1: as many as
// it gets), and when its newest Job was created (RFC 3339; "" if none).
type Claimant struct {
	Parent    string
	Active    int
	Wants     int
	LastStart string
}

// HandOut gives the free slots one at a time and returns how many go to the
// claimant whose parent label is self.
func HandOut(free int, cs []Claimant, self string) int {
	got := 0
	for ; free > 0; free-- {
		best := -1
		for i := range cs {
			c := &cs[i]
			if c.Wants == 0 {
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
		c.Active++
		if c.Wants > 0 {
			c.Wants--
		}
		if c.Parent == self {
			got++
		}
	}
	return got
}

func (c *Claimant) before(o *Claimant) bool {
	if c.Active != o.Active {
		return c.Active < o.Active
	}
	if c.LastStart != o.LastStart {
		return c.LastStart < o.LastStart // "" (never started) first
	}
	return c.Parent < o.Parent
}

// share is this ModelDownload's share (self, its Jobs' parent label) of the
// namespace's free slots, from the namespace's Jobs and its peers' status.
func Share(limit int, jobs []read.NamespaceJob, peers []read.Peer, self string) *namespaceShare {
	byParent := map[string]*Claimant{self: {Parent: self, Wants: -1}}
	claim := func(parent string) *Claimant {
		c, ok := byParent[parent]
		if !ok {
			c = &Claimant{Parent: parent}
			byParent[parent] = c
		}
		return c
	}
	active := 0
	for _, j := range jobs {
		c := claim(j.Parent)
		if j.Active {
			active++
			c.Active++
		}
		c.LastStart = max(c.LastStart, j.Created)
	}
	for _, p := range peers {
		parent := naming.LabelValue(p.Name)
		if parent == self {
			continue
		}
		if n := QueuedForNamespace(p.Recorded); n > 0 {
			claim(parent).Wants += n
		}
	}
	cs := make([]Claimant, 0, len(byParent))
	for _, c := range byParent {
		cs = append(cs, *c)
	}
	return &namespaceShare{limit: limit, granted: HandOut(limit-active, cs, self)}
}

// QueuedForNamespace counts a peer's models that its status says wait for the
// namespace's limit (queue: Namespace). A model held back by its own
// ModelDownload's limit could not use a slot, so it does not count.
func QueuedForNamespace(recorded map[string]read.RecordedModel) int {
	n := 0
	for _, rec := range recorded {
		if rec.Phase == read.PhasePending && QueueLimit(rec.Queue) == QueueNamespace {
			n++
		}
	}
	return n
}
