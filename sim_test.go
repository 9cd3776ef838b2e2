package main

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	fnv1 "github.com/crossplane/function-sdk-go/proto/v1"

	"github.com/hfops/function-hf-download/internal/naming"
	"github.com/hfops/function-hf-download/internal/read"
)

// A small simulator of what drives the function: Crossplane (the observed XR
// with the status the last call wrote, desired resources created and the
// ones left out deleted), the apiserver (names, uids), the Job controller and
// its pods, the TTL controller, and provider-kubernetes (an Object's Job made,
// adopted when its name exists, made again when deleted while the Object is
// desired, orphaned or deleted with the Object). Tests drive several calls
// through it and check what status promises.

// apiServer holds the objects of namespace ml that outlive a ModelDownload's
// composed resources: Jobs (orphaned ones too) and their pods.
type apiServer struct {
	jobs map[string]*structpb.Struct // by name
	pods map[string][]*fnv1.Resource // by Job uid
	pvc  *fnv1.Resource              // nil: missing
	seq  int
}

func newAPIServer() *apiServer {
	return &apiServer{jobs: map[string]*structpb.Struct{}, pods: map[string][]*fnv1.Resource{}, pvc: pvcResource(testPVCUID)}
}

func (a *apiServer) uid(kind string) string {
	a.seq++
	return fmt.Sprintf("%s-uid-%d", kind, a.seq)
}

// create makes a Job from a manifest, or adopts the one of that name: the
// apiserver keeps an existing Job (its spec is immutable) and its status.
func (a *apiServer) create(manifest *structpb.Struct) *structpb.Struct {
	name := read.GetString(manifest, "metadata", "name")
	if j, ok := a.jobs[name]; ok {
		return j
	}
	j := proto.Clone(manifest).(*structpb.Struct)
	j.Fields["metadata"].GetStructValue().Fields["uid"] = str(a.uid("job"))
	j.Fields["metadata"].GetStructValue().Fields["creationTimestamp"] = str(fmt.Sprintf("2026-11-26T03:%02d:%02dZ", a.seq/60%60, a.seq%60))
	a.jobs[name] = j
	return j
}

// beginDelete marks a Job deleted in the foreground: it stays, with a
// deletionTimestamp, until its pods are gone.
func (a *apiServer) beginDelete(name string) {
	if j, ok := a.jobs[name]; ok {
		j.Fields["metadata"].GetStructValue().Fields["deletionTimestamp"] = str("2026-11-26T02:00:00Z")
	}
}

func (a *apiServer) delete(name string) {
	if j, ok := a.jobs[name]; ok {
		delete(a.pods, read.GetString(j, "metadata", "uid"))
		delete(a.jobs, name)
	}
}

// xrSim is one ModelDownload as Crossplane reconciles it.
type xrSim struct {
	t       *testing.T
	api     *apiServer
	xr      *structpb.Struct
	input   string
	secret  *fnv1.Resource
	objects bool
	// observed composed resources by key, as Crossplane tracks them.
	observed map[string]*fnv1.Resource
	peers    func() []*fnv1.Resource
	last     *fnv1.RunFunctionResponse
	// progress is what the download pods patched into the progress
	// ConfigMap's data, by content hash.
	progress map[string]string
	// now is the time of the calls.
	now time.Time
}

func newXRSim(t *testing.T, api *apiServer, xrYAMLText string) *xrSim {
	s := &xrSim{t: t, api: api, xr: mustStruct(xrYAMLText), secret: secretResource("token", testToken),
		observed: map[string]*fnv1.Resource{}, now: testNow, objects: read.GetString(mustStruct(xrYAMLText), "metadata", "namespace") == ""}
	// The script's ConfigMap was made by an earlier call: the Jobs start at
	// the first one here.
	req := testRequest{xr: xrYAMLText, secret: s.secret}.build()
	for k, r := range req.GetObserved().GetResources() {
		s.observed[k] = r
	}
	return s
}

