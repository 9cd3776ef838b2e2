package main

import (
	"fmt"
	"strings"
	"testing"

	fnv1 "github.com/crossplane/function-sdk-go/proto/v1"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/hfops/function-hf-download/internal/decide"
	"github.com/hfops/function-hf-download/internal/naming"
	"github.com/hfops/function-hf-download/internal/read"
)

// fiveModels is a ModelDownload of five models, org/a to org/e, with settings
// added.
func fiveModels(settings string) string {
	spec := "storagePVC: models\nhfTokenRef:\n  name: hf\n"
	if settings != "" {
		spec += "settings:\n" + indent(settings) + "\n"
	}
	spec += "models:\n"
	for _, m := range []string{"a", "b", "c", "d", "e"} {
		spec += "- name: org/" + m + "\n"
	}
	return spec
}

// activeJobs lists the models whose Job exists in the apiserver and has not
// finished, for the ModelDownload parent ("" for any).
func activeJobs(api *apiServer, parent string) []string {
	var out []string
	for _, name := range sortedKeys(api.jobs) {
		j := api.jobs[name]
		if parent != "" && read.GetString(j, "metadata", "labels", naming.LabelParent) != parent {
			continue
		}
		if jobActive(j) {
			out = append(out, read.GetString(j, "metadata", "annotations", naming.AnnotationModel))
		}
	}
	return out
}

// queueState is each model's phase, and when queued the limit its status
// names and its message.
func queueState(s *xrSim, models ...string) map[string]string {
	out := map[string]string{}
	for _, m := range models {
		e := s.entry(m)
		out[m] = e["phase"]
		if e["queue"] != "" || strings.HasPrefix(e["message"], decide.QueuedPrefix) {
			out[m] += " " + e["queue"] + " " + e["message"]
		}
	}
	return out
}

var abcde = []string{"org/a", "org/b", "org/c", "org/d", "org/e"}

// TestMaxParallelQueue drives settings.maxParallel as Crossplane would: the
// first two models start, the others wait in spec order and start as earlier
// ones complete or fail; lowering the limit deletes no running Job, raising it
// starts more at once; no more Jobs are active than the limit at any call.
func TestMaxParallelQueue(t *testing.T) {
	for mode, toXR := range map[string]func(string) string{"JobMode": xrYAML, "ObjectMode": claimXR} {
		t.Run(mode, func(t *testing.T) {
			api := newAPIServer()
			s := newXRSim(t, api, toXR(fiveModels("maxParallel: 2")))
			limit := 2
			step := func(what string, want map[string]string) {
				t.Helper()
				s.reconcile()
				if got := activeJobs(api, ""); len(got) > limit {
					t.Fatalf("%s: %d Jobs active (%v), over the limit of %d", what, len(got), got, limit)
				}
				if diff := cmp.Diff(want, queueState(s, abcde...)); diff != "" {
					t.Fatalf("%s: models (-want +got):\n%s", what, diff)
				}
			}
			queued := func(ahead int) string {
				return fmt.Sprintf("%s %s %s%d ahead", read.PhasePending, decide.QueueModelDownload, decide.QueuedPrefix, ahead)
			}

			step("first call", map[string]string{"org/a": read.PhasePending, "org/b": read.PhasePending,
				"org/c": queued(0), "org/d": queued(1), "org/e": queued(2)})
			if s.xrReady() || s.last.GetMeta().GetTtl().AsDuration() != ttlWaiting {
				t.Fatalf("with models queued: XR ready %v, TTL %v; want not ready, called again after %v", s.xrReady(), s.last.GetMeta().GetTtl().AsDuration(), ttlWaiting)
			}
			if c := s.condition(conditionDownloaded); c.GetMessage() != "0/5 models downloaded; 2 downloading: org/a, org/b; 3 queued: org/c, org/d, org/e" {
				t.Fatalf("ModelsDownloaded says %q", c.GetMessage())
			}
			s.start("org/a")
			s.start("org/b")
			step("both running", map[string]string{"org/a": read.PhaseRunning, "org/b": read.PhaseRunning,
				"org/c": queued(0), "org/d": queued(1), "org/e": queued(2)})

			s.finish("org/a", true, `{"commit":"abc","files":1,"bytes":1,"seconds":1}`)
			step("org/a completed", map[string]string{"org/a": read.PhaseCompleted, "org/b": read.PhaseRunning,
				"org/c": read.PhasePending, "org/d": queued(0), "org/e": queued(1)})

			s.finish("org/b", false, accessDenied)
			step("org/b failed", map[string]string{"org/a": read.PhaseCompleted, "org/b": read.PhaseFailed,
				"org/c": read.PhasePending, "org/d": read.PhasePending, "org/e": queued(0)})
			s.start("org/c")
			s.start("org/d")

			limit = 1
			running := activeJobs(api, "")
			s.setSpec(`"maxParallel":2`, `"maxParallel":1`)
			// Lowering the limit takes no running Job away: both stay until they end.
			limit = 2
			step("limit lowered to 1", map[string]string{"org/a": read.PhaseCompleted, "org/b": read.PhaseFailed,
				"org/c": read.PhaseRunning, "org/d": read.PhaseRunning, "org/e": queued(0)})
			if got := activeJobs(api, ""); !cmp.Equal(got, running) {
				t.Fatalf("lowering the limit changed the running Jobs: %v, were %v", got, running)
			}
			s.finish("org/c", true, `{"commit":"abc","files":1,"bytes":1,"seconds":1}`)
			limit = 1
			step("org/c completed under a limit of 1: org/d still runs, so org/e waits", map[string]string{"org/a": read.PhaseCompleted, "org/b": read.PhaseFailed,
				"org/c": read.PhaseCompleted, "org/d": read.PhaseRunning, "org/e": queued(0)})

			limit = 5
			s.setSpec(`"maxParallel":1`, `"maxParallel":5`)
			step("limit raised to 5", map[string]string{"org/a": read.PhaseCompleted, "org/b": read.PhaseFailed,
				"org/c": read.PhaseCompleted, "org/d": read.PhaseRunning, "org/e": read.PhasePending})
			s.finish("org/d", true, `{"commit":"abc","files":1,"bytes":1,"seconds":1}`)
			s.finish("org/e", true, `{"commit":"abc","files":1,"bytes":1,"seconds":1}`)
			s.reconcile()
			if c := s.condition(conditionDownloaded); !strings.HasSuffix(c.GetMessage(), "failed: org/b") {
				t.Fatalf("all done but org/b: ModelsDownloaded says %q", c.GetMessage())
			}
		})
	}
}

