package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/hfops/function-hf-download/hubtest"
	"github.com/hfops/function-hf-download/input/v1beta1"

	"github.com/go-logr/zapr"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	batchv1 "k8s.io/api/batch/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/crossplane/function-sdk-go/logging"
	fnv1 "github.com/crossplane/function-sdk-go/proto/v1"

	"github.com/hfops/function-hf-download/internal/build"
	"github.com/hfops/function-hf-download/internal/decide"
	"github.com/hfops/function-hf-download/internal/decode"
	"github.com/hfops/function-hf-download/internal/naming"
	"github.com/hfops/function-hf-download/internal/read"
	"github.com/hfops/function-hf-download/script"
)

// Fuzz targets: the function is a server every ModelDownload in a cluster
// reaches, so no input may panic it, build an invalid Job, or leak the token.
// Each target takes text (JSON, as Crossplane's protobuf Structs are JSON
// objects) and builds a request; text that is not JSON is skipped or treated
// as absent. checkInvariants holds on every input:
//
//   - no panic (RunFunction recovers, so a recovered panic shows up as an
//     error and an Info log line; both fail the check);
//   - the same request twice gives the same response;
//   - a Fatal result with no desired resources, or a desired state whose Jobs
//     have valid, unique names, valid labels and valid, unique keys, and
//     whose status lists every model in exactly one of pending, completed
//     and failed;
//   - the token (and its base64) appears neither in the marshalled response
//     nor in the debug logs;
//   - the XR is Ready only when every model is Completed (never while one is
//     queued), and queued models are admitted in spec order.
//
// The seeds (f.Add and testdata/fuzz/FuzzX) run with plain `go test`; run a
// target with `go test -run='^$' -fuzz='^FuzzSpec$' -fuzztime=10m -parallel=1 .`

// bufferLogger is the logger main.go builds with --debug (zap behind logr,
// debug at V(1)), writing to w instead of stderr.
func bufferLogger(w io.Writer) logging.Logger {
	enc := zapcore.NewJSONEncoder(zap.NewDevelopmentEncoderConfig())
	core := zapcore.NewCore(enc, zapcore.AddSync(w), zapcore.DebugLevel)
	return logging.NewLogrLogger(zapr.NewLogger(zap.New(core)))
}

// testNow is the clock of the calls checkInvariants makes: the same request
// at the same time gives the same response.
var testNow = time.Date(2026, 11, 26, 2, 0, 0, 0, time.UTC)

// runLogged runs one request, at now, on a Function logging at debug level.
func runLogged(req *fnv1.RunFunctionRequest, now time.Time) (*fnv1.RunFunctionResponse, string, error) {
	var buf hubtest.SyncBuffer
	f := &Function{log: bufferLogger(&buf), now: func() time.Time { return now }}
	rsp, err := f.RunFunction(context.Background(), req)
	return rsp, buf.String(), err
}

// jsonStruct parses a JSON object; ok is false for anything else.
func jsonStruct(s string) (*structpb.Struct, bool) {
	v := &structpb.Value{}
	if err := v.UnmarshalJSON([]byte(s)); err != nil {
		return nil, false
	}
	st := v.GetStructValue()
	return st, st != nil
}

// jsonValue parses any JSON value.
func jsonValue(s string) (*structpb.Value, bool) {
	v := &structpb.Value{}
	if err := v.UnmarshalJSON([]byte(s)); err != nil {
		return nil, false
	}
	return v, true
}

// yamlJSON turns a YAML file (or a part of one) into JSON text for a seed.
func yamlJSON(tb testing.TB, y string) string {
	tb.Helper()
	j, err := yaml.YAMLToJSON([]byte(y))
	if err != nil {
		tb.Fatal(err)
	}
	return string(j)
}

