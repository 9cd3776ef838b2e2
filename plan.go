package main

import (
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/crossplane/function-sdk-go/resource"
	"github.com/crossplane/function-sdk-go/resource/composed"

	"github.com/hfops/function-hf-download/internal/build"
	"github.com/hfops/function-hf-download/internal/decide"
	"github.com/hfops/function-hf-download/internal/naming"
	"github.com/hfops/function-hf-download/internal/read"
)

// Composing: internal/decide's decisions, model by model in spec order,
// carried out with the objects internal/build makes.

// annotationRetry on the ModelDownload retries its failed models: each
// Failed model records the value it failed under, and a new value starts a
// new attempt (kubectl annotate modeldownload x hfops.kamal.dev/retry=$(date +%s)).
const annotationRetry = "hfops.kamal.dev/retry"

// composer composes what the models' decisions ask for: their Jobs, and the
// objects every Job needs (the PVC, the script's ConfigMap, the progress
// objects).
type composer struct {
	decide.Facts
	builder  *build.Builder
	envelope build.Envelope

	// conflict are the notes on the models' directories.
	conflict []string
	// queue decides which models may start a Job now.
	queue *decide.DownloadQueue
	// scriptReady: the ConfigMap the Jobs mount exists; until it does no Job
	// starts (its pod could not).
	scriptReady bool

	desired map[string]*resource.DesiredComposed
	// checks are the checks of the models' revisions (composeChecks).
	checks []decide.Check
}

func (c *composer) compose() []decide.ModelStatus {
	spec := c.builder.Spec
	// A reclaim or check pod mounts the volume as a download pod does: each
	// holds a slot.
	for _, jobs := range []map[string][]*read.SeenJob{c.Jobs, c.Reclaims, c.Checks} {
		for _, js := range jobs {
			for _, oj := range js {
				if !oj.Deleting && !read.Terminal(oj.Phase) {
					c.queue.Active++
				}
			}
		}
	}
	switch {
	case !c.scriptReady:
		c.Prerequisite = fmt.Sprintf("waiting for the ConfigMap %q that holds the download script to be created", c.builder.ScriptMap)
	case c.builder.Platform.ServiceAccount == "" && !c.AccountObserved:
		c.Prerequisite = fmt.Sprintf("waiting for the ServiceAccount %q of the download pods to be created", c.builder.ProgressMap)
	}
	decisions := make([]decide.Decision, len(spec.Models))
	for i := range spec.Models {
		m := &spec.Models[i]
		rec, hasRec := c.Recorded[m.Name]
		d := c.Decide(m, rec, hasRec)
		if d.WantsSlot() {
			// Last: only a model that could start now takes a slot.
			if limit, why := c.queue.Admit(); limit != "" {
				d.Queued(limit, why)
			}
		}
		decisions[i] = d
	}
	// Every model is decided: an observed manifest no decision keeps is not
	// read again. Letting those go before the Jobs are built frees the
	// request's bulk (the observed Jobs) while the response grows
	// (BenchmarkRSS).
	kept := map[*read.SeenJob]bool{}
	for i := range decisions {
		for _, oj := range decisions[i].Keep {
			kept[oj] = true
		}
	}
	for _, js := range c.Jobs {
		for _, oj := range js {
			if !kept[oj] {
				oj.Manifest = nil
			}
		}
	}
	if c.ResyncEvery > 0 {
		c.composeChecks(decisions)
	}
	out := make([]decide.ModelStatus, len(spec.Models))
	for i := range spec.Models {
		m := &spec.Models[i]
		c.enact(m, &decisions[i], c.Recorded[m.Name])
		c.conflict = append(c.conflict, decisions[i].Conflicts...)
		out[i] = decisions[i].Status
	}
	return out
}

// composeReclaims decides and composes the reclaims (decide.DecideReclaims),
// after every model: a download comes first for a slot.
func (c *composer) composeReclaims(who naming.Owner) []decide.Reclaim {
	spec := c.builder.Spec
	if spec.Settings.Reclaim != read.ReclaimDelete && len(c.Reclaiming) == 0 {
		// Nothing to reclaim, nor any to start: most calls.
		return nil
	}
	c.Claims = decide.PeerClaims(c.Peers, spec.StoragePVC)
	wanted := make(map[string]bool, len(spec.Models))
	for i := range spec.Models {
		wanted[spec.Models[i].Name] = true
	}
	reclaims := c.DecideReclaims(wanted, spec.Settings.Reclaim, who)
	for i := range reclaims {
		r := &reclaims[i]
		if r.WantsSlot() {
			if limit, why := c.queue.Admit(); limit != "" {
				r.Queued(why)
			}
		}
		// A reclaim says nothing of whether the models are usable: its Job
		// never holds the XR's readiness back.
		if r.Keep != nil && len(r.Keep.Manifest.GetFields()) > 0 {
			c.desireJobAs(r.Keep.Key, build.KeepAsObserved(r.Keep.Manifest), r.Keep.Phase, resource.ReadyTrue)
		}
		if r.Compose {
			job := build.AsUnstructured(c.builder.ReclaimJob(r.Status.Name, r.Status.JobName, r.Hash, r.Status.Attempt))
			c.desireJobAs(naming.ReclaimKey(r.Status.Name, r.Hash), job, read.PhasePending, resource.ReadyTrue)
		}
	}
	return reclaims
}

