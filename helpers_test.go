package main

import (
	"context"
	"encoding/base64"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/crossplane/function-sdk-go/logging"
	fnv1 "github.com/crossplane/function-sdk-go/proto/v1"

	"github.com/hfops/function-hf-download/internal/build"
	"github.com/hfops/function-hf-download/internal/naming"
	"github.com/hfops/function-hf-download/internal/read"
)

// Builders shared by the tests: requests are written as YAML, as a user
// would write the XR, and turned into the protobuf Crossplane sends.

const testToken = "hf_TESTtokenVALUE_never_leaks_1234567890"

// mustStruct panics on bad YAML: that is a bug in the test itself.
func mustStruct(y string) *structpb.Struct {
	j, err := yaml.YAMLToJSON([]byte(y))
	if err != nil {
		panic(err)
	}
	s := &structpb.Struct{}
	if err := s.UnmarshalJSON(j); err != nil {
		panic(err)
	}
	return s
}

// xrYAML is a ModelDownload with the given spec body (indented by two).
func xrYAML(spec string) string {
	return `apiVersion: hfops.kamal.dev/v1alpha1
kind: ModelDownload
metadata:
  name: cache
  namespace: ml
spec:
` + indent(spec)
}

// indent indents YAML by two spaces, to nest it one level.
func indent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = "  " + l
	}
	return strings.Join(lines, "\n") + "\n"
}

const twoModels = `storagePVC: models
hfTokenRef:
  name: hf
models:
- name: org/alpha
- name: org/beta
  revision: v2
`

// secretResource is the token Secret "hf" of namespace ml.
func secretResource(key, value string) *fnv1.Resource {
	return &fnv1.Resource{Resource: &structpb.Struct{Fields: fields{
		"apiVersion": str("v1"),
		"kind":       str("Secret"),
		"metadata":   object(fields{"name": str("hf"), "namespace": str("ml")}),
		"data":       object(fields{key: str(base64.StdEncoding.EncodeToString([]byte(value)))}),
	}}}
}

// testPVCUID is the uid of the PVC the test requests find.
const testPVCUID = "6f1c0a52-0d4e-4b8e-9c1d-3a2b1c0d9e8f"

// pvcResource is the PVC "models" of namespace ml as Crossplane fetches it.
func pvcResource(uid string, accessModes ...string) *fnv1.Resource {
	if len(accessModes) == 0 {
		accessModes = []string{"ReadWriteMany"}
	}
	modes := make([]*structpb.Value, len(accessModes))
	for i, m := range accessModes {
		modes[i] = str(m)
	}
	return &fnv1.Resource{Resource: &structpb.Struct{Fields: fields{
		"apiVersion": str("v1"),
		"kind":       str("PersistentVolumeClaim"),
		"metadata":   object(fields{"name": str("models"), "namespace": str("ml"), "uid": str(uid)}),
		"spec":       object(fields{"accessModes": list(modes...)}),
	}}}
}

// testRequest is a RunFunctionRequest after Crossplane resolved the requirements.
type testRequest struct {
	xr       string
	input    string
	observed map[string]*fnv1.Resource
	secret   *fnv1.Resource // nil: the Secret does not exist
	pods     []*fnv1.Resource
	// pvc is the storagePVC as fetched; nil means pvcResource(testPVCUID)
	// unless noPVC says it does not exist.
	pvc   *fnv1.Resource
	noPVC bool
	peers []*fnv1.Resource
	// noScript: the script's ConfigMap does not exist yet (by default an
	// earlier call made it).
	noScript bool
}

// withScript adds to the observed resources the script ConfigMap and the
// progress objects (ConfigMap, ServiceAccount, Role, RoleBinding) the
// function desires for the request, as they exist once Crossplane (or, for an
// Object, provider-kubernetes) made them.
func withScript(req *fnv1.RunFunctionRequest) {
	probe := proto.Clone(req).(*fnv1.RunFunctionRequest)
	if probe.RequiredResources[read.RequirementPVC] == nil || len(probe.RequiredResources[read.RequirementPVC].GetItems()) == 0 {
		probe.RequiredResources[read.RequirementPVC] = &fnv1.Resources{Items: []*fnv1.Resource{pvcResource(testPVCUID)}}
	}
	var rsp *fnv1.RunFunctionResponse
	for range 3 {
		var err error
		if rsp, err = newTestFunction().RunFunction(context.Background(), probe); err != nil {
			return
		}
		// Requirements the request left out (the Namespace of
		// spec.storage): answered, as Crossplane would, with nothing found.
		if read.Resolved(probe.GetRequiredResources(), rsp.GetRequirements()) {
			break
		}
		for name := range rsp.GetRequirements().GetResources() {
			if _, ok := probe.RequiredResources[name]; !ok {
				probe.RequiredResources[name] = &fnv1.Resources{}
			}
		}
	}
	for k, r := range rsp.GetDesired().GetResources() {
		if !strings.HasPrefix(k, build.ScriptKeyPrefix) && !strings.HasPrefix(k, naming.ProgressKeyPrefix) {
			continue
		}
		if req.Observed.Resources == nil {
			req.Observed.Resources = map[string]*fnv1.Resource{}
		}
		if _, ok := req.Observed.Resources[k]; ok {
			continue
		}
		c := proto.Clone(r.GetResource()).(*structpb.Struct)
		if read.GetString(c, "kind") == "Object" {
			c.Fields["status"] = object(fields{"atProvider": object(fields{"manifest": c.GetFields()["spec"].GetStructValue().GetFields()["forProvider"].GetStructValue().GetFields()["manifest"]})})
		}
		req.Observed.Resources[k] = &fnv1.Resource{Resource: c}
	}
}