// TestQueueAdmitsInSpecOrder: whichever limit holds models back, they start
// in the order the spec lists them, not by name (org/c, then org/a, then
// org/b), each queued model counting the ones ahead of it in that order.
func TestQueueAdmitsInSpecOrder(t *testing.T) {
	order := []string{"org/c", "org/a", "org/b"}
	spec := func(settings string) string {
		s := "storagePVC: models\nhfTokenRef:\n  name: hf\n" + settings + "models:\n"
		for _, m := range order {
			s += "- name: " + m + "\n"
		}
		return s
	}
	for _, tc := range []struct {
		name     string
		settings string
		limit    func(s *xrSim)
		queue    decide.QueueLimit
	}{
		{name: "maxParallel", settings: "settings:\n  maxParallel: 1\n", limit: func(*xrSim) {}, queue: decide.QueueModelDownload},
		{name: "ReadWriteOncePod", limit: func(s *xrSim) { s.api.pvc = pvcResource(testPVCUID, "ReadWriteOncePod") }, queue: decide.QueueVolume},
		{name: "NamespaceLimit", limit: func(s *xrSim) { s.input = inputHeader + "maxActiveJobsPerNamespace: 1\n" }, queue: decide.QueueNamespace},
	} {
		t.Run(tc.name, func(t *testing.T) {
			specModes(t, spec(tc.settings), func(t *testing.T, s *xrSim) {
				tc.limit(s)
				for i, next := range order {
					s.reconcile()
					if got := activeJobs(s.api, ""); !cmp.Equal(got, []string{next}) {
						t.Fatalf("call %d: active Jobs of %v, want %s alone: models start in spec order %v, not by name", i+1, got, next, order)
					}
					for ahead, m := range order[i+1:] {
						if msg, want := s.entry(m)["message"], fmt.Sprintf("%s%d ahead", decide.QueuedPrefix, ahead); !strings.HasPrefix(msg, want) {
							t.Fatalf("call %d: %s says %q, want %q", i+1, m, msg, want)
						}
						if got := s.entry(m)["queue"]; got != string(tc.queue) {
							t.Fatalf("call %d: %s is queued by %q, want %q", i+1, m, got, tc.queue)
						}
					}
					s.finish(next, true, `{"commit":"abc","files":1,"bytes":1,"seconds":1}`)
				}
				s.reconcile()
				if !s.xrReady() {
					t.Fatalf("all three completed, one after another, yet the XR is not Ready: %v", queueState(s, order...))
				}
			})
		})
	}
}