// reconcile is one call of the function and what Crossplane and the
// controllers make of its answer.
func (s *xrSim) reconcile() {
	s.t.Helper()
	s.refresh()
	req := &fnv1.RunFunctionRequest{
		Meta:     crossplaneV22("sim"),
		Observed: &fnv1.State{Composite: &fnv1.Resource{Resource: proto.Clone(s.xr).(*structpb.Struct)}, Resources: s.observed},
		RequiredResources: map[string]*fnv1.Resources{
			read.RequirementToken:         {},
			read.RequirementPVC:           {},
			read.RequirementPods:          {},
			read.RequirementPeers:         {},
			read.RequirementNamespaceJobs: {},
		},
	}
	for _, name := range sortedKeys(s.api.jobs) {
		req.RequiredResources[read.RequirementNamespaceJobs].Items = append(req.RequiredResources[read.RequirementNamespaceJobs].Items, &fnv1.Resource{Resource: s.api.jobs[name]})
	}
	if s.secret != nil {
		req.RequiredResources[read.RequirementToken].Items = []*fnv1.Resource{s.secret}
	}
	if s.api.pvc != nil {
		req.RequiredResources[read.RequirementPVC].Items = []*fnv1.Resource{s.api.pvc}
	}
	for _, pods := range s.api.pods {
		req.RequiredResources[read.RequirementPods].Items = append(req.RequiredResources[read.RequirementPods].Items, pods...)
	}
	if s.peers != nil {
		req.RequiredResources[read.RequirementPeers].Items = s.peers()
	}
	if s.input != "" {
		req.Input = mustStruct(s.input)
	}
	rsp := checkInvariantsAt(s.t, req, s.now)
	for _, r := range rsp.GetResults() {
		if r.GetSeverity() == fatal {
			s.t.Fatalf("unexpected Fatal: %s", r.GetMessage())
		}
	}
	if s.objects {
		checkSameOnCrossplane1x(s.t, req)
	}
	s.last = rsp
	s.xr.Fields["status"] = rsp.GetDesired().GetComposite().GetResource().GetFields()["status"]
	s.apply(rsp.GetDesired().GetResources())
}

// apply makes the desired set the observed set: new keys are created, kept
// keys updated (an Object's spec; a Job is immutable), and the keys left out
// deleted.
func (s *xrSim) apply(desired map[string]*fnv1.Resource) {
	for key, r := range desired {
		if key == read.PVCKey {
			continue
		}
		d := r.GetResource()
		if o, ok := s.observed[key]; ok {
			if s.objects {
				o.Resource.Fields["spec"] = d.GetFields()["spec"]
			}
			continue
		}
		c := proto.Clone(d).(*structpb.Struct)
		switch {
		case s.objects:
			c.Fields["metadata"].GetStructValue().Fields["name"] = str(s.api.uid("object"))
		case read.GetString(d, "kind") == "Job":
			c = s.api.create(d)
		}
		s.observed[key] = &fnv1.Resource{Resource: c}
	}
	for key, o := range s.observed {
		if _, ok := desired[key]; ok {
			continue
		}
		delete(s.observed, key)
		res := o.GetResource()
		if !s.objects {
			if read.GetString(res, "kind") == "Job" {
				s.api.delete(read.GetString(res, "metadata", "name"))
			}
			continue
		}
		// provider-kubernetes deletes the Job with the Object unless the
		// Object orphans it or may not delete.
		if !orphans(res) {
			s.api.delete(read.GetString(res, "spec", "forProvider", "manifest", "metadata", "name"))
		}
	}
	// The controllers act at once: provider-kubernetes makes the Jobs of new
	// Objects.
	s.refresh()
}

