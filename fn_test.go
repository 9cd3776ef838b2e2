package main

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"k8s.io/utils/ptr"

	fnv1 "github.com/crossplane/function-sdk-go/proto/v1"

	"github.com/hfops/function-hf-download/apis/v1alpha1"
	"github.com/hfops/function-hf-download/internal/build"
	"github.com/hfops/function-hf-download/internal/decide"
	"github.com/hfops/function-hf-download/internal/naming"
	"github.com/hfops/function-hf-download/internal/read"
	"github.com/hfops/function-hf-download/internal/respond"
)

var (
	fatal   = fnv1.Severity_SEVERITY_FATAL
	warning = fnv1.Severity_SEVERITY_WARNING
	both    = fnv1.Target_TARGET_COMPOSITE_AND_CLAIM.Enum()
	condT   = fnv1.Status_STATUS_CONDITION_TRUE
	condF   = fnv1.Status_STATUS_CONDITION_FALSE
)

func fatalResponse(msg string) *fnv1.RunFunctionResponse {
	return &fnv1.RunFunctionResponse{
		Meta:    &fnv1.ResponseMeta{Tag: "tag", Ttl: durationpb.New(ttlSettled)},
		Results: []*fnv1.Result{{Severity: fatal, Message: msg, Target: fnv1.Target_TARGET_COMPOSITE.Enum()}},
	}
}