// TestNamespaceLimitSharedFairly: two ModelDownloads of four models each under
// an Input limit of two active Jobs in the namespace. The first to come takes
// both slots; from then on a freed slot goes to the one with fewer active
// Jobs, so the second gets slots while the first still has models queued, and
// the namespace never has more than two active Jobs.
func TestNamespaceLimitSharedFairly(t *testing.T) {
	four := func(prefix string) string {
		spec := "storagePVC: models\nhfTokenRef:\n  name: hf\nmodels:\n"
		for i := range 4 {
			spec += fmt.Sprintf("- name: %s/m%d\n", prefix, i)
		}
		return spec
	}
	sims := peerSims(t, four("a"), four("b"))
	a, b := sims[0], sims[1]
	for _, s := range sims {
		s.input = "apiVersion: hfdownload.fn.hfops.kamal.dev/v1beta1\nkind: Input\nmaxActiveJobsPerNamespace: 2\n"
	}
	api := a.api
	check := func(what string, wantA, wantB []string) {
		t.Helper()
		if got := activeJobs(api, ""); len(got) > 2 {
			t.Fatalf("%s: %d Jobs active in the namespace (%v), over the limit of 2", what, len(got), got)
		}
		if diff := cmp.Diff(wantA, activeJobs(api, "team-a")); diff != "" {
			t.Fatalf("%s: team-a's active Jobs (-want +got):\n%s", what, diff)
		}
		if diff := cmp.Diff(wantB, activeJobs(api, "team-b")); diff != "" {
			t.Fatalf("%s: team-b's active Jobs (-want +got):\n%s", what, diff)
		}
	}
	done := `{"commit":"abc","files":1,"bytes":1,"seconds":1}`

	a.reconcile()
	b.reconcile()
	check("team-a came first", []string{"a/m0", "a/m1"}, nil)
	if m := b.entry("b/m0")["message"]; !strings.HasPrefix(m, decide.QueuedPrefix+"0 ahead") || !strings.Contains(m, decide.NamespaceLimitReached) {
		t.Fatalf("team-b's first model: %q, want it queued for the namespace's limit", m)
	}
	// Every model of team-b queued, none failed: not Ready, and saying so.
	if c := b.condition(conditionDownloaded); b.xrReady() || c.GetReason() != "Downloading" ||
		!strings.HasSuffix(c.GetMessage(), "4 queued: b/m0, b/m1, b/m2, b/m3") {
		t.Fatalf("team-b with every model queued: Ready %v, ModelsDownloaded %s %q; want not Ready, Downloading, 4 queued",
			b.xrReady(), c.GetReason(), c.GetMessage())
	}

	// A slot frees; team-a is called first, yet team-b, with no active Job,
	// gets it.
	a.finish("a/m0", true, done)
	a.reconcile()
	b.reconcile()
	check("a/m0 completed", []string{"a/m1"}, []string{"b/m0"})
	a.reconcile()
	check("team-a called again", []string{"a/m1"}, []string{"b/m0"})

	// One each: the next slot goes to the one that started a Job longest ago.
	b.finish("b/m0", true, done)
	b.reconcile()
	a.reconcile()
	check("b/m0 completed", []string{"a/m1"}, []string{"b/m1"})
	a.finish("a/m1", true, done)
	b.reconcile()
	a.reconcile()
	check("a/m1 completed", []string{"a/m2"}, []string{"b/m1"})
}

// TestPeerHeldByItsOwnLimitTakesNoNamespaceSlot: team-a's maxParallel of 1
// holds three of its models back; those could not use a namespace slot, so
// they do not claim one: team-b takes every slot left under the namespace
// limit of 4, and none stays idle while team-b has a model waiting.
func TestPeerHeldByItsOwnLimitTakesNoNamespaceSlot(t *testing.T) {
	four := func(prefix, settings string) string {
		spec := "storagePVC: models\nhfTokenRef:\n  name: hf\n" + settings + "models:\n"
		for i := range 4 {
			spec += fmt.Sprintf("- name: %s/m%d\n", prefix, i)
		}
		return spec
	}
	sims := peerSims(t, four("a", "settings:\n  maxParallel: 1\n"), four("b", ""))
	a, b := sims[0], sims[1]
	for _, s := range sims {
		s.input = inputHeader + "maxActiveJobsPerNamespace: 4\n"
	}
	a.reconcile()
	if m := a.entry("a/m1")["message"]; m != decide.QueuedPrefix+"0 ahead" {
		t.Fatalf("team-a's second model says %q, want it queued by team-a's own maxParallel alone", m)
	}
	b.reconcile()
	if diff := cmp.Diff([]string{"a/m0", "b/m0", "b/m1", "b/m2"}, activeJobs(a.api, "")); diff != "" {
		t.Fatalf("the namespace's active Jobs under a limit of 4 (-want +got):\n%s", diff)
	}
	if m := b.entry("b/m3")["message"]; !strings.Contains(m, decide.NamespaceLimitReached) {
		t.Fatalf("b/m3 says %q, want it queued for the namespace's limit", m)
	}
}