func readExample(tb testing.TB, path string) string {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

// yamlDocs splits a multi-document YAML file into JSON objects.
func yamlDocs(tb testing.TB, y string) []string {
	var out []string
	for _, doc := range strings.Split(y, "\n---\n") {
		j := yamlJSON(tb, doc)
		if j != "null" && j != "{}" {
			out = append(out, j)
		}
	}
	return out
}

// specJSON is the spec of an XR file as JSON text.
func specJSON(tb testing.TB, xr string) string {
	return fieldJSON(tb, yamlJSON(tb, xr), "spec")
}

// fieldJSON is one top-level field of an example object as JSON text. An
// example that changed shape fails the seeds that read it, loudly, instead
// of seeding nothing.
func fieldJSON(tb testing.TB, obj, field string) string {
	tb.Helper()
	s, ok := jsonStruct(obj)
	if !ok {
		tb.Fatalf("an example is not an object: %.80s", obj)
	}
	v, ok := s.GetFields()[field]
	if !ok || v.GetStructValue() == nil {
		tb.Fatalf("an example has no %s object: %.80s", field, obj)
	}
	b, err := v.MarshalJSON()
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

// xrOf is a ModelDownload named name in namespace ml with the given spec (nil:
// none) and no status.
func xrOf(name string, spec *structpb.Value) *structpb.Struct {
	xr := &structpb.Struct{Fields: fields{
		"apiVersion": str("hfops.kamal.dev/v1alpha1"),
		"kind":       str("ModelDownload"),
		"metadata":   object(fields{"name": str(name), "namespace": str("ml")}),
	}}
	if spec != nil {
		xr.Fields["spec"] = spec
	}
	return xr
}

// resolvedRequest is a request after Crossplane resolved the requirements:
// the PVC exists, no other ModelDownload shares it.
func resolvedRequest(xr *structpb.Struct, observed map[string]*fnv1.Resource, secret *fnv1.Resource, pods []*fnv1.Resource, input *structpb.Struct) *fnv1.RunFunctionRequest {
	req := &fnv1.RunFunctionRequest{
		Meta:     crossplaneV22("fuzz"),
		Observed: &fnv1.State{Composite: &fnv1.Resource{Resource: xr}, Resources: observed},
		RequiredResources: map[string]*fnv1.Resources{
			read.RequirementToken: {},
			read.RequirementPods:  {Items: pods},
			read.RequirementPVC:   {Items: []*fnv1.Resource{pvcResource(testPVCUID)}},
			read.RequirementPeers: {},
		},
		Input: input,
	}
	if secret != nil {
		req.RequiredResources[read.RequirementToken].Items = []*fnv1.Resource{secret}
	}
	return req
}

// secretData lists the values a Secret holds (decoded where base64), the
// things that must never leave the function.
func secretData(secret *fnv1.Resource) []string {
	var out []string
	for _, section := range []string{"data", "stringData"} {
		for _, v := range read.Get(secret.GetResource(), section).GetStructValue().GetFields() {
			s := v.GetStringValue()
			out = append(out, s)
			if section == "data" {
				if b, err := base64.StdEncoding.DecodeString(s); err == nil {
					out = append(out, string(b))
				}
			}
		}
	}
	return out
}

// leakProbes are the forms of a secret value a leak would show: the value,
// its base64, its JSON escaping (as a log line holds it), and its first and
// last 12 bytes. Probes shorter than 8 bytes say nothing and are dropped.
func leakProbes(value string) []string {
	esc, _ := json.Marshal(value)
	probes := []string{value, base64.StdEncoding.EncodeToString([]byte(value)), strings.Trim(string(esc), `"`)}
	if len(value) >= 16 {
		probes = append(probes, value[:12], value[len(value)-12:])
	}
	out := probes[:0]
	for _, p := range probes {
		if len(p) >= 8 {
			out = append(out, p)
		}
	}
	return out
}

// checkInvariants is what must hold for every request. It returns the
// response so callers can check more.
func checkInvariants(t *testing.T, req *fnv1.RunFunctionRequest) *fnv1.RunFunctionResponse {
	t.Helper()
	return checkInvariantsAt(t, req, testNow)
}

// checkInvariantsAt is checkInvariants for a call at now.
func checkInvariantsAt(t *testing.T, req *fnv1.RunFunctionRequest, now time.Time) *fnv1.RunFunctionResponse {
	t.Helper()
	rsp, logs, err := runLogged(req, now)
	if err != nil {
		t.Fatalf("RunFunction returned an error (a recovered panic?): %v\nlogs:\n%s", err, logs)
	}
	if strings.Contains(logs, "panicked") {
		t.Fatalf("RunFunction panicked:\n%s", logs)
	}
	again, _, err2 := runLogged(req, now)
	if err2 != nil || !proto.Equal(rsp, again) {
		t.Fatalf("the same request gave different responses")
	}
	checkResponseSizeIsProtos(t, rsp)

	checkNoLeak(t, req, rsp, logs)

	// A first call that asks for more than the request resolved (the
	// Namespace of spec.storage, say): answer as Crossplane would, with
	// nothing found, and check the second call.
	var unresolved []string
	for name := range rsp.GetRequirements().GetResources() {
		if _, ok := req.GetRequiredResources()[name]; !ok {
			unresolved = append(unresolved, name)
		}
	}
	if len(unresolved) > 0 {
		if len(jobResources(rsp)) > 0 {
			t.Fatalf("Jobs composed before the requirements %v were resolved", unresolved)
		}
		next := proto.Clone(req).(*fnv1.RunFunctionRequest)
		if next.RequiredResources == nil {
			next.RequiredResources = map[string]*fnv1.Resources{}
		}
		for _, name := range unresolved {
			next.RequiredResources[name] = &fnv1.Resources{}
		}
		return checkInvariantsAt(t, next, now)
	}

	fatalResult := false
	for _, r := range rsp.GetResults() {
		if r.GetSeverity() == fnv1.Severity_SEVERITY_FATAL {
			fatalResult = true
		}
	}
	if fatalResult {
		if n := len(jobResources(rsp)); n > 0 {
			t.Fatalf("a Fatal result with %d desired resources: a half-built desired state", n)
		}
		return rsp
	}
	checkJobs(t, req, rsp)
	checkStatusLists(t, req, rsp)
	checkPromises(t, req, rsp)
	checkQueue(t, req, rsp)
	checkReadiness(t, rsp)
	return rsp
}

// checkReadiness: the XR is Ready only when every model is Completed, so
// never while one is queued, waiting, running or failed.
func checkReadiness(t *testing.T, rsp *fnv1.RunFunctionResponse) {
	t.Helper()
	if rsp.GetDesired().GetComposite().GetReady() != fnv1.Ready_READY_TRUE {
		return
	}
	for _, e := range read.Get(rsp.GetDesired().GetComposite().GetResource(), "status", "models").GetListValue().GetValues() {
		if m := e.GetStructValue(); read.GetString(m, "phase") != read.PhaseCompleted {
			t.Fatalf("the XR is Ready while model %s is %s (%q)", read.GetString(m, "name"), read.GetString(m, "phase"), read.GetString(m, "message"))
		}
	}
}

// checkQueue: a call starts no Job beyond what settings.maxParallel leaves
// room for (Jobs already active are never taken away), a queued model has no
// Job desired, and models are admitted in spec order: walking the spec, the
// queued ones are 0, 1, 2... ahead, and none after the first queued one
// starts a Job.
func checkQueue(t *testing.T, req *fnv1.RunFunctionRequest, rsp *fnv1.RunFunctionResponse) {
	t.Helper()
	observed := req.GetObserved().GetResources()
	active, started := 0, 0
	for key, r := range observed {
		if phase, deleting := observedPhase(r.GetResource()); read.GetString(r.GetResource(), "metadata", "labels", naming.LabelApp) == naming.AppName &&
			!strings.HasPrefix(key, build.ScriptKeyPrefix) && !strings.HasPrefix(key, naming.ProgressKeyPrefix) && key != read.PVCKey && !deleting && !read.Terminal(phase) {
			active++
		}
	}
	desiredModels, startedModels := map[string]bool{}, map[string]bool{}
	for key, r := range jobResources(rsp) {
		if key == read.PVCKey {
			continue
		}
		res := r.GetResource()
		if read.GetString(res, "kind") == "Object" {
			res = read.Get(res, "spec", "forProvider", "manifest").GetStructValue()
		}
		model := read.GetString(res, "metadata", "annotations", naming.AnnotationModel)
		desiredModels[model] = true
		if _, ok := observed[key]; !ok {
			started++
			startedModels[model] = true
		}
	}
	limit := int(read.Get(req.GetObserved().GetComposite().GetResource(), "spec", "settings", "maxParallel").GetNumberValue())
	if limit > 0 && started > 0 && active+started > limit {
		t.Fatalf("%d Jobs started with %d active, over maxParallel %d", started, active, limit)
	}
	messages, queues := map[string]string{}, map[string]string{}
	for _, e := range read.Get(rsp.GetDesired().GetComposite().GetResource(), "status", "models").GetListValue().GetValues() {
		name := read.GetString(e.GetStructValue(), "name")
		messages[name], queues[name] = read.GetString(e.GetStructValue(), "message"), read.GetString(e.GetStructValue(), "queue")
		// The limit a status names and its message say one thing: queued or not.
		if q := queues[name]; (q != "") != strings.HasPrefix(messages[name], decide.QueuedPrefix) ||
			q != "" && q != string(decide.QueueVolume) && q != string(decide.QueueModelDownload) && q != string(decide.QueueNamespace) {
			t.Fatalf("model %s: queue %q with message %q", name, q, messages[name])
		}
	}
	// The spec as the user wrote it (names are unique: a duplicate is Fatal).
	queued := 0
	for _, m := range read.Get(req.GetObserved().GetComposite().GetResource(), "spec", "models").GetListValue().GetValues() {
		name := read.GetString(m.GetStructValue(), "name")
		msg := messages[name]
		if !strings.HasPrefix(msg, decide.QueuedPrefix) {
			if startedModels[name] && queued > 0 {
				t.Fatalf("model %s starts a Job while %d models before it in the spec stay queued: admission follows spec order", name, queued)
			}
			continue
		}
		if desiredModels[name] {
			t.Fatalf("model %s is queued yet has a Job desired", name)
		}
		if want := fmt.Sprintf("%s%d ahead", decide.QueuedPrefix, queued); msg != want && !strings.HasPrefix(msg, want+"; ") {
			t.Fatalf("model %s says %q, want %q: %d models before it in the spec are queued", name, msg, want, queued)
		}
		queued++
	}
}

// observedPhase reads a composed Job, or the Job of an Object, as observe
// does: its phase, and whether it (or its Object) is being deleted.
func observedPhase(composed *structpb.Struct) (string, bool) {
	o := read.Observation{Jobs: map[string][]*read.SeenJob{}, Reclaims: map[string][]*read.SeenJob{}, Checks: map[string][]*read.SeenJob{}, ByKey: map[string]*read.SeenJob{}, Scripts: map[string]read.SeenScript{}, Deleting: map[string]bool{}}
	o.ReadComposed(map[string]*fnv1.Resource{"k": {Resource: composed}})
	if j := o.ByKey["k"]; j != nil {
		return j.Phase, j.Deleting
	}
	return "", o.Deleting["k"]
}

// checkPromises: what status promises holds for any request.
//   - A model is Completed only if a Job of its current hash completed (one
//     observed, of the hash the entry names), or the recorded completion
//     has that hash and the current PVC's uid; never without the PVC.
//   - A Job of a finished attempt (recorded Completed or Failed under its
//     hash) is never desired again unless it is observed, alive, in Job
//     mode: nothing makes it again.
//   - The status's pvcUID, where the PVC is known, is the PVC's.
//   - A completed model's commit is one a pod reported or status recorded.
func checkPromises(t *testing.T, req *fnv1.RunFunctionRequest, rsp *fnv1.RunFunctionResponse) {
	t.Helper()
	pvcUID := ""
	if items := req.GetRequiredResources()[read.RequirementPVC].GetItems(); len(items) > 0 &&
		!decode.Present(read.Get(items[0].GetResource(), "metadata", "deletionTimestamp")) {
		pvcUID = read.OrDefault(read.GetString(items[0].GetResource(), "metadata", "uid"), "-")
	}
	recorded := read.RecordedStatus(req.GetObserved().GetComposite().GetResource())
	if u := read.GetString(rsp.GetDesired().GetComposite().GetResource(), "status", "pvcUID"); u != pvcUID {
		t.Fatalf("status.pvcUID is %q, the PVC is %q", u, pvcUID)
	}
	// A commit status shows is one a pod (a download's, or a check's) reported,
	// or the one recorded: never guessed.
	reported := func(commit string) bool {
		for _, p := range req.GetRequiredResources()[read.RequirementPods].GetItems() {
			for _, c := range read.Get(p.GetResource(), "status", "containerStatuses").GetListValue().GetValues() {
				if strings.Contains(read.GetString(c.GetStructValue(), "state", "terminated", "message"), `"commit":"`+commit+`"`) {
					return true
				}
			}
		}
		return false
	}
	// Observed Jobs of ours, by model and hash.
	type seen struct{ complete, failed, alive bool }
	observed := map[string]seen{}
	for _, r := range req.GetObserved().GetResources() {
		composed := r.GetResource()
		if read.GetString(composed, "metadata", "labels", naming.LabelApp) != naming.AppName {
			continue
		}
		k := read.GetString(composed, "metadata", "annotations", naming.AnnotationModel) + "@" + read.GetString(composed, "metadata", "labels", naming.LabelSpecHash)
		phase, deleting := observedPhase(composed)
		// Labels are mutable: two Jobs may claim one hash.
		s := observed[k]
		observed[k] = seen{complete: s.complete || phase == read.PhaseCompleted, failed: s.failed || phase == read.PhaseFailed,
			alive: s.alive || !deleting}
	}
	for _, e := range read.Get(rsp.GetDesired().GetComposite().GetResource(), "status", "models").GetListValue().GetValues() {
		m := e.GetStructValue()
		name, hash, phase := read.GetString(m, "name"), read.GetString(m, "hash"), read.GetString(m, "phase")
		if phase == read.PhaseCompleted && observed[name+"@"+hash].failed {
			t.Fatalf("model %s is Completed while a Job of its hash %s failed", name, hash)
		}
		if phase != read.PhaseCompleted {
			continue
		}
		if pvcUID == "" {
			t.Fatalf("model %s is Completed while the PVC is missing", name)
		}
		rec, hasRec := recorded[name]
		byJob := observed[name+"@"+hash].complete
		// A completion kept from the record (an upgrade of the function
		// changes every hash but not the intent) is one of the same intent:
		// what the user or the platform changed is never hidden by memory.
		byRecord := hasRec && rec.Phase == read.PhaseCompleted && rec.Hash == hash && read.RecordedPVC(req.GetObserved().GetComposite().GetResource()) == pvcUID &&
			(rec.IntentHash == "" || rec.IntentHash == read.GetString(m, "intentHash"))
		if !byJob && !byRecord {
			t.Fatalf("model %s is Completed under hash %q, but no Job of that hash completed and no completion of it under this intent on PVC %q was recorded", name, hash, pvcUID)
		}
		if c := read.GetString(m, "commit"); c != "" && !reported(c) && (!hasRec || rec.Summary == nil || rec.Summary.Commit != c) {
			t.Fatalf("model %s says commit %s is on disk, which neither a pod reported nor status recorded", name, c)
		}
	}
	objects := false
	for key, r := range jobResources(rsp) {
		res := r.GetResource()
		if read.GetString(res, "kind") == "Object" {
			objects = true
			res = read.Get(res, "spec", "forProvider", "manifest").GetStructValue()
		}
		if key == read.PVCKey {
			continue
		}
		model, hash := read.GetString(res, "metadata", "annotations", naming.AnnotationModel), read.GetString(res, "metadata", "labels", naming.LabelSpecHash)
		rec, ok := recorded[model]
		if !ok || rec.Hash != hash || !read.Terminal(rec.Phase) {
			continue
		}
		if s := observed[model+"@"+hash]; !s.alive || objects {
			t.Fatalf("model %s: the Job of a finished attempt (%s, hash %s) is desired again", model, rec.Phase, hash)
		}
	}
}

// checkNoLeak: no value of the token Secret appears in the response, the
// logs, or the error, unless the request carried it elsewhere too (the user
// wrote it into the XR, say) or it is text the function always emits.
func checkNoLeak(t *testing.T, req *fnv1.RunFunctionRequest, rsp *fnv1.RunFunctionResponse, logs string) {
	t.Helper()
	secrets := req.GetRequiredResources()[read.RequirementToken].GetItems()
	if len(secrets) == 0 {
		return
	}
	rest := proto.Clone(req).(*fnv1.RunFunctionRequest)
	delete(rest.RequiredResources, read.RequirementToken)
	restBytes, err := proto.Marshal(rest)
	if err != nil {
		t.Fatal(err)
	}
	known := string(restBytes) + script.Text
	out, err := proto.Marshal(rsp)
	if err != nil {
		t.Fatalf("the response does not marshal: %v", err)
	}
	for _, v := range secretData(secrets[0]) {
		for _, p := range leakProbes(v) {
			if strings.Contains(known, p) {
				continue
			}
			if bytes.Contains(out, []byte(p)) {
				t.Fatalf("the response holds Secret data %q", p)
			}
			if strings.Contains(logs, p) {
				t.Fatalf("the logs hold Secret data %q:\n%s", p, logs)
			}
		}
	}
}

// checkJobs: every desired Job (bare or in a provider-kubernetes Object) has
// a DNS-1123 label name, unique, in the XR's namespace, with valid labels and
// annotation keys; every key is a valid, unique composition resource name.
func checkJobs(t *testing.T, req *fnv1.RunFunctionRequest, rsp *fnv1.RunFunctionResponse) {
	t.Helper()
	xr := req.GetObserved().GetComposite().GetResource()
	ns := read.GetString(xr, "metadata", "namespace")
	if ns == "" {
		ns = read.GetString(xr, "metadata", "labels", read.ClaimNamespaceLabel)
	}
	names := map[string]string{}
	for key, r := range jobResources(rsp) {
		if msgs := validation.IsDNS1123Subdomain(key); len(msgs) > 0 {
			t.Fatalf("resource key %q: %v", key, msgs)
		}
		res := r.GetResource()
		checkMeta(t, key, res)
		if read.GetString(res, "kind") == "Object" {
			res = read.Get(res, "spec", "forProvider", "manifest").GetStructValue()
			checkMeta(t, key, res)
		}
		kind, name := read.GetString(res, "kind"), read.GetString(res, "metadata", "name")
		switch {
		case kind == "PersistentVolumeClaim" && key == read.PVCKey:
			if msgs := validation.IsDNS1123Subdomain(name); len(msgs) > 0 {
				t.Fatalf("PVC name %q: %v", name, msgs)
			}
			continue
		case kind != "Job" || read.GetString(res, "apiVersion") != "batch/v1":
			t.Fatalf("resource %q is a %s %s, not a batch/v1 Job", key, read.GetString(res, "apiVersion"), kind)
		}
		if msgs := validation.IsDNS1123Label(name); len(msgs) > 0 {
			t.Fatalf("Job name %q (key %q): %v", name, key, msgs)
		}
		if other, dup := names[name]; dup {
			t.Fatalf("keys %q and %q share the Job name %q", other, key, name)
		}
		names[name] = key
		if got := read.GetString(res, "metadata", "namespace"); got != ns {
			t.Fatalf("Job %q in namespace %q, want %q", name, got, ns)
		}
		checkMeta(t, key, read.Get(res, "spec", "template").GetStructValue())
		if _, kept := req.GetObserved().GetResources()[key]; !kept {
			checkNewJob(t, req, rsp, key, res)
		}
	}
}

// checkNewJob: a Job the function makes (not one it keeps as observed) is
// hardened, takes the token from a secretKeyRef alone, mounts the PVC where
// the script writes, and hands the script the content hash status records.
func checkNewJob(t *testing.T, req *fnv1.RunFunctionRequest, rsp *fnv1.RunFunctionResponse, key string, res *structpb.Struct) {
	t.Helper()
	job := asJob(t, res)
	pvc := read.GetString(req.GetObserved().GetComposite().GetResource(), "spec", "storagePVC")
	mountPath := read.OrDefault(read.GetString(req.GetInput(), "mountPath"), read.DefaultMountPath)
	if p := jobProblems(job, pvc, mountPath); len(p) > 0 {
		t.Fatalf("Job %s: %v", key, p)
	}
	if reclaimed, ok := job.Annotations[naming.AnnotationReclaim]; ok {
		checkNewReclaimJob(t, req, rsp, job, reclaimed)
		return
	}
	model := job.Annotations[naming.AnnotationModel]
	if _, ok := job.Annotations[naming.AnnotationResync]; ok {
		checkNewCheckJob(t, req, rsp, job, model)
	}
	var env string
	for _, e := range job.Spec.Template.Spec.Containers[0].Env {
		if e.Name == script.EnvContentHash {
			env = e.Value
		}
	}
	if want := contentHashes(rsp)[model]; env == "" || env != want {
		t.Fatalf("Job %s: %s %q, but status records the content hash %q", key, script.EnvContentHash, env, want)
	}
}

// checkNewReclaimJob: a new reclaim Job removes a model no longer in the
// spec, a repo id (so a directory inside the mount), under settings.reclaim
// Delete or a reclaim already recorded, that no other ModelDownload of the
// namespace wants on the same PVC; status.reclaims[] names the Job.
func checkNewReclaimJob(t *testing.T, req *fnv1.RunFunctionRequest, rsp *fnv1.RunFunctionResponse, job *batchv1.Job, model string) {
	t.Helper()
	xr := req.GetObserved().GetComposite().GetResource()
	pvc := read.GetString(xr, "spec", "storagePVC")
	if !read.ValidRepoID(model) {
		t.Fatalf("reclaim Job %s removes %q, which is no repo id", job.Name, model)
	}
	nested := func(other string) bool {
		return strings.HasPrefix(other, model+"/") || strings.HasPrefix(model, other+"/")
	}
	for _, m := range read.Get(xr, "spec", "models").GetListValue().GetValues() {
		if other := read.GetString(m.GetStructValue(), "name"); other == model || nested(other) {
			t.Fatalf("reclaim Job %s removes %s, which holds or is inside %s, which the spec lists", job.Name, model, other)
		}
	}
	recorded := false
	for _, e := range read.Get(xr, "status", "reclaims").GetListValue().GetValues() {
		recorded = recorded || read.GetString(e.GetStructValue(), "name") == model
	}
	if !recorded && read.GetString(xr, "spec", "settings", "reclaim") != read.ReclaimDelete {
		t.Fatalf("reclaim Job %s for %s, which was removed without settings.reclaim Delete", job.Name, model)
	}
	self := read.GetString(xr, "metadata", "uid")
	for _, p := range req.GetRequiredResources()[read.RequirementPeers].GetItems() {
		peer := p.GetResource()
		if self != "" && read.GetString(peer, "metadata", "uid") == self || read.GetString(peer, "metadata", "name") == read.GetString(xr, "metadata", "name") ||
			read.GetString(peer, "spec", "storagePVC") != pvc || read.GetString(peer, "metadata", "deletionTimestamp") != "" {
			continue
		}
		for _, m := range read.Get(peer, "spec", "models").GetListValue().GetValues() {
			if other := read.GetString(m.GetStructValue(), "name"); other == model || nested(other) {
				t.Fatalf("reclaim Job %s removes %s, which ModelDownload %s wants on PVC %s", job.Name, model, read.GetString(peer, "metadata", "name"), pvc)
			}
		}
	}
	for _, e := range read.Get(rsp.GetDesired().GetComposite().GetResource(), "status", "reclaims").GetListValue().GetValues() {
		if read.GetString(e.GetStructValue(), "name") == model && read.GetString(e.GetStructValue(), "jobName") == job.Name {
			return
		}
	}
	t.Fatalf("reclaim Job %s: no status.reclaims[] entry for %s names it", job.Name, model)
}

// checkNewCheckJob: a new check Job checks a model that status says is
// Completed, keeps it so, and is named by its status.models[].resync; only
// under settings.resyncInterval, and never for a revision that is a commit
// (which cannot move). It runs the script in its check mode.
func checkNewCheckJob(t *testing.T, req *fnv1.RunFunctionRequest, rsp *fnv1.RunFunctionResponse, job *batchv1.Job, model string) {
	t.Helper()
	xr := req.GetObserved().GetComposite().GetResource()
	if read.GetString(xr, "spec", "settings", "resyncInterval") == "" {
		t.Fatalf("check Job %s for %s without settings.resyncInterval", job.Name, model)
	}
	resync := false
	for _, e := range job.Spec.Template.Spec.Containers[0].Env {
		switch {
		case e.Name == script.EnvRevision && decide.IsCommit(e.Value):
			t.Fatalf("check Job %s for %s, whose revision is the commit %s", job.Name, model, e.Value)
		case e.Name == script.EnvResync:
			resync = e.Value == "true"
		}
	}
	if !resync {
		t.Fatalf("check Job %s does not run the script as a check", job.Name)
	}
	for _, v := range read.Get(rsp.GetDesired().GetComposite().GetResource(), "status", "models").GetListValue().GetValues() {
		e := v.GetStructValue()
		if read.GetString(e, "name") != model {
			continue
		}
		if phase := read.GetString(e, "phase"); phase != read.PhaseCompleted || read.GetString(e, "resync", "jobName") != job.Name {
			t.Fatalf("check Job %s for %s, which status says is %s with its check's Job %q", job.Name, model, phase, read.GetString(e, "resync", "jobName"))
		}
		return
	}
	t.Fatalf("check Job %s: no status.models[] entry for %s", job.Name, model)
}

// checkMeta: label keys and values and annotation keys pass apimachinery.
func checkMeta(t *testing.T, key string, obj *structpb.Struct) {
	t.Helper()
	for k, v := range read.Get(obj, "metadata", "labels").GetStructValue().GetFields() {
		if msgs := validation.IsQualifiedName(k); len(msgs) > 0 {
			t.Fatalf("%s: label key %q: %v", key, k, msgs)
		}
		if msgs := validation.IsValidLabelValue(v.GetStringValue()); len(msgs) > 0 {
			t.Fatalf("%s: label %s=%q: %v", key, k, v.GetStringValue(), msgs)
		}
	}
	for k := range read.Get(obj, "metadata", "annotations").GetStructValue().GetFields() {
		if msgs := validation.IsQualifiedName(k); len(msgs) > 0 {
			t.Fatalf("%s: annotation key %q: %v", key, k, msgs)
		}
	}
}

// checkStatusLists: every model of the spec is in exactly one of pending,
// completed and failed, and in status.models, and nothing else is.
func checkStatusLists(t *testing.T, req *fnv1.RunFunctionRequest, rsp *fnv1.RunFunctionResponse) {
	t.Helper()
	st := rsp.GetDesired().GetComposite().GetResource().GetFields()["status"].GetStructValue()
	want := map[string]bool{}
	for _, m := range read.Get(req.GetObserved().GetComposite().GetResource(), "spec", "models").GetListValue().GetValues() {
		want[read.GetString(m.GetStructValue(), "name")] = true
	}
	seen := map[string]string{}
	for _, l := range []string{"pending", "completed", "failed"} {
		for _, v := range read.Get(st, l).GetListValue().GetValues() {
			n := v.GetStringValue()
			if prev, dup := seen[n]; dup {
				t.Fatalf("model %q is in status.%s and status.%s", n, prev, l)
			}
			seen[n] = l
			if !want[n] {
				t.Fatalf("status.%s lists %q, which is not in the spec", l, n)
			}
		}
	}
	if len(seen) != len(want) {
		t.Fatalf("status lists %d models, the spec has %d: %v", len(seen), len(want), seen)
	}
	if n := len(read.Get(st, "models").GetListValue().GetValues()); n != len(want) {
		t.Fatalf("status.models has %d entries, the spec has %d models", n, len(want))
	}
}

// FuzzSpec: arbitrary XR specs (any JSON value) and XR names.
func FuzzSpec(f *testing.F) {
	f.Add(specJSON(f, readExample(f, "example/xr.yaml")), "llama-cache")
	f.Add(specJSON(f, readExample(f, "example/xr-after-ttl.yaml")), "llama-cache")
	for _, s := range []string{
		twoModels,
		twoModels + "- name: 'org/x;rm -rf ~'\n",
		"storagePVC: models\nmodels:\n- name: " + strings.Repeat("a", 96) + "/" + strings.Repeat("b", 96) + "\n- name: M\n- name: _\n- name: a_b\n- name: a.b\n",
		"storagePVC: models\nnodePool: gpu\nmodels:\n- name: org/a\n  revision: refs/pr/1\n  retryCount: 100\n  include: ['*.json', 'sub/**']\n  exclude: ['../x', '/abs', '-x', '[']\n  repoType: dataset\nsettings:\n  timeoutMillis: 2592000000\n  keepAliveSeconds: 0\n  cpu: 500m\n  memory: 1Ei\n  forceReload: true\n  enableHFTransfer: true\n",
		"storagePVC: 7\nmodels: {}\nhfTokenRef: x\nsettings: []\n",
		"storagePVC: models\nmodels:\n- name: org/a\n- name: org/a\n- 7\n- {}\n- name: null\n",
		"storagePVC: models\nhfTokenRef: {name: hf, key: ''}\nmodels:\n- name: \"org/\\u202egnp.exe\"\n  revision: '-x'\n  sha: 'a b'\n  retryCount: -1e300\n",
		"storagePVC: models\nsettings: {maxParallel: 2}\nmodels:\n- name: org/a\n- name: org/b\n- name: org/c\n- name: org/d\n- name: org/e\n",
		"storagePVC: models\nsettings: {maxParallel: 0.5}\nmodels:\n- name: org/a\n",
		"storagePVC: models\nsettings: {reclaim: Delete, maxParallel: 1}\nmodels:\n- name: org/a\n",
		"storagePVC: models\nsettings: {reclaim: delete}\nmodels:\n- name: org/a\n",
		// Not in name order: admitted in spec order.
		"storagePVC: models\nsettings: {maxParallel: 1}\nmodels:\n- name: org/c\n- name: org/a\n- name: org/b\n",
	} {
		f.Add(yamlJSON(f, s), "cache")
	}
	f.Add(`{"models":[{"name":"x"}],"storagePVC":"p"}`, "")
	f.Add(`{"models":[{"name":"org/a"}],"storagePVC":"models","storage":{"size":"100Gi","storageClassName":"fast","accessModes":["ReadWriteMany"],"deletionPolicy":"Delete"}}`, "cache")
	f.Add(`{"models":[{"name":"org/a"}],"storagePVC":"models","storage":{"size":"-1","accessModes":"x","volumeMode":"Block","deletionPolicy":"Sometimes"}}`, "cache")
	f.Add(`{"models":[{"name":"x"}],"storagePVC":"p"}`, "-.---"+strings.Repeat("Ü", 40))
	f.Add(`{"models":[{"name":"org/a"},{"name":"org/b","revision":"0123456789abcdef0123456789abcdef01234567"}],"storagePVC":"models","settings":{"resyncInterval":"24h"}}`, "cache")
	f.Add(`{"models":[{"name":"org/a"}],"storagePVC":"models","settings":{"resyncInterval":"59m59s"}}`, "cache")
	f.Add(`{"models":[{"name":"org/a"}],"storagePVC":"models","settings":{"resyncInterval":7}}`, "cache")
	f.Add(`null`, "cache")
	f.Add(`"spec"`, "cache")

	f.Fuzz(func(t *testing.T, spec, xrName string) {
		v, ok := jsonValue(spec)
		if !ok || !utf8.ValidString(xrName) { // protobuf strings are UTF-8
			return
		}
		req := resolvedRequest(xrOf(xrName, v), nil, secretResource("token", testToken), nil, nil)
		rsp := checkInvariants(t, req)
		if isFatal(rsp) {
			return
		}
		// The next call, once the script's ConfigMap and the pods'
		// ServiceAccount exist: Jobs start, as the queue admits them.
		withScript(req)
		checkInvariants(t, req)
		// The Jobs made by sharing what they have in common are the typed Jobs.
		if parsed, errs := read.ParseSpec(xrOf(xrName, v)); len(errs) == 0 && len(read.ValidateSpec(&parsed)) == 0 {
			plat, _ := read.ResolvePlatform(&v1beta1.Input{}, defaultImage())
			checkManifests(t, &parsed, plat, false)
		}
		// The content hash is what lands on disk: not the token, not the
		// Job's resources, not the Input.
		other := resolvedRequest(xrOf(xrName, v), nil, secretResource("token", testToken+"-other"), nil,
			mustStruct(inputHeader+"resources: {cpu: '7', memory: 3Gi}\nmaxWorkers: 3\nimage: example.com/other:1\n"))
		want := contentHashes(rsp)
		for model, got := range contentHashes(checkInvariants(t, other)) {
			if w, ok := want[model]; ok && got != w {
				t.Fatalf("model %s: the content hash changed with the token, resources or Input (%s -> %s)", model, w, got)
			}
		}
		// And it follows the revision.
		first := read.Get(v.GetStructValue(), "models").GetListValue().GetValues()
		if len(first) == 0 || first[0].GetStructValue() == nil {
			return
		}
		model := read.GetString(first[0].GetStructValue(), "name")
		changed := proto.Clone(v).(*structpb.Value)
		m0 := changed.GetStructValue().Fields["models"].GetListValue().GetValues()[0].GetStructValue()
		m0.Fields["revision"] = str(read.OrDefault(read.GetString(m0, "revision"), script.DefaultRevision) + "-other")
		after := contentHashes(checkInvariants(t, resolvedRequest(xrOf(xrName, changed), nil, secretResource("token", testToken), nil, nil)))
		if b, a := want[model], after[model]; b != "" && a != "" && a == b {
			t.Fatalf("model %s: another revision kept the content hash %s", model, a)
		}
	})
}

func isFatal(rsp *fnv1.RunFunctionResponse) bool {
	for _, r := range rsp.GetResults() {
		if r.GetSeverity() == fnv1.Severity_SEVERITY_FATAL {
			return true
		}
	}
	return false
}

// contentHashes maps each model of a response's status to its content hash.
func contentHashes(rsp *fnv1.RunFunctionResponse) map[string]string {
	out := map[string]string{}
	for _, e := range read.Get(rsp.GetDesired().GetComposite().GetResource(), "status", "models").GetListValue().GetValues() {
		if h := read.GetString(e.GetStructValue(), "contentHash"); h != "" {
			out[read.GetString(e.GetStructValue(), "name")] = h
		}
	}
	return out
}

// fuzzBase is the response to twoModels with the token: the Jobs the
// observed-state targets pretend Crossplane created.
var fuzzBase = sync.OnceValue(func() *fnv1.RunFunctionResponse {
	rsp, err := newTestFunction().RunFunction(context.Background(), withToken(xrYAML(twoModels)).build())
	if err != nil {
		panic(err)
	}
	return rsp
})

// fuzzClaimXR is twoModels as a cluster-scoped XR bound to a claim in ml: its
// Jobs are wrapped in provider-kubernetes Objects.
var fuzzClaimXR = strings.Replace(xrYAML(twoModels), "  namespace: ml\n",
	"  labels:\n    crossplane.io/claim-namespace: ml\n    crossplane.io/claim-name: cache\n", 1)

// fuzzObjectBase is fuzzBase for fuzzClaimXR: the Objects Crossplane created.
var fuzzObjectBase = sync.OnceValue(func() *fnv1.RunFunctionResponse {
	rsp, err := newTestFunction().RunFunction(context.Background(), withToken(fuzzClaimXR).build())
	if err != nil {
		panic(err)
	}
	return rsp
})

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

// FuzzObserved: arbitrary observed Job status (any shape), a hand-edited XR
// status, a download pod's termination message, and a resource that is not
// one of this function's Jobs, with and without the token.
func FuzzObserved(f *testing.F) {
	complete, failed := yamlJSON(f, jobComplete), yamlJSON(f, jobFailed)
	running := yamlJSON(f, jobRunning)
	observedJobs := yamlDocs(f, readExample(f, "example/observed/complete-and-failed.yaml"))
	if len(observedJobs) != 2 {
		f.Fatalf("example/observed/complete-and-failed.yaml: want 2 Jobs, got %d documents", len(observedJobs))
	}
	for _, d := range observedJobs {
		f.Add(fieldJSON(f, d, "status"), complete, "", `{"commit":"0123abcd","files":3,"bytes":4096,"seconds":12}`, "", true, false, uint8(0), "")
	}
	recorded := fieldJSON(f, yamlJSON(f, readExample(f, "example/xr-after-ttl.yaml")), "status")
	f.Add(running, failed, recorded, "not json", "", false, false, uint8(0), "")
	f.Add(complete, complete, `{"models":[{"name":"org/alpha","phase":"Completed","hash":"x","commit":"zz","files":-1}]}`, "", "", false, false, uint8(0), "")
	f.Add(`{"conditions":"x","active":"1"}`, `{"conditions":[null,1,{"type":"Failed","status":"True","reason":7}]}`, `{"models":"x","pending":[1]}`, `{"commit":"`+strings.Repeat("a", 65)+`"}`, "", true, false, uint8(0), "")
	f.Add(`{"conditions":[{"type":"Suspended","status":"True"}],"active":1e300}`, `[]`, `{"models":[{"name":"org/beta","phase":"Nonsense","hash":"../../etc"},{"name":"org/beta","phase":"Completed"}]}`, "", "", false, false, uint8(0), "")
	foreign := `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"Not_Ours","annotations":{"hfops.kamal.dev/model":"org/alpha","hfops.kamal.dev/config-hash":"x"}},"data":{"a":"b"}}`
	f.Add(running, running, "", "", foreign, false, false, uint8(0), "")
	f.Add(running, running, "", "", foreign, true, false, uint8(0), "")
	f.Add(`{}`, `{}`, `{}`, `{}`, `{"kind":"Job","metadata":{"name":"x"}}`, false, false, uint8(0), "")
	// A Job of ours whose spec-hash label was edited by hand (labels of a
	// live Job are mutable), observed while the token is missing.
	base := fuzzBase()
	alpha := proto.Clone(jobResources(base)[sortedKeys(jobResources(base))[0]].GetResource()).(*structpb.Struct)
	read.Get(alpha, "metadata", "labels").GetStructValue().Fields[naming.LabelSpecHash] = str("Hand_Edited.Value")
	alpha.Fields["metadata"].GetStructValue().Fields["name"] = str("hf-dl-cache-org-alpha-0123456789")
	edited, err := alpha.MarshalJSON()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(running, running, "", "", string(edited), false, false, uint8(0), "")
	f.Add(running, running, "", "", string(edited), true, false, uint8(0), "")
	// A Job of ours being deleted (the TTL controller deletes in the
	// foreground): never desired again.
	deleting := proto.Clone(jobResources(base)[sortedKeys(jobResources(base))[0]].GetResource()).(*structpb.Struct)
	deleting.Fields["metadata"].GetStructValue().Fields["name"] = str("hf-dl-cache-org-alpha-9876543210")
	deleting.Fields["metadata"].GetStructValue().Fields["deletionTimestamp"] = str("2026-11-26T00:00:00Z")
	deleting.Fields["status"] = structpb.NewStructValue(mustStruct(jobComplete))
	deletingJob, err := deleting.MarshalJSON()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(running, running, "", "", string(deletingJob), false, false, uint8(0), "")
	f.Add(complete, running, "", "", string(deletingJob), true, false, uint8(0), "")
	f.Add(running, failed, "", "", "", true, true, uint8(0), "")
	f.Add(complete, complete, recorded, `{"commit":"0123abcd","files":3,"bytes":4096,"seconds":12}`, "", true, true, uint8(0), "")
	f.Add(running, running, "", "", foreign, false, true, uint8(0), "")
	f.Add(`{"conditions":[{"type":"Complete","status":"True"}]}`, "", `{"models":[{"name":"org/alpha","phase":"Completed"}]}`, "", "", false, true, uint8(0), "")

	// Reclaims recorded by earlier calls, good and bad, on this volume and
	// another: never a Job for a name outside the mount or in the spec.
	reclaims := `{"pvcUID":"` + testPVCUID + `","models":[{"name":"org/gone","phase":"Completed"}],"reclaims":[` +
		`{"name":"org/old","phase":"Running","attempt":1},{"name":"../../etc","phase":"Pending"},{"name":"org/alpha","phase":"Pending"},` +
		`{"name":"org/old","phase":"Failed"},{"name":"x","phase":"Nonsense"},{"name":"org/f","phase":"Failed","retry":"r0","attempt":7},{"name":"k","phase":"Kept"}]}`
	for pvc := range uint8(4) {
		f.Add(running, complete, reclaims, `{"bytesFreed":1,"files":1}`, "", true, false, pvc, "r1")
		f.Add(complete, failed, reclaims, "", "", false, true, pvc, "r0")
	}

	// Outcomes recorded under the hashes of a real first call, the Jobs gone
	// (their TTL) or still there, the PVC there, missing, replaced or going,
	// and the retry annotation set.
	for _, objects := range []bool{false, true} {
		first := fuzzBase()
		if objects {
			first = fuzzObjectBase()
		}
		rec := proto.Clone(first.GetDesired().GetComposite().GetResource().GetFields()["status"]).(*structpb.Value)
		entries := read.Get(rec.GetStructValue(), "models").GetListValue().GetValues()
		entries[0].GetStructValue().Fields["phase"] = str(read.PhaseFailed)
		entries[0].GetStructValue().Fields["retry"] = str("r1")
		entries[1].GetStructValue().Fields["phase"] = str(read.PhaseCompleted)
		recorded, err := rec.MarshalJSON()
		if err != nil {
			f.Fatal(err)
		}
		for pvc := range uint8(4) {
			f.Add("gone", "gone", string(recorded), "", "", true, objects, pvc, "r1")
			f.Add(failed, complete, string(recorded), "", "", true, objects, pvc, "r2")
			f.Add("gone", "gone", string(recorded), "", "", false, objects, pvc, "r2")
			f.Add(running, complete, string(recorded), "", string(deletingJob), true, objects, pvc, "")
		}
		// Checks of the completed model (settings.resyncInterval): due,
		// under way, failed, with its Job observed complete or not.
		entries[1].GetStructValue().Fields["checkedAt"] = str("2026-11-20T00:00:00Z")
		for _, resync := range []string{`{"check":1,"phase":"Running"}`, `{"check":3,"phase":"Failed","failedAt":"2026-11-26T01:30:00Z"}`, `{"check":0,"phase":"x"}`, ""} {
			if v, ok := jsonValue(resync); ok {
				entries[1].GetStructValue().Fields["resync"] = v
			}
			checking, err := rec.MarshalJSON()
			if err != nil {
				f.Fatal(err)
			}
			f.Add(failed, complete, string(checking)+" ", `{"commit":"0123abcd","files":3,"bytes":4096,"seconds":12}`, "", true, objects, uint8(0), "")
			f.Add("gone", "gone", string(checking), "", "", true, objects, uint8(0), "")
		}
	}

	f.Fuzz(func(t *testing.T, statusA, statusB, xrStatus, podMessage, foreign string, token, objects bool, pvc uint8, retry string) {
		if !utf8.ValidString(podMessage) || !utf8.ValidString(retry) { // protobuf strings are UTF-8
			return
		}
		base, xrText := fuzzBase(), xrYAML(twoModels)
		if objects {
			base, xrText = fuzzObjectBase(), fuzzClaimXR
		}
		observed := map[string]*fnv1.Resource{}
		var pods []*fnv1.Resource
		for i, key := range sortedKeys(jobResources(base)) {
			st := statusA
			if i == 1 {
				st = statusB
			}
			if st == "gone" {
				continue
			}
			composed := proto.Clone(jobResources(base)[key].GetResource()).(*structpb.Struct)
			job := composed
			if objects {
				// provider-kubernetes reports the Job it observed.
				job = proto.Clone(read.Get(composed, "spec", "forProvider", "manifest").GetStructValue()).(*structpb.Struct)
				composed.Fields["status"] = object(fields{"atProvider": object(fields{"manifest": structpb.NewStructValue(job)})})
			}
			if v, ok := jsonValue(st); ok {
				job.Fields["status"] = v
			}
			job.Fields["metadata"] = structpb.NewStructValue(proto.Clone(job.Fields["metadata"].GetStructValue()).(*structpb.Struct))
			job.Fields["metadata"].GetStructValue().Fields["uid"] = str(jobUID(read.GetString(job, "metadata", "name")))
			observed[key] = &fnv1.Resource{Resource: composed}
			pod := succeededPod(read.GetString(job, "metadata", "name"), "")
			read.Get(pod.GetResource(), "status", "containerStatuses").GetListValue().GetValues()[0].GetStructValue().
				GetFields()["state"].GetStructValue().GetFields()["terminated"].GetStructValue().Fields["message"] = str(podMessage)
			pods = append(pods, pod)
		}
		if fr, ok := jsonStruct(foreign); ok && admissible(fr, observed) {
			observed["foreign"] = &fnv1.Resource{Resource: fr}
		}
		var status *structpb.Value
		if v, ok := jsonValue(xrStatus); ok {
			status = v
		}
		xr := mustStruct(xrText)
		if status != nil {
			xr.Fields["status"] = status
		}
		if strings.Contains(xrStatus, "resync") {
			// A status that speaks of checks: they are on.
			read.Get(xr, "spec").GetStructValue().Fields["settings"] = object(fields{"resyncInterval": str("1h")})
		}
		if retry != "" {
			xr.Fields["metadata"].GetStructValue().Fields["annotations"] = object(fields{annotationRetry: str(retry)})
		}
		var secret *fnv1.Resource
		if token {
			secret = secretResource("token", testToken)
		}
		req := resolvedRequest(xr, observed, secret, pods, nil)
		switch pvc % 4 {
		case 1: // missing
			req.RequiredResources[read.RequirementPVC].Items = nil
		case 2: // deleted and made again: a new volume
			req.RequiredResources[read.RequirementPVC].Items = []*fnv1.Resource{pvcResource("another-volume")}
		case 3: // being deleted
			p := pvcResource(testPVCUID, "ReadWriteOnce")
			p.Resource.Fields["metadata"].GetStructValue().Fields["deletionTimestamp"] = str("2026-11-26T00:00:00Z")
			req.RequiredResources[read.RequirementPVC].Items = []*fnv1.Resource{p}
		}
		rsp := checkInvariants(t, req)
		// A resource that is not one of this function's Jobs is never
		// re-applied, least of all in another shape.
		if got, ok := jobResources(rsp)["foreign"]; ok {
			fr := observed["foreign"].GetResource()
			if _, deleting := observedPhase(fr); deleting {
				t.Fatalf("a resource being deleted was desired again: %s", read.GetString(got.GetResource(), "metadata", "name"))
			}
			if read.GetString(fr, "metadata", "labels", naming.LabelApp) != naming.AppName {
				t.Fatalf("a resource that is not ours was re-applied: %s %s", read.GetString(got.GetResource(), "kind"), read.GetString(got.GetResource(), "metadata", "name"))
			}
		}
	})
}

// admissible reports whether an observed Job (bare or in an Object) could
// exist next to the others: the apiserver validated its name and labels, and
// no two Jobs share a name in a namespace. Anything else may be anything.
func admissible(obj *structpb.Struct, others map[string]*fnv1.Resource) bool {
	for _, o := range []*structpb.Struct{obj, read.Get(obj, "spec", "forProvider", "manifest").GetStructValue()} {
		if k := read.GetString(o, "kind"); k != "Job" && k != "Object" {
			continue
		}
		for k, v := range read.Get(o, "metadata", "labels").GetStructValue().GetFields() {
			if validation.IsQualifiedName(k) != nil || validation.IsValidLabelValue(v.GetStringValue()) != nil {
				return false
			}
		}
		if read.GetString(o, "kind") != "Job" {
			continue
		}
		name := read.GetString(o, "metadata", "name")
		if validation.IsDNS1123Label(name) != nil || read.GetString(o, "metadata", "namespace") != "ml" {
			return false
		}
		for _, r := range others {
			if read.GetString(r.GetResource(), "metadata", "name") == name {
				return false
			}
		}
	}
	return true
}

// FuzzRequired: arbitrary required resources: the token Secret (any shape,
// any token bytes, in data or stringData) and the download pods (any list).
func FuzzRequired(f *testing.F) {
	secret := yamlJSON(f, readExample(f, "example/required/secret.yaml"))
	pods := yamlDocs(f, readExample(f, "example/required/pods.yaml"))
	podList := "[" + strings.Join(pods, ",") + "]"
	f.Add(secret, "token", testToken, true, podList)
	f.Add(secret, "token", "hf_example_not_a_real_token", false, "[]")
	f.Add(`{"kind":"Secret","data":{"token":"%%%notbase64"}}`, "", "", false, `[{"metadata":{"labels":{"job-name":"x"}},"status":{"containerStatuses":[{"name":"download","state":{"terminated":{"exitCode":0,"message":"{\"commit\":\"ab\",\"files\":1,\"bytes\":2,\"seconds\":3}"}}}]}}]`)
	f.Add(`{"data":{"other":"aGZfc2VjcmV0X3ZhbHVlX3h5eg=="}}`, "", "", false, `[1,"x",null,{}]`)
	f.Add(`{"data":"x","stringData":{"token":7}}`, "", "", false, `{}`)
	f.Add(`{}`, "token", "\x00\xff\u202e\n tok\"en'$(rm -rf /)`x`", true, `null`)
	f.Add(`{"data":{"token":""}}`, "", "", false, `[]`)

	f.Fuzz(func(t *testing.T, secretJSON, key, token string, asData bool, podsJSON string) {
		s, ok := jsonStruct(secretJSON)
		if !ok || !utf8.ValidString(key) || !asData && !utf8.ValidString(token) { // protobuf strings are UTF-8
			return
		}
		// The XR names the Secret "hf" and the key (default token).
		if key != "" {
			section := "stringData"
			value := str(token)
			if asData {
				section, value = "data", str(base64.StdEncoding.EncodeToString([]byte(token)))
			}
			sec := read.Get(s, section).GetStructValue()
			if sec == nil {
				sec = &structpb.Struct{Fields: fields{}}
				s.Fields[section] = structpb.NewStructValue(sec)
			}
			if sec.Fields == nil {
				sec.Fields = fields{}
			}
			sec.Fields[key] = value
		}
		var podItems []*fnv1.Resource
		if l, ok := jsonValue(podsJSON); ok {
			for _, p := range l.GetListValue().GetValues() {
				podItems = append(podItems, &fnv1.Resource{Resource: p.GetStructValue()})
			}
		}
		spec := "storagePVC: models\nhfTokenRef:\n  name: hf\n"
		if key != "" && validation.IsConfigMapKey(key) == nil {
			spec += "  key: '" + strings.ReplaceAll(key, "'", "''") + "'\n"
		}
		spec += "models:\n- name: Qwen/Qwen2.5-0.5B-Instruct\n- name: sentence-transformers/all-MiniLM-L6-v2\n"
		xr := mustStruct(xrYAML(spec))
		checkInvariants(t, resolvedRequest(xr, nil, &fnv1.Resource{Resource: s}, podItems, nil))
	})
}

// FuzzInput: arbitrary Inputs (any JSON object) with a valid XR and token.
func FuzzInput(f *testing.F) {
	comp, _ := jsonStruct(yamlJSON(f, readExample(f, "example/composition.yaml")))
	in, _ := read.Get(comp, "spec", "pipeline").GetListValue().GetValues()[0].GetStructValue().GetFields()["input"].MarshalJSON()
	f.Add(string(in), false)
	f.Add(string(in), true)
	const hdr = "apiVersion: hfdownload.fn.hfops.kamal.dev/v1beta1\nkind: Input\n"
	for _, s := range []string{
		"",
		"imagee: x\n",
		"imagePullPolicy: Sometimes\nmountPath: ../models\nmaxWorkers: 0\nenv:\n- name: HF_TOKEN\n  value: x\nresources:\n  memory: lots\nsecurityContext:\n  runAsUser: 0\n",
		"image: 'a b'\nimagePullSecrets: [Bad_Name, ok]\nserviceAccountName: sa\nmountPath: /data/models\nnodePoolLabelKey: example.com/pool\n",
		"tolerations:\n- key: gpu\n  operator: Exists\n  effect: NoSchedule\n- key: x\n  operator: Equal\n  value: 'a b'\n  tolerationSeconds: 5\n",
		"env:\n- name: HF_ENDPOINT\n  value: https://mirror\n- name: HF_ENDPOINT\n  value: x\n- name: 1BAD\n",
		"maxWorkers: 99999999999\nsecurityContext: {runAsUser: 9223372036854775807, fsGroup: -1}\n",
		"metadata: {name: x, labels: {a: b}}\nresources: {cpu: '-1'}\n",
		"mode: Object\nobject:\n  apiVersion: kubernetes.crossplane.io/v1alpha2\n  providerConfigRef: {name: default, kind: ClusterProviderConfig}\n",
	} {
		f.Add(yamlJSON(f, hdr+s), false)
		f.Add(yamlJSON(f, hdr+s), true)
	}
	f.Add(`{"env":null,"tolerations":[null],"resources":null}`, true)

	f.Fuzz(func(t *testing.T, input string, claim bool) {
		s, ok := jsonStruct(input)
		if !ok {
			return
		}
		xr := xrYAML(twoModels)
		if claim {
			// A cluster-scoped XR bound to a claim in namespace ml.
			xr = strings.Replace(xr, "  namespace: ml\n", "  labels:\n    crossplane.io/claim-namespace: ml\n    crossplane.io/claim-name: my-claim\n", 1)
		}
		req := withToken(xr).build()
		req.Input = s
		checkInvariants(t, req)
	})
}