// TestRunFunction covers the responses that hold no Job: bad input, the first
// call, a missing token, and the memory of Jobs deleted by their TTL.
func TestRunFunction(t *testing.T) {
	cases := map[string]struct {
		reason string
		req    *fnv1.RunFunctionRequest
		want   *fnv1.RunFunctionResponse
	}{
		"InputWithUnknownField": {
			reason: "An Input field the function does not know is refused, not ignored.",
			req:    testRequest{xr: xrYAML(twoModels), input: "apiVersion: hfdownload.fn.hfops.kamal.dev/v1beta1\nkind: Input\nimagee: x\n"}.build(),
			want:   fatalResponse(`invalid function input: input: Invalid value: "imagee": unknown field`),
		},
		"InputWithBadValues": {
			reason: "Every bad Input value is named with its field.",
			req: testRequest{xr: xrYAML(twoModels), input: `apiVersion: hfdownload.fn.hfops.kamal.dev/v1beta1
kind: Input
imagePullPolicy: Sometimes
mountPath: ../models
maxWorkers: 0
env:
- name: HF_TOKEN
  value: x
resources:
  memory: lots
securityContext:
  runAsUser: 0
`}.build(),
			want: fatalResponse(`invalid function input: [` +
				`input.imagePullPolicy: Unsupported value: "Sometimes": supported values: "Always", "IfNotPresent", "Never", ` +
				`input.mountPath: Invalid value: "../models": must be a clean absolute path other than /, ` +
				`input.env[0].name: Forbidden: HF_TOKEN is set by the function itself, ` +
				`input.resources.memory: Invalid value: "lots": must be a Kubernetes quantity such as 500m, 2 or 8Gi, ` +
				`input.securityContext.runAsUser: Invalid value: 0: must be a non-root id between 1 and 2147483647, ` +
				`input.maxWorkers: Invalid value: 0: must be between 1 and 64]`),
		},
		"NoModels": {
			reason: "A spec without models cannot work.",
			req:    testRequest{xr: xrYAML("storagePVC: models\nmodels: []\n")}.build(),
			want:   fatalResponse(`invalid ModelDownload spec: spec.models: Required value: at least one model is required`),
		},
		"WrongTypesAndBadQuantity": {
			reason: "Wrong types and bad quantities are Fatal, each naming field and value, and a field of the wrong type is not also called missing.",
			req: testRequest{xr: xrYAML(`storagePVC: 7
models:
- name: org/a
settings:
  keepAliveSeconds: -1
  timeoutMillis: 1.5
  cpu: two
  forceReload: "yes"
`)}.build(),
			want: fatalResponse(`invalid ModelDownload spec: [` +
				`spec.storagePVC: Invalid value: "number": must be a string, ` +
				`spec.settings.timeoutMillis: Invalid value: 1.5: must be a whole number, ` +
				`spec.settings.keepAliveSeconds: Invalid value: -1: must be between 0 and 2147483647, ` +
				`spec.settings.forceReload: Invalid value: "string": must be a boolean, ` +
				`spec.settings.cpu: Invalid value: "two": must be a Kubernetes quantity such as 500m, 2 or 8Gi]`),
		},
		"DuplicateModels": {
			reason: "Two entries for one repo are ambiguous: Fatal, naming both.",
			req:    testRequest{xr: xrYAML("storagePVC: models\nmodels:\n- name: org/a\n- name: org/a\n")}.build(),
			want:   fatalResponse(`invalid ModelDownload spec: spec.models[1].name: Duplicate value: "org/a": already used by spec.models[0].name`),
		},
		"BadTokenRefAndNodePool": {
			reason: "XR-wide references are validated with apimachinery's validators.",
			req:    testRequest{xr: xrYAML("storagePVC: Models_PVC\nnodePool: 'spot pool'\nhfTokenRef:\n  name: hf\n  key: 'a/b'\nmodels:\n- name: org/a\n")}.build(),
			want: fatalResponse(`invalid ModelDownload spec: [` +
				`spec.storagePVC: Invalid value: "Models_PVC": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*'), ` +
				`spec.hfTokenRef.key: Invalid value: "a/b": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+'), ` +
				`spec.nodePool: Invalid value: "spot pool": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')]`),
		},
		"FirstCallAsksForSecretAndPods": {
			reason: "Before Crossplane resolved the requirements the function only states them.",
			req: &fnv1.RunFunctionRequest{
				Meta:     crossplaneV22("tag"),
				Observed: &fnv1.State{Composite: &fnv1.Resource{Resource: mustStruct(xrYAML(twoModels))}},
			},
			want: &fnv1.RunFunctionResponse{
				Meta: &fnv1.ResponseMeta{Tag: "tag", Ttl: durationpb.New(ttlSettled)},
				Requirements: &fnv1.Requirements{Resources: map[string]*fnv1.ResourceSelector{
					read.RequirementToken: {ApiVersion: "v1", Kind: "Secret", Namespace: ptr.To("ml"), Match: &fnv1.ResourceSelector_MatchName{MatchName: "hf"}},
					read.RequirementPods: {ApiVersion: "v1", Kind: "Pod", Namespace: ptr.To("ml"), Match: &fnv1.ResourceSelector_MatchLabels{
						MatchLabels: &fnv1.MatchLabels{Labels: map[string]string{"app": "hf-downloader", "parent": "cache"}}}},
					read.RequirementPVC: {ApiVersion: "v1", Kind: "PersistentVolumeClaim", Namespace: ptr.To("ml"), Match: &fnv1.ResourceSelector_MatchName{MatchName: "models"}},
					read.RequirementPeers: {ApiVersion: "hfops.kamal.dev/v1alpha1", Kind: "ModelDownload", Namespace: ptr.To("ml"), Match: &fnv1.ResourceSelector_MatchLabels{
						MatchLabels: &fnv1.MatchLabels{Labels: map[string]string{}}}},
				}},
			},
		},
		"SecretMissing": {
			reason: "Without the Secret no Job starts; a warning and a condition name Secret, key and namespace; Crossplane calls again soon.",
			req:    testRequest{xr: xrYAML(twoModels)}.build(),
			want: &fnv1.RunFunctionResponse{
				Meta:         &fnv1.ResponseMeta{Tag: "tag", Ttl: durationpb.New(ttlWaiting)},
				Requirements: withPeers(read.Requirements("ml", "cache", &read.XRSpec{ModelDownloadSpec: v1alpha1.ModelDownloadSpec{StoragePVC: "models", HFTokenRef: &v1alpha1.TokenRef{Name: "hf", Key: "token"}}}, false)),
				Desired: &fnv1.State{
					Composite: &fnv1.Resource{Resource: mustStruct(`status:
  pending: [org/alpha, org/beta]
  completed: []
  failed: []
  progress: 0/2
  downloaded: 0/0 B
  pvcUID: ` + testPVCUID + `
  models:
  - name: org/alpha
    phase: Pending
    path: /models/org/alpha
    message: 'waiting for the Hugging Face token: Secret "hf" in namespace "ml" was not found'
    contentHash: c59535cc789c1f35
  - name: org/beta
    phase: Pending
    path: /models/org/beta
    message: 'waiting for the Hugging Face token: Secret "hf" in namespace "ml" was not found'
    contentHash: 26d4805ab144e28f
`), Ready: fnv1.Ready_READY_FALSE},
					Resources: map[string]*fnv1.Resource{},
				},
				Results: []*fnv1.Result{{Severity: warning, Target: both,
					Message: `no new download Jobs start until the token is readable: Secret "hf" in namespace "ml" was not found`}},
				Conditions: []*fnv1.Condition{
					{Type: conditionDownloaded, Status: condF, Reason: "Downloading", Target: both, Message: ptr.To("0/2 models downloaded; in progress: org/alpha, org/beta")},
					{Type: conditionModelsValid, Status: condT, Reason: "AllModelsValid", Target: both},
					{Type: conditionTokenAvailable, Status: condF, Reason: read.ReasonSecretNotFound, Target: both, Message: ptr.To(`Secret "hf" in namespace "ml" was not found`)},
					{Type: read.ConditionStorageReady, Status: condT, Reason: read.ReasonPVCFound, Target: both, Message: ptr.To(`PersistentVolumeClaim "models" is there`)},
					{Type: decide.ConditionConflict, Status: condF, Reason: decide.ReasonNoConflict, Target: both},
				},
			},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := newTestFunction().RunFunction(context.Background(), tc.req)
			// The script's ConfigMap and the progress objects have tests of
			// their own.
			for k := range got.GetDesired().GetResources() {
				if strings.HasPrefix(k, build.ScriptKeyPrefix) || strings.HasPrefix(k, naming.ProgressKeyPrefix) {
					delete(got.Desired.Resources, k)
				}
			}
			if got.GetDesired() != nil && len(got.Desired.Resources) == 0 {
				got.Desired.Resources = nil
			}
			if err != nil {
				t.Fatalf("%s\nRunFunction(...): unexpected error: %v", tc.reason, err)
			}
			if diff := cmp.Diff(tc.want, got, protocmp.Transform()); diff != "" {
				t.Errorf("%s\nRunFunction(...): -want, +got:\n%s", tc.reason, diff)
			}
		})
	}
}

// outcome is what a test reads of a response with Jobs: the Job names and
// readiness by key, the XR's status and readiness, results, conditions, TTL.
type outcome struct {
	Jobs       map[string]jobOutcome
	Status     *structpb.Struct
	XRReady    fnv1.Ready
	Results    []*fnv1.Result
	Conditions map[string]string // type: status/reason
	TTL        time.Duration
}

type jobOutcome struct {
	Name  string
	Ready fnv1.Ready
}