// TestHandOut is the fair hand-out of free slots alone.
func TestHandOut(t *testing.T) {
	for _, tc := range []struct {
		name string
		free int
		cs   []decide.Claimant
		want int
	}{
		{name: "alone, takes every free slot", free: 3, cs: []decide.Claimant{{Parent: "self", Wants: -1}}, want: 3},
		{name: "no free slot", free: 0, cs: []decide.Claimant{{Parent: "self", Wants: -1}}, want: 0},
		{name: "fewer active goes first", free: 1,
			cs: []decide.Claimant{{Parent: "self", Active: 1, Wants: -1}, {Parent: "b", Wants: 2}}, want: 0},
		{name: "equal active: oldest newest Job first", free: 1,
			cs: []decide.Claimant{{Parent: "self", Active: 1, Wants: -1, LastStart: "2026-11-26T03:00:05Z"}, {Parent: "b", Active: 1, Wants: 2, LastStart: "2026-11-26T03:00:02Z"}}, want: 0},
		{name: "never started goes before a start", free: 1,
			cs: []decide.Claimant{{Parent: "self", Wants: -1}, {Parent: "b", Wants: 1, LastStart: "2026-11-26T03:00:02Z"}}, want: 1},
		{name: "split evenly", free: 4,
			cs: []decide.Claimant{{Parent: "self", Wants: -1}, {Parent: "b", Wants: 5}}, want: 2},
		{name: "what others cannot use is self's", free: 4,
			cs: []decide.Claimant{{Parent: "self", Wants: -1}, {Parent: "b", Wants: 1}}, want: 3},
		{name: "a peer that wants nothing takes nothing", free: 2,
			cs: []decide.Claimant{{Parent: "self", Active: 3, Wants: -1}, {Parent: "b", Active: 0, Wants: 0}}, want: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := decide.HandOut(tc.free, tc.cs, "self"); got != tc.want {
				t.Fatalf("handOut gives self %d, want %d", got, tc.want)
			}
		})
	}
}

// jobActive: the namespace's download Job j holds a slot, as the queue reads
// it.
func jobActive(j *structpb.Struct) bool {
	return read.ReadNamespaceJobs(&fnv1.Resources{Items: []*fnv1.Resource{{Resource: j}}})[0].Active
}

// TestNamespaceJobActive reads Job conditions as the queue counts them: a
// Job that ended, or is being deleted, holds no slot.
func TestNamespaceJobActive(t *testing.T) {
	for _, tc := range []struct {
		metadata, status string
		want             bool
	}{
		{"{name: j}", jobComplete, false},
		{"{name: j}", jobFailed, false},
		{"{name: j}", jobRunning, true},
		{"{name: j}", "{}", true},
		{"{name: j, deletionTimestamp: '2024-01-01T00:00:00Z'}", jobRunning, false},
	} {
		j := mustStruct("metadata: " + tc.metadata)
		j.Fields["status"] = structpb.NewStructValue(mustStruct(tc.status))
		if got := jobActive(j); got != tc.want {
			t.Errorf("a Job with metadata %s and status %s is active: %v, want %v", tc.metadata, tc.status, got, tc.want)
		}
	}
}

// TestQueuedForNamespace: a peer's models that wait for the namespace's slots are read from
// the limit its status names (status.models[].queue), never from their message.
func TestQueuedForNamespace(t *testing.T) {
	for _, tc := range []struct {
		name   string
		models string
		want   int
	}{
		{name: "queued for the namespace", models: `[{name: a, phase: Pending, queue: Namespace, message: "queued: 0 ahead"}]`, want: 1},
		{name: "queued by its own limit", models: `[{name: a, phase: Pending, queue: ModelDownload, message: "queued: 0 ahead"}]`, want: 0},
		{name: "a message alone", models: `[{name: a, phase: Pending, message: "queued: 0 ahead; ` + decide.NamespaceLimitReached + ` (1)"}]`, want: 0},
		{name: "no longer pending", models: `[{name: a, phase: Running, queue: Namespace}]`, want: 0},
		{name: "two of three", models: `[{name: a, phase: Pending, queue: Namespace}, {name: b, phase: Pending, queue: Volume}, {name: c, phase: Pending, queue: Namespace}]`, want: 2},
		{name: "no status", models: `[]`, want: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			xr := mustStruct("metadata: {name: peer}\nstatus:\n  models: " + tc.models)
			if got := decide.QueuedForNamespace(read.RecordedStatus(xr)); got != tc.want {
				t.Errorf("queuedForNamespace = %d, want %d", got, tc.want)
			}
		})
	}
}