// refresh reads the Jobs back: a bare Job as the apiserver has it (gone:
// no longer observed), an Object with its Job in status.atProvider (made, or
// made again, by provider-kubernetes while the Object exists).
func (s *xrSim) refresh() {
	for key, o := range s.observed {
		res := o.GetResource()
		if !s.objects {
			j, ok := s.api.jobs[read.GetString(res, "metadata", "name")]
			if !ok {
				if read.GetString(res, "kind") == "Job" {
					delete(s.observed, key)
				}
				continue
			}
			o.Resource = proto.Clone(j).(*structpb.Struct)
			continue
		}
		manifest := read.Get(res, "spec", "forProvider", "manifest").GetStructValue()
		if manifest == nil {
			continue
		}
		if read.GetString(manifest, "kind") != "Job" {
			// The script's ConfigMap: made, and observed, at once.
			res.Fields["status"] = object(fields{"atProvider": object(fields{"manifest": structpb.NewStructValue(manifest)})})
			continue
		}
		j, ok := s.api.jobs[read.GetString(manifest, "metadata", "name")]
		if !ok && !observesOnly(res) {
			j = s.api.create(manifest)
		}
		if j == nil {
			continue
		}
		res.Fields["status"] = object(fields{"atProvider": object(fields{"manifest": structpb.NewStructValue(proto.Clone(j).(*structpb.Struct))})})
	}
	s.refreshProgress()
}

// refreshProgress puts the pods' reports into the observed progress
// ConfigMap (or its Object's observed manifest), as the API server has them.
func (s *xrSim) refreshProgress() {
	o, ok := s.observed[naming.ProgressKeyConfigMap]
	if !ok || len(s.progress) == 0 {
		return
	}
	cm := o.GetResource()
	if s.objects {
		cm = read.Get(cm, "status", "atProvider", "manifest").GetStructValue()
	}
	if cm == nil {
		return
	}
	data := fields{}
	for k, v := range s.progress {
		data[k] = str(v)
	}
	cm.Fields["data"] = object(data)
}

// report is what the pod of oneModel's org/alpha patches into the progress
// ConfigMap.
func (s *xrSim) report(progress string) {
	if s.progress == nil {
		s.progress = map[string]string{}
	}
	s.progress[s.entry("org/alpha")["contentHash"]] = progress
}

// managementPolicies of an Object; none means all.
func managementPolicies(obj *structpb.Struct) map[string]bool {
	v := read.Get(obj, "spec", "managementPolicies").GetListValue().GetValues()
	if len(v) == 0 {
		return map[string]bool{"*": true}
	}
	out := map[string]bool{}
	for _, p := range v {
		out[p.GetStringValue()] = true
	}
	return out
}

func observesOnly(obj *structpb.Struct) bool {
	p := managementPolicies(obj)
	return !p["*"] && !p["Create"]
}

func orphans(obj *structpb.Struct) bool {
	p := managementPolicies(obj)
	return read.GetString(obj, "spec", "deletionPolicy") == read.DeletionOrphan || !p["*"] && !p["Delete"]
}

// jobOf is the Job the current status entry of a model names.
func (s *xrSim) jobOf(model string) *structpb.Struct {
	s.t.Helper()
	name := s.entry(model)["jobName"]
	j, ok := s.api.jobs[name]
	if !ok {
		s.t.Fatalf("no Job %q for %s in the apiserver", name, model)
	}
	return j
}

// pvcUID is the volume the last call's status speaks of.
func (s *xrSim) pvcUID() string {
	return read.GetString(s.last.GetDesired().GetComposite().GetResource(), "status", "pvcUID")
}

// entry is a model's status entry as the last call wrote it.
func (s *xrSim) entry(model string) map[string]string {
	s.t.Helper()
	return statusEntry(s.t, s.last, model)
}

// finish sets the outcome of a model's Job as the Job controller would,
// with the pod its kubelet reported: exit 0 and the script's summary, or
// exit 1 and its termination message.
func (s *xrSim) finish(model string, ok bool, message string) {
	s.t.Helper()
	s.finishJob(s.jobOf(model), naming.ContainerName, ok, message)
}