func outcomeOf(t *testing.T, rsp *fnv1.RunFunctionResponse) outcome {
	t.Helper()
	// status.downloaded has a test of its own (TestProgressFolded).
	status := proto.Clone(rsp.GetDesired().GetComposite().GetResource().GetFields()["status"].GetStructValue()).(*structpb.Struct)
	delete(status.GetFields(), "downloaded")
	o := outcome{
		Jobs:       map[string]jobOutcome{},
		Status:     status,
		XRReady:    rsp.GetDesired().GetComposite().GetReady(),
		Results:    rsp.GetResults(),
		Conditions: map[string]string{},
		TTL:        rsp.GetMeta().GetTtl().AsDuration(),
	}
	for k, r := range jobResources(rsp) {
		o.Jobs[k] = jobOutcome{Name: read.GetString(r.GetResource(), "metadata", "name"), Ready: r.GetReady()}
	}
	for _, c := range rsp.GetConditions() {
		o.Conditions[c.GetType()] = c.GetStatus().String() + "/" + c.GetReason()
	}
	return o
}

// jobResources are the desired resources of a response but the script's
// ConfigMap, which every response with Jobs carries (script/script_test.go).
func jobResources(rsp *fnv1.RunFunctionResponse) map[string]*fnv1.Resource {
	out := map[string]*fnv1.Resource{}
	for k, r := range rsp.GetDesired().GetResources() {
		if !strings.HasPrefix(k, build.ScriptKeyPrefix) && !strings.HasPrefix(k, naming.ProgressKeyPrefix) {
			out[k] = r
		}
	}
	return out
}

func run(t *testing.T, req *fnv1.RunFunctionRequest) *fnv1.RunFunctionResponse {
	t.Helper()
	rsp, err := newTestFunction().RunFunction(context.Background(), req)
	if err != nil {
		t.Fatalf("RunFunction: %v", err)
	}
	for _, r := range rsp.GetResults() {
		if r.GetSeverity() == fatal {
			t.Fatalf("RunFunction: unexpected Fatal: %s", r.GetMessage())
		}
	}
	checkResponseSizeIsProtos(t, rsp)
	return rsp
}

// checkResponseSizeIsProtos: the size check's responseSize is what protobuf
// counts, for every response a test makes.
func checkResponseSizeIsProtos(t *testing.T, rsp *fnv1.RunFunctionResponse) {
	t.Helper()
	if got, want := respond.Size(rsp), proto.Size(rsp); got != want {
		t.Fatalf("responseSize gives %d bytes, protobuf %d", got, want)
	}
}

// TestResponseSizeIsProtos: the memoized size of responses whose Jobs share most of
// their messages is protobuf's own, in Job and Object mode, first and steady.
func TestResponseSizeIsProtos(t *testing.T) {
	for _, n := range []int{1, 10, 100} {
		first, steady := benchRequests(t, n)
		for _, req := range []*fnv1.RunFunctionRequest{first.req, steady.req} {
			checkResponseSizeIsProtos(t, run(t, req))
			obj := proto.Clone(req).(*fnv1.RunFunctionRequest)
			obj.Input = mustStruct(namespacedObjectInput)
			checkResponseSizeIsProtos(t, run(t, obj))
		}
	}
}

// keyOf returns the resource key of the model's Job in a response.
func keyOf(t *testing.T, rsp *fnv1.RunFunctionResponse, model string) string {
	t.Helper()
	for k, r := range jobResources(rsp) {
		if read.GetString(r.GetResource(), "metadata", "annotations", naming.AnnotationModel) == model {
			return k
		}
	}
	t.Fatalf("no Job for model %q in %v", model, jobResources(rsp))
	return ""
}

// TestRunFunctionJobs follows an XR through its life: Jobs created, observed
// running, complete or failed, removed by their TTL, and a model removed.
// alphaDone is org/alpha's completion as status shows it: verified, with its
// card; alphaUnverified, one recorded before downloads were verified.
const (
	alphaUnverified = "  commit: 0123abcd\n  files: 3\n  bytes: 4096\n  durationSeconds: 12\n"
	alphaDone       = alphaUnverified + "  verified: true\n  card: {modelType: bert, parameters: 110000000}\n"
)