// crossplaneV22 is the RequestMeta of Crossplane v2.2 and later, which say
// that they take requirements.resources: the dialect most tests speak
// (dialect_test.go speaks 1.x's).
func crossplaneV22(tag string) *fnv1.RequestMeta {
	return &fnv1.RequestMeta{Tag: tag, Capabilities: []fnv1.Capability{
		fnv1.Capability_CAPABILITY_CAPABILITIES,
		fnv1.Capability_CAPABILITY_REQUIRED_RESOURCES,
		fnv1.Capability_CAPABILITY_CONDITIONS,
	}}
}

func (r testRequest) build() *fnv1.RunFunctionRequest {
	req := &fnv1.RunFunctionRequest{
		Meta:     crossplaneV22("tag"),
		Observed: &fnv1.State{Composite: &fnv1.Resource{Resource: mustStruct(r.xr)}, Resources: r.observed},
		RequiredResources: map[string]*fnv1.Resources{
			read.RequirementToken: {},
			read.RequirementPods:  {Items: r.pods},
			read.RequirementPVC:   {},
			read.RequirementPeers: {Items: r.peers},
		},
	}
	if r.secret != nil {
		req.RequiredResources[read.RequirementToken].Items = []*fnv1.Resource{r.secret}
	}
	switch {
	case r.pvc != nil:
		req.RequiredResources[read.RequirementPVC].Items = []*fnv1.Resource{r.pvc}
	case !r.noPVC:
		req.RequiredResources[read.RequirementPVC].Items = []*fnv1.Resource{pvcResource(testPVCUID)}
	}
	if r.input != "" {
		req.Input = mustStruct(r.input)
	}
	if !r.noScript {
		withScript(req)
	}
	return req
}

func withToken(xr string) testRequest {
	return testRequest{xr: xr, secret: secretResource("token", testToken)}
}

func newTestFunction() *Function {
	return &Function{log: logging.NewNopLogger()}
}

// observedJob is what Crossplane would observe of a desired Job once the Job
// controller reported the given conditions (type=status pairs) and counts.
func observedJob(desired *fnv1.Resource, status string) *fnv1.Resource {
	job := &structpb.Struct{Fields: make(fields, len(desired.GetResource().GetFields())+1)}
	for k, v := range desired.GetResource().GetFields() {
		job.Fields[k] = v
	}
	if status != "" {
		job.Fields["status"] = structpb.NewStructValue(mustStruct(status))
	}
	// The apiserver gives every Job a uid; its pods name it as their owner.
	md := proto.Clone(job.Fields["metadata"].GetStructValue()).(*structpb.Struct)
	md.Fields["uid"] = str(jobUID(read.GetString(md, "name")))
	job.Fields["metadata"] = structpb.NewStructValue(md)
	return &fnv1.Resource{Resource: job}
}

const (
	jobComplete = `conditions:
- type: SuccessCriteriaMet
  status: "True"
- type: Complete
  status: "True"
succeeded: 1
`
	jobFailed = `conditions:
- type: FailureTarget
  status: "True"
- type: Failed
  status: "True"
  reason: BackoffLimitExceeded
  message: Job has reached the specified backoff limit
failed: 3
`
	jobRunning = `active: 1
`
)

// jobUID is the uid the tests' apiserver gives the Job of that name.
func jobUID(name string) string { return "uid-" + name }

func encodeB64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// The same validators the apiserver runs on names and labels.
func dnsLabelProblems(s string) []string { return validation.IsDNS1123Label(s) }

func labelValueProblems(s string) []string { return validation.IsValidLabelValue(s) }