// finishJob sets a Job's outcome, its pod's container named container.
func (s *xrSim) finishJob(j *structpb.Struct, container string, ok bool, message string) {
	s.t.Helper()
	status, code, reason := jobComplete, 0, "Completed"
	if !ok {
		status, code, reason = jobFailed, 1, "Error"
	}
	j.Fields["status"] = structpb.NewStructValue(mustStruct(status))
	name, uid := read.GetString(j, "metadata", "name"), read.GetString(j, "metadata", "uid")
	pod := mustStruct(fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s-p%d
  namespace: ml
  labels: {app: hf-downloader, batch.kubernetes.io/job-name: %s}
  ownerReferences: [{apiVersion: batch/v1, kind: Job, name: %s, uid: %s, controller: true}]
status:
  containerStatuses:
  - name: %s
    state: {terminated: {exitCode: %d, reason: %s, finishedAt: "2026-11-26T01:00:%02dZ"}}
`, name, s.api.seq, name, name, uid, container, code, reason, s.api.seq%60))
	read.Get(pod, "status", "containerStatuses").GetListValue().GetValues()[0].GetStructValue().
		GetFields()["state"].GetStructValue().GetFields()["terminated"].GetStructValue().Fields["message"] = str(message)
	s.api.pods[uid] = append(s.api.pods[uid], &fnv1.Resource{Resource: pod})
}

func (s *xrSim) start(model string) {
	s.jobOf(model).Fields["status"] = structpb.NewStructValue(mustStruct(jobRunning))
}

// running reconciles until the model's Job runs, and names it.
func (s *xrSim) running(model string) string {
	s.reconcile()
	s.start(model)
	s.reconcile()
	return s.entry(model)["jobName"]
}

// ttl deletes a finished Job as the TTL controller does.
func (s *xrSim) ttl(model string) { s.api.delete(s.entry(model)["jobName"]) }

// desiredJobs lists the names of the Jobs the last call desired.
func (s *xrSim) desiredJobs() []string {
	var out []string
	for key, r := range jobResources(s.last) {
		if key == read.PVCKey {
			continue
		}
		res := r.GetResource()
		if read.GetString(res, "kind") == "Object" {
			res = read.Get(res, "spec", "forProvider", "manifest").GetStructValue()
		}
		out = append(out, read.GetString(res, "metadata", "name"))
	}
	sort.Strings(out)
	return out
}

// setSpec edits the spec as text, in encoding/json's compact form.
func (s *xrSim) setSpec(from, to string) {
	s.t.Helper()
	text, err := json.Marshal(s.xr.GetFields()["spec"].AsInterface())
	if err != nil {
		s.t.Fatal(err)
	}
	changed := strings.Replace(string(text), from, to, 1)
	if changed == string(text) {
		s.t.Fatalf("%q is not in the spec %s", from, text)
	}
	v := &structpb.Value{}
	if err := v.UnmarshalJSON([]byte(changed)); err != nil {
		s.t.Fatal(err)
	}
	s.xr.Fields["spec"] = v
}

func (s *xrSim) annotate(key, value string) {
	md := s.xr.Fields["metadata"].GetStructValue()
	if md.Fields["annotations"] == nil {
		md.Fields["annotations"] = object(fields{})
	}
	md.Fields["annotations"].GetStructValue().Fields[key] = str(value)
}

func (s *xrSim) condition(typ string) *fnv1.Condition {
	for _, c := range s.last.GetConditions() {
		if c.GetType() == typ {
			return c
		}
	}
	s.t.Fatalf("no condition %s", typ)
	return nil
}

func (s *xrSim) xrReady() bool {
	return s.last.GetDesired().GetComposite().GetReady() == fnv1.Ready_READY_TRUE
}

// modes runs a sequence test of oneModel in Job mode (a namespaced XR) and
// Object mode (a claim's cluster-scoped XR).
func modes(t *testing.T, test func(t *testing.T, s *xrSim)) { specModes(t, oneModel, test) }

// specModes is modes for any spec.
func specModes(t *testing.T, spec string, test func(t *testing.T, s *xrSim)) {
	for mode, xr := range map[string]string{"JobMode": xrYAML(spec), "ObjectMode": claimXR(spec)} {
		t.Run(mode, func(t *testing.T) { test(t, newXRSim(t, newAPIServer(), xr)) })
	}
}

const oneModel = "storagePVC: models\nhfTokenRef:\n  name: hf\nmodels:\n- name: org/alpha\n"