func TestRunFunctionJobs(t *testing.T) {
	first := run(t, withToken(xrYAML(twoModels)).build())
	ka, kb := keyOf(t, first, "org/alpha"), keyOf(t, first, "org/beta")
	na := read.GetString(jobResources(first)[ka].GetResource(), "metadata", "name")
	nb := read.GetString(jobResources(first)[kb].GetResource(), "metadata", "name")
	ha, hb := na[len(na)-naming.SpecHashLen:], nb[len(nb)-naming.SpecHashLen:]
	ha2 := hashAt(t, withToken(xrYAML(twoModels)), "org/alpha", 2)
	observe := func(a, b string) map[string]*fnv1.Resource {
		m := map[string]*fnv1.Resource{}
		if a != "gone" {
			m[ka] = observedJob(jobResources(first)[ka], a)
		}
		if b != "gone" {
			m[kb] = observedJob(jobResources(first)[kb], b)
		}
		return m
	}
	content, intent := map[string]string{}, map[string]string{}
	for _, m := range first.GetDesired().GetComposite().GetResource().GetFields()["status"].GetStructValue().GetFields()["models"].GetListValue().GetValues() {
		content[read.GetString(m.GetStructValue(), "name")] = read.GetString(m.GetStructValue(), "contentHash")
		intent[read.GetString(m.GetStructValue(), "name")] = read.GetString(m.GetStructValue(), "intentHash")
	}
	// modelEntry is a model's status entry at the given attempt (1 unless
	// extra says otherwise).
	modelEntry := func(name, job, hash, phase, extra string) string {
		if !strings.Contains(extra, "attempt:") {
			extra = "  attempt: 1\n" + extra
		}
		// Hashes quoted: one of hex digits alone (or 1e5…) is no number.
		return "- name: " + name + "\n  jobName: " + job + "\n  hash: \"" + hash + "\"\n  phase: " + phase +
			"\n  path: /models/" + name + "\n  contentHash: \"" + content[name] + "\"\n  intentHash: \"" + intent[name] + "\"\n" + extra
	}
	allValid := "STATUS_CONDITION_TRUE/AllModelsValid"
	tokenOK := "STATUS_CONDITION_TRUE/SecretFound"
	conds := func(downloaded, valid string) map[string]string {
		return map[string]string{conditionDownloaded: downloaded, conditionModelsValid: valid, conditionTokenAvailable: tokenOK,
			read.ConditionStorageReady: "STATUS_CONDITION_TRUE/PVCFound", decide.ConditionConflict: "STATUS_CONDITION_FALSE/NoConflict"}
	}
	statusOf := func(pending, completed, failed, progress string, models ...string) *structpb.Struct {
		return mustStruct("pending: " + pending + "\ncompleted: " + completed + "\nfailed: " + failed +
			"\nprogress: " + progress + "\npvcUID: " + testPVCUID + "\nmodels:\n" + strings.Join(models, ""))
	}

	// downloadedAgain: org/alpha in its second attempt, org/beta in its first.
	downloadedAgain := outcome{
		Jobs: map[string]jobOutcome{"job-org-alpha-" + ha2: {"hf-dl-cache-org-alpha-" + ha2, fnv1.Ready_READY_FALSE}, kb: {nb, fnv1.Ready_READY_FALSE}},
		Status: statusOf("[org/alpha, org/beta]", "[]", "[]", "0/2",
			modelEntry("org/alpha", "hf-dl-cache-org-alpha-"+ha2, ha2, "Pending", "  attempt: 2\n"), modelEntry("org/beta", nb, hb, "Pending", "")),
		XRReady:    fnv1.Ready_READY_FALSE,
		Conditions: conds("STATUS_CONDITION_FALSE/Downloading", allValid),
		TTL:        ttlDownloading,
	}
	cases := map[string]struct {
		reason string
		req    testRequest
		want   outcome
	}{
		"Created": {
			reason: "Each model gets a Job, not ready; both models are pending; Crossplane calls again within 20 s.",
			req:    withToken(xrYAML(twoModels)),
			want: outcome{
				Jobs: map[string]jobOutcome{ka: {na, fnv1.Ready_READY_FALSE}, kb: {nb, fnv1.Ready_READY_FALSE}},
				Status: statusOf("[org/alpha, org/beta]", "[]", "[]", "0/2",
					modelEntry("org/alpha", na, ha, "Pending", ""), modelEntry("org/beta", nb, hb, "Pending", "")),
				XRReady:    fnv1.Ready_READY_FALSE,
				Conditions: conds("STATUS_CONDITION_FALSE/Downloading", allValid),
				TTL:        ttlDownloading,
			},
		},
		"OneRunningOneComplete": {
			reason: "An active Job is Running; a Complete one is ready and Completed.",
			req:    testRequest{xr: xrYAML(twoModels), secret: secretResource("token", testToken), observed: observe(jobRunning, jobComplete)},
			want: outcome{
				Jobs: map[string]jobOutcome{ka: {na, fnv1.Ready_READY_FALSE}, kb: {nb, fnv1.Ready_READY_TRUE}},
				Status: statusOf("[org/alpha]", "[org/beta]", "[]", "1/2",
					modelEntry("org/alpha", na, ha, "Running", ""), modelEntry("org/beta", nb, hb, "Completed", "")),
				XRReady:    fnv1.Ready_READY_FALSE,
				Conditions: conds("STATUS_CONDITION_FALSE/Downloading", allValid),
				TTL:        ttlDownloading,
			},
		},
		"OneCompleteOneFailed": {
			reason: "A failed Job is never ready; its reason reaches the model's message; nothing is pending, so the default TTL.",
			req:    testRequest{xr: xrYAML(twoModels), secret: secretResource("token", testToken), observed: observe(jobComplete, jobFailed)},
			want: outcome{
				Jobs: map[string]jobOutcome{ka: {na, fnv1.Ready_READY_TRUE}, kb: {nb, fnv1.Ready_READY_FALSE}},
				Status: statusOf("[]", "[org/alpha]", "[org/beta]", "1/2",
					modelEntry("org/alpha", na, ha, "Completed", ""),
					modelEntry("org/beta", nb, hb, "Failed", "  message: 'BackoffLimitExceeded: Job has reached the specified backoff limit'\n")),
				XRReady: fnv1.Ready_READY_FALSE,
				Results: []*fnv1.Result{{Severity: warning, Target: both,
					Message: "model org/beta failed: BackoffLimitExceeded: Job has reached the specified backoff limit (to try again as it is: kubectl annotate --overwrite modeldownload cache hfops.kamal.dev/retry=<a new value>)"}},
				Conditions: conds("STATUS_CONDITION_FALSE/DownloadFailed", allValid),
				TTL:        ttlSettled,
			},
		},
		"AllCompleteWithPods": {
			reason: "All Jobs complete: the XR is ready; the pods' termination messages say which commit is on disk.",
			req: testRequest{xr: xrYAML(twoModels), secret: secretResource("token", testToken), observed: observe(jobComplete, jobComplete),
				pods: []*fnv1.Resource{succeededPod(na, `{"commit":"0123abcd","files":3,"bytes":4096,"seconds":12,"verified":true,"card":{"modelType":"bert","parameters":110000000}}`), succeededPod(nb, "not json")}},
			want: outcome{
				Jobs: map[string]jobOutcome{ka: {na, fnv1.Ready_READY_TRUE}, kb: {nb, fnv1.Ready_READY_TRUE}},
				Status: statusOf("[]", "[org/alpha, org/beta]", "[]", "2/2",
					modelEntry("org/alpha", na, ha, "Completed", alphaDone),
					modelEntry("org/beta", nb, hb, "Completed", "")),
				XRReady:    fnv1.Ready_READY_TRUE,
				Conditions: conds("STATUS_CONDITION_TRUE/Downloaded", allValid),
				TTL:        ttlSettled,
			},
		},
		"JobDeletedByTTL": {
			reason: "A model Completed under the current hash whose Job is gone stays Completed, keeps its commit, and gets no new Job.",
			req: testRequest{
				xr: xrYAML(twoModels) + "status:\n  models:\n" + indent(
					modelEntry("org/alpha", na, ha, "Completed", alphaDone)+
						modelEntry("org/beta", nb, hb, "Completed", "")),
				secret:   secretResource("token", testToken),
				observed: observe("gone", jobComplete),
			},
			want: outcome{
				Jobs: map[string]jobOutcome{kb: {nb, fnv1.Ready_READY_TRUE}},
				Status: statusOf("[]", "[org/alpha, org/beta]", "[]", "2/2",
					modelEntry("org/alpha", na, ha, "Completed", alphaDone),
					modelEntry("org/beta", nb, hb, "Completed", "")),
				XRReady:    fnv1.Ready_READY_TRUE,
				Conditions: conds("STATUS_CONDITION_TRUE/Downloaded", allValid),
				TTL:        ttlSettled,
			},
		},
		"CompletedJobBeingDeletedByTTL": {
			reason: "The TTL controller deletes in the foreground, so a finished Job lingers with a deletionTimestamp: it is never desired again, and the recorded model stays Completed.",
			req: testRequest{
				xr: xrYAML(twoModels) + "status:\n  models:\n" + indent(
					modelEntry("org/alpha", na, ha, "Completed", alphaUnverified)+modelEntry("org/beta", nb, hb, "Completed", "")),
				secret:   secretResource("token", testToken),
				observed: map[string]*fnv1.Resource{ka: beingDeletedJob(observe(jobComplete, "")[ka]), kb: observe("", jobComplete)[kb]},
			},
			want: outcome{
				Jobs: map[string]jobOutcome{kb: {nb, fnv1.Ready_READY_TRUE}},
				Status: statusOf("[]", "[org/alpha, org/beta]", "[]", "2/2",
					modelEntry("org/alpha", na, ha, "Completed", alphaUnverified+"  verified: false\n"), modelEntry("org/beta", nb, hb, "Completed", "")),
				XRReady:    fnv1.Ready_READY_TRUE,
				Conditions: conds("STATUS_CONDITION_TRUE/Downloaded", allValid),
				TTL:        ttlSettled,
			},
		},
		"CompletedJobBeingDeletedBeforeRecorded": {
			reason: "A Job deleted so soon after success that no status recorded it: what it shows (Complete) is recorded, and it is not desired, so it cannot come back.",
			req: testRequest{
				xr:       xrYAML(twoModels),
				secret:   secretResource("token", testToken),
				observed: map[string]*fnv1.Resource{ka: beingDeletedJob(observe(jobComplete, "")[ka]), kb: observe("", jobComplete)[kb]},
			},
			want: outcome{
				Jobs: map[string]jobOutcome{kb: {nb, fnv1.Ready_READY_TRUE}},
				Status: statusOf("[]", "[org/alpha, org/beta]", "[]", "2/2",
					modelEntry("org/alpha", na, ha, "Completed", ""), modelEntry("org/beta", nb, hb, "Completed", "")),
				XRReady:    fnv1.Ready_READY_TRUE,
				Conditions: conds("STATUS_CONDITION_TRUE/Downloaded", allValid),
				TTL:        ttlSettled,
			},
		},
		"CompletedUnderAnOldHash": {
			reason: "A Completed record under another hash, of no recorded volume, is no memory: the model is downloaded again, in an attempt after the recorded one.",
			req: testRequest{
				xr:     xrYAML(twoModels) + "status:\n  models:\n" + indent(modelEntry("org/alpha", "hf-dl-cache-org-alpha-abcdef0123", "abcdef0123", "Completed", "")),
				secret: secretResource("token", testToken),
			},
			want: downloadedAgain,
		},
		"CompletedBeforeAnUpgrade": {
			reason: "A Completed record under another hash but the same intent, on the volume it names, is what an upgrade of the function leaves: it stays Completed, and no Job comes back.",
			req: testRequest{
				xr: xrYAML(twoModels) + "status:\n  pvcUID: " + testPVCUID + "\n  models:\n" +
					indent(modelEntry("org/alpha", "hf-dl-cache-org-alpha-abcdef0123", "abcdef0123", "Completed", "")),
				secret: secretResource("token", testToken),
			},
			want: outcome{
				Jobs: map[string]jobOutcome{kb: {nb, fnv1.Ready_READY_FALSE}},
				Status: statusOf("[org/beta]", "[org/alpha]", "[]", "1/2",
					modelEntry("org/alpha", "hf-dl-cache-org-alpha-abcdef0123", "abcdef0123", "Completed", ""), modelEntry("org/beta", nb, hb, "Pending", "")),
				XRReady:    fnv1.Ready_READY_FALSE,
				Conditions: conds("STATUS_CONDITION_FALSE/Downloading", allValid),
				TTL:        ttlDownloading,
			},
		},
		"CompletedUnderAnotherIntent": {
			reason: "A Completed record under another intent (what the user or the platform asked for changed) is downloaded again, even on the same volume.",
			req: testRequest{
				xr: xrYAML(twoModels) + "status:\n  pvcUID: " + testPVCUID + "\n  models:\n" +
					indent(strings.Replace(modelEntry("org/alpha", "hf-dl-cache-org-alpha-abcdef0123", "abcdef0123", "Completed", ""),
						"intentHash: ", "intentHash: 0", 1)),
				secret: secretResource("token", testToken),
			},
			want: downloadedAgain,
		},
		"RemovedModelLeavesNothing": {
			reason: "A model removed from the spec leaves no status and its Job leaves the desired state.",
			req: testRequest{
				xr: xrYAML("storagePVC: models\nhfTokenRef:\n  name: hf\nmodels:\n- name: org/alpha\n") +
					"status:\n  failed: [org/beta]\n  models:\n" + indent(modelEntry("org/beta", nb, hb, "Failed", "")),
				secret:   secretResource("token", testToken),
				observed: observe(jobComplete, jobFailed),
			},
			want: outcome{
				Jobs:       map[string]jobOutcome{ka: {na, fnv1.Ready_READY_TRUE}},
				Status:     statusOf("[]", "[org/alpha]", "[]", "1/1", modelEntry("org/alpha", na, ha, "Completed", "")),
				XRReady:    fnv1.Ready_READY_TRUE,
				Conditions: conds("STATUS_CONDITION_TRUE/Downloaded", allValid),
				TTL:        ttlSettled,
			},
		},
		"OneInvalidModel": {
			reason: "A bad model is a Warning and a condition naming field and value; it is Failed; the others go ahead.",
			req:    withToken(xrYAML(twoModels + "- name: 'org/x;rm -rf ~'\n")),
			want: outcome{
				Jobs: map[string]jobOutcome{ka: {na, fnv1.Ready_READY_FALSE}, kb: {nb, fnv1.Ready_READY_FALSE}},
				Status: statusOf("[org/alpha, org/beta]", "[]", "['org/x;rm -rf ~']", "0/3",
					modelEntry("org/alpha", na, ha, "Pending", ""), modelEntry("org/beta", nb, hb, "Pending", ""),
					"- name: 'org/x;rm -rf ~'\n  phase: Failed\n  message: 'spec.models[2].name: Invalid value: \"org/x;rm -rf ~\": must be a Hugging Face repo id (name or org/name): only letters, digits, ''.'', ''_'' and ''-'' are allowed'\n"),
				XRReady: fnv1.Ready_READY_FALSE,
				Results: []*fnv1.Result{{Severity: warning, Target: both,
					Message: `spec.models[2].name: Invalid value: "org/x;rm -rf ~": must be a Hugging Face repo id (name or org/name): only letters, digits, '.', '_' and '-' are allowed`}},
				Conditions: conds("STATUS_CONDITION_FALSE/DownloadFailed", "STATUS_CONDITION_FALSE/InvalidModels"),
				TTL:        ttlDownloading,
			},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got := outcomeOf(t, run(t, tc.req.build()))
			if diff := cmp.Diff(tc.want, got, protocmp.Transform()); diff != "" {
				t.Errorf("%s\n-want, +got:\n%s", tc.reason, diff)
			}
		})
	}
}