// composeChecks decides and composes the checks of the completed models'
// revisions (decide.DecideCheck), after every model took its slot: a
// download comes first. A check says nothing of whether the models are
// usable (they stay Completed): its Job never holds the XR's readiness back.
func (c *composer) composeChecks(decisions []decide.Decision) {
	spec := c.builder.Spec
	for i := range decisions {
		m := &spec.Models[i]
		rec, hasRec := c.Recorded[m.Name]
		ck := c.DecideCheck(&decisions[i], m, rec, hasRec)
		if ck.Model == "" {
			continue
		}
		if ck.WantsSlot() {
			if limit, why := c.queue.Admit(); limit != "" {
				ck.Queued(&decisions[i].Status, why)
			}
		}
		if oj := ck.Keep; oj != nil && len(oj.Manifest.GetFields()) > 0 {
			c.desireJobAs(oj.Key, build.KeepAsObserved(oj.Manifest), oj.Phase, resource.ReadyTrue)
		}
		if ck.Build {
			st := &decisions[i].Status
			a := naming.Attempt{Number: st.Attempt, Hash: ck.Hash}
			job := build.AsUnstructured(c.builder.CheckJob(m, st.Resync.JobName, c.ModelHashes(m), a, st.Resync.Check))
			c.desireJobAs(naming.CheckKey(m.Name, ck.Hash), job, read.PhasePending, resource.ReadyTrue)
		}
		c.checks = append(c.checks, ck)
	}
}

// enact composes what a decision asks for.
func (c *composer) enact(m *read.ModelSpec, d *decide.Decision, rec read.RecordedModel) {
	for _, oj := range d.Keep {
		c.keep(oj, rec)
	}
	if d.Compose {
		c.desireJob(naming.ResourceKey(m.Name, d.Attempt.Hash), c.builder.Manifest(m, d.Status.JobName, d.Hashes, d.Attempt), d.Status.State.Phase())
	}
}

// keep desires an observed Job as it is. In Object mode the Object of a
// finished Job only observes it, and goes once its outcome is recorded.
func (c *composer) keep(oj *read.SeenJob, rec read.RecordedModel) {
	if oj.Object != c.envelope.Object {
		return
	}
	if c.envelope.Object && rec.Hash == oj.Hash && decide.PhaseState(rec.Phase).Terminal() {
		return
	}
	if len(oj.Manifest.GetFields()) == 0 {
		return
	}
	c.desireJob(oj.Key, build.KeepAsObserved(oj.Manifest), oj.Phase)
}

// desireJob composes a Job, in its envelope. It is ready when it completed.
// The Object of a finished Job only observes it: removing the Object then
// leaves the Job to its own TTL, and the TTL's deletion is not undone.
func (c *composer) desireJob(key string, job *unstructured.Unstructured, phase string) {
	ready := resource.ReadyFalse
	if phase == read.PhaseCompleted {
		ready = resource.ReadyTrue
	}
	c.desireJobAs(key, job, phase, ready)
}

// desireJobAs is desireJob with the readiness the caller gives: a reclaim's
// or a check's Job is ready whatever its phase, since neither says whether
// the models are usable.
func (c *composer) desireJobAs(key string, job *unstructured.Unstructured, phase string, ready resource.Ready) {
	policy := build.Manage
	if read.Terminal(phase) {
		policy = build.ObserveOnly
	}
	c.desire(key, c.envelope.Wrap(job, build.JobReadyQuery, policy), ready)
}

// desire composes an object (or what carries it) under key, unless the one
// observed there is being deleted: the TTL controller deletes in the
// foreground, so a finished Job lingers until its pods are gone, and
// applying it as it vanishes would create it again.
func (c *composer) desire(key string, obj *unstructured.Unstructured, ready resource.Ready) {
	if c.Deleting[key] {
		return
	}
	c.desired[key] = &resource.DesiredComposed{Resource: &composed.Unstructured{Unstructured: *obj}, Ready: ready}
}

// composeProgress composes the progress objects (build.ProgressObjects).
func (c *composer) composeProgress() {
	for _, o := range c.builder.ProgressObjects() {
		c.desire(o.Key, c.envelope.Wrap(build.AsUnstructured(o.Object), "", o.Policy), resource.ReadyTrue)
	}
}