// withPeers adds the requirement of the namespace's ModelDownloads, as
// RunFunction does for the test XR.
func withPeers(r *fnv1.Requirements) *fnv1.Requirements {
	r.Resources[read.RequirementPeers] = read.PeerRequirement(read.Identity{APIVersion: "hfops.kamal.dev/v1alpha1", Kind: "ModelDownload", Namespace: "ml"}, "ml")
	return r
}

// hashAt is the Job hash of a model's nth attempt, found the way the
// function comes to it: each earlier attempt failed and was retried.
func hashAt(t *testing.T, r testRequest, model string, n int64) string {
	t.Helper()
	xr := r.xr
	h := statusEntry(t, run(t, r.build()), model)["hash"]
	for k := int64(1); k < n; k++ {
		r.xr = xr + fmt.Sprintf("status:\n  models:\n  - {name: %s, hash: %q, attempt: %d, phase: Failed, retry: before}\n", model, h, k)
		h = statusEntry(t, run(t, r.build()), model)["hash"]
	}
	return h
}

// statusEntry is a model's status.models[] entry in a response, its values
// as strings.
func statusEntry(t *testing.T, rsp *fnv1.RunFunctionResponse, model string) map[string]string {
	t.Helper()
	for _, m := range rsp.GetDesired().GetComposite().GetResource().GetFields()["status"].GetStructValue().GetFields()["models"].GetListValue().GetValues() {
		if read.GetString(m.GetStructValue(), "name") != model {
			continue
		}
		out := map[string]string{}
		var flatten func(prefix string, s *structpb.Struct)
		flatten = func(prefix string, s *structpb.Struct) {
			for k, v := range s.GetFields() {
				switch v.GetKind().(type) {
				case *structpb.Value_NumberValue:
					out[prefix+k] = strconv.FormatInt(int64(v.GetNumberValue()), 10)
				case *structpb.Value_StructValue:
					flatten(prefix+k+".", v.GetStructValue())
				default:
					out[prefix+k] = v.GetStringValue()
				}
			}
		}
		flatten("", m.GetStructValue())
		return out
	}
	t.Fatalf("no status entry for %s", model)
	return nil
}

// beingDeletedJob marks an observed Job as the garbage collector does while
// it waits for the Job's pods to go.
func beingDeletedJob(r *fnv1.Resource) *fnv1.Resource {
	job := proto.Clone(r.GetResource()).(*structpb.Struct)
	job.Fields["metadata"].GetStructValue().Fields["deletionTimestamp"] = structpb.NewStringValue("2026-11-26T00:00:00Z")
	return &fnv1.Resource{Resource: job}
}

func succeededPod(job, message string) *fnv1.Resource {
	return &fnv1.Resource{Resource: mustStruct(`apiVersion: v1
kind: Pod
metadata:
  name: ` + job + `-x1y2z
  namespace: ml
  labels:
    app: hf-downloader
    parent: cache
    batch.kubernetes.io/job-name: ` + job + `
  ownerReferences:
  - apiVersion: batch/v1
    kind: Job
    name: ` + job + `
    uid: ` + jobUID(job) + `
    controller: true
status:
  phase: Succeeded
  containerStatuses:
  - name: download
    state:
      terminated:
        exitCode: 0
        reason: Completed
        message: '` + strings.ReplaceAll(message, "'", "''") + `'
`)}
}

// TestTokenMissingKeepsJobs shows that a Secret deleted while Jobs run starts
// nothing new and leaves the existing Jobs exactly as they were applied.
func TestTokenMissingKeepsJobs(t *testing.T) {
	first := run(t, withToken(xrYAML(twoModels)).build())
	ka := keyOf(t, first, "org/alpha")
	applied := jobResources(first)[ka]

	// alpha's Job runs; beta's spec changes while the Secret is gone.
	changed := strings.Replace(twoModels, "revision: v2", "revision: v3", 1)
	kb := keyOf(t, first, "org/beta")
	req := testRequest{xr: xrYAML(changed), observed: map[string]*fnv1.Resource{
		ka: observedJob(applied, jobRunning),
		kb: observedJob(jobResources(first)[kb], jobRunning),
	}}.build()
	rsp := run(t, req)

	if got := len(jobResources(rsp)); got != 2 {
		t.Fatalf("want the two existing Jobs kept and no new one, got %d desired resources", got)
	}
	if diff := cmp.Diff(applied, jobResources(rsp)[ka], protocmp.Transform()); diff != "" {
		t.Errorf("the Job of the current spec must be re-applied exactly as before; -want, +got:\n%s", diff)
	}
	keptB := jobResources(rsp)[kb].GetResource()
	if diff := cmp.Diff(jobResources(first)[kb].GetResource().GetFields()["spec"], keptB.GetFields()["spec"], protocmp.Transform()); diff != "" {
		t.Errorf("the Job of the old spec must be kept as observed; -want, +got:\n%s", diff)
	}
	if got := rsp.GetMeta().GetTtl().AsDuration(); got != ttlWaiting {
		t.Errorf("TTL: want %v, got %v", ttlWaiting, got)
	}
	models := rsp.GetDesired().GetComposite().GetResource().GetFields()["status"].GetStructValue().GetFields()["models"].GetListValue().GetValues()
	if got := read.GetString(models[0].GetStructValue(), "phase"); got != read.PhaseRunning {
		t.Errorf("alpha: want Running from its kept Job, got %s", got)
	}
	if got := read.GetString(models[1].GetStructValue(), "phase"); got != read.PhasePending {
		t.Errorf("beta: want Pending until the token is back, got %s", got)
	}
}

// TestSecretProblems covers each way the token can be unusable.
func TestSecretProblems(t *testing.T) {
	cases := map[string]struct {
		secret *fnv1.Resource
		reason string
		want   string
	}{
		"KeyMissing": {secretResource("other", testToken), read.ReasonKeyNotFound, `Secret "hf" in namespace "ml" has no key "token"`},
		"EmptyToken": {secretResource("token", ""), read.ReasonTokenEmpty, `Secret "hf" in namespace "ml" key "token" is empty`},
		"NotBase64": {&fnv1.Resource{Resource: mustStruct("apiVersion: v1\nkind: Secret\nmetadata: {name: hf}\ndata: {token: '%%%'}\n")},
			read.ReasonTokenInvalid, `Secret "hf" in namespace "ml" key "token" is not valid base64`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			rsp := run(t, testRequest{xr: xrYAML(twoModels), secret: tc.secret}.build())
			if n := len(jobResources(rsp)); n != 0 {
				t.Errorf("want no Jobs, got %d", n)
			}
			want := &fnv1.Condition{Type: conditionTokenAvailable, Status: condF, Reason: tc.reason, Message: &tc.want, Target: both}
			if diff := cmp.Diff(want, rsp.GetConditions()[2], protocmp.Transform()); diff != "" {
				t.Errorf("-want, +got:\n%s", diff)
			}
		})
	}
}

// TestDeterministic: the same request twice gives byte-identical responses.
func TestDeterministic(t *testing.T) {
	spec := twoModels + "- name: org/gamma\n  include: ['*.json', '*.bin']\n" + "nodePool: gpu\nsettings:\n  timeoutMillis: 1500\n"
	marshal := func() []byte {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(run(t, withToken(xrYAML(spec)).build()))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	a, b := marshal(), marshal()
	if string(a) != string(b) {
		t.Error("two runs of the same request gave different responses")
	}
}

// TestHashedFields: changing any field that shapes a Job changes that model's
// key and Job name, and no other model's.
func TestHashedFields(t *testing.T) {
	base := "storagePVC: models\nhfTokenRef:\n  name: hf\nmodels:\n- name: org/alpha\n- name: org/beta\n"
	keys := func(spec, token, input string) map[string]string {
		r := withToken(xrYAML(spec))
		r.secret = secretResource("token", token)
		r.input = input
		rsp := run(t, r.build())
		out := map[string]string{}
		for _, m := range []string{"org/alpha", "org/beta"} {
			k := keyOf(t, rsp, m)
			out[m] = k + " " + read.GetString(jobResources(rsp)[k].GetResource(), "metadata", "name")
		}
		return out
	}
	before := keys(base, testToken, "")
	perModel := map[string]string{
		"revision":   "  revision: dev\n",
		"sha":        "  sha: abc123\n",
		"retryCount": "  retryCount: 5\n",
		"include":    "  include: ['*.json']\n",
		"exclude":    "  exclude: ['*.bin']\n",
		"repoType":   "  repoType: dataset\n",
	}
	for f, line := range perModel {
		t.Run("model."+f, func(t *testing.T) {
			after := keys(strings.Replace(base, "- name: org/alpha\n", "- name: org/alpha\n"+line, 1), testToken, "")
			if after["org/alpha"] == before["org/alpha"] {
				t.Errorf("changing %s did not change alpha's key and name", f)
			}
			if after["org/beta"] != before["org/beta"] {
				t.Errorf("changing alpha's %s changed beta's key or name", f)
			}
		})
	}
	shared := map[string][3]string{
		"storagePVC":       {strings.Replace(base, "models\n", "other\n", 1), testToken, ""},
		"nodePool":         {base + "nodePool: gpu\n", testToken, ""},
		"tokenKey":         {strings.Replace(base, "name: hf\n", "name: hf\n  key: token2\n", 1), testToken, ""},
		"tokenValue":       {base, testToken + "rotated", ""},
		"timeoutMillis":    {base + "settings: {timeoutMillis: 60000}\n", testToken, ""},
		"enableHFTransfer": {base + "settings: {enableHFTransfer: true}\n", testToken, ""},
		"keepAliveSeconds": {base + "settings: {keepAliveSeconds: 60}\n", testToken, ""},
		"cpu":              {base + "settings: {cpu: '2'}\n", testToken, ""},
		"memory":           {base + "settings: {memory: 16Gi}\n", testToken, ""},
		"forceReload":      {base + "settings: {forceReload: true}\n", testToken, ""},
		"input.image":      {base, testToken, "apiVersion: hfdownload.fn.hfops.kamal.dev/v1beta1\nkind: Input\nimage: example.com/hf:1\n"},
		"input.maxWorkers": {base, testToken, "apiVersion: hfdownload.fn.hfops.kamal.dev/v1beta1\nkind: Input\nmaxWorkers: 2\n"},
	}
	for f, c := range shared {
		t.Run(f, func(t *testing.T) {
			if c[1] != testToken {
				c[0] = base
			}
			r := withToken(xrYAML(c[0]))
			r.secret = secretResource("token", c[1])
			if f == "tokenKey" {
				r.secret = secretResource("token2", testToken)
			}
			r.input = c[2]
			rsp := run(t, r.build())
			for _, m := range []string{"org/alpha", "org/beta"} {
				k := keyOf(t, rsp, m)
				if got := k + " " + read.GetString(jobResources(rsp)[k].GetResource(), "metadata", "name"); got == before[m] {
					t.Errorf("changing %s did not change %s's key and name", f, m)
				}
			}
		})
	}
}

// TestTokenNeverLeaks: the token's bytes appear nowhere in the response, in
// any encoding a reader might try.
func TestTokenNeverLeaks(t *testing.T) {
	for name, secret := range map[string]*fnv1.Resource{
		"Found":      secretResource("token", testToken),
		"KeyMissing": secretResource("other", testToken),
	} {
		t.Run(name, func(t *testing.T) {
			r := withToken(xrYAML(twoModels + "- name: bad..name\n"))
			r.secret = secret
			b, err := proto.Marshal(run(t, r.build()))
			if err != nil {
				t.Fatal(err)
			}
			for _, leak := range []string{testToken, testToken[:12], encodeB64(testToken)} {
				if strings.Contains(string(b), leak) {
					t.Errorf("response contains %q", leak)
				}
			}
		})
	}
}

// TestNames: names are valid DNS labels of at most 63 characters whatever the
// XR and model names, and models differing only past the cut still differ.
func TestNames(t *testing.T) {
	long := strings.Repeat("a", 94)
	spec := "storagePVC: models\nmodels:\n- name: " + long + "/" + long + "-x\n- name: " + long + "/" + long + "-y\n- name: M\n- name: Org.Name/Model_V2\n"
	xr := strings.Replace(xrYAML(spec), "name: cache", "name: "+strings.Repeat("very-long-xr-name.", 12)+"end", 1)
	rsp := run(t, testRequest{xr: xr}.build())
	seen := map[string]bool{}
	for key, r := range jobResources(rsp) {
		name := read.GetString(r.GetResource(), "metadata", "name")
		if msgs := dnsLabelProblems(name); len(msgs) > 0 {
			t.Errorf("Job name %q is not a DNS-1123 label: %v", name, msgs)
		}
		if seen[name] {
			t.Errorf("two models share the Job name %q", name)
		}
		seen[name] = true
		for _, l := range []string{naming.LabelParent, naming.LabelModel, naming.LabelSpecHash} {
			if msgs := labelValueProblems(read.GetString(r.GetResource(), "metadata", "labels", l)); len(msgs) > 0 {
				t.Errorf("label %s of %s: %v", l, key, msgs)
			}
		}
	}
	if len(seen) != 4 {
		t.Errorf("want 4 distinct Jobs, got %d", len(seen))
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	t.Logf("names: %v", names)
}

// TestTTLFlags: --ttl-waiting and --ttl-downloading replace how soon Crossplane is asked to
// call again, each in its own case, and nothing else; unset, the defaults hold.
func TestTTLFlags(t *testing.T) {
	cases := map[string]struct {
		fn   *Function
		req  testRequest
		want time.Duration
	}{
		"WaitingDefault":     {&Function{}, testRequest{xr: xrYAML(twoModels)}, ttlWaiting},
		"WaitingSet":         {&Function{ttlWaiting: time.Hour}, testRequest{xr: xrYAML(twoModels)}, time.Hour},
		"WaitingNotDownload": {&Function{ttlDownloading: time.Hour}, testRequest{xr: xrYAML(twoModels)}, ttlWaiting},
		"DownloadingDefault": {&Function{}, withToken(xrYAML(twoModels)), ttlDownloading},
		"DownloadingSet":     {&Function{ttlDownloading: time.Hour}, withToken(xrYAML(twoModels)), time.Hour},
		"DownloadingNotWait": {&Function{ttlWaiting: time.Hour}, withToken(xrYAML(twoModels)), ttlDownloading},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			tc.fn.log = newTestFunction().log
			rsp, err := tc.fn.RunFunction(context.Background(), tc.req.build())
			if err != nil {
				t.Fatal(err)
			}
			if got := rsp.GetMeta().GetTtl().AsDuration(); got != tc.want {
				t.Errorf("TTL %s, want %s", got, tc.want)
			}
		})
	}
}
