package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/structpb"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation/field"
	psaapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"

	fnv1 "github.com/crossplane/function-sdk-go/proto/v1"

	"github.com/hfops/function-hf-download/internal/build"
	"github.com/hfops/function-hf-download/internal/naming"
	"github.com/hfops/function-hf-download/internal/read"
	"github.com/hfops/function-hf-download/internal/respond"
	"github.com/hfops/function-hf-download/script"
)

// asJob decodes a desired Job strictly into the real batch/v1 type: a field
// name the API does not know fails the test, as it would fail the apiserver's
// strict field validation.
func asJob(t *testing.T, s *structpb.Struct) *batchv1.Job {
	t.Helper()
	b, err := protojson.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	job := &batchv1.Job{}
	if err := d.Decode(job); err != nil {
		t.Fatalf("the desired Job is not a valid batch/v1 Job: %v", err)
	}
	return job
}

const fullInput = `apiVersion: hfdownload.fn.hfops.kamal.dev/v1beta1
kind: Input
image: registry.example.com/hf-downloader:1.33.0
imagePullPolicy: Always
imagePullSecrets: [regcred]
serviceAccountName: downloader
mountPath: /data/models
nodePoolLabelKey: example.com/pool
tolerations:
- key: gpu
  operator: Exists
  effect: NoSchedule
env:
- name: HF_ENDPOINT
  value: https://hf-mirror.example.com
resources:
  cpu: 500m
  memory: 2Gi
securityContext:
  runAsUser: 2000
  runAsGroup: 3000
  fsGroup: 4000
maxWorkers: 4
`

// TestRestrictedProfile runs Kubernetes' own Pod Security Admission checks
// (the restricted level, latest version) on every Job the function builds,
// for the default Input and a fully customised one.
func TestRestrictedProfile(t *testing.T) {
	eval, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, input := range map[string]string{"DefaultInput": "", "FullInput": fullInput} {
		t.Run(name, func(t *testing.T) {
			r := withToken(xrYAML(twoModels + "nodePool: gpu\nsettings: {enableHFTransfer: true, timeoutMillis: 100}\n"))
			r.input = input
			rsp := run(t, r.build())
			for key, res := range jobResources(rsp) {
				job := asJob(t, res.GetResource())
				pod := job.Spec.Template
				results := eval.EvaluatePod(psaapi.LevelVersion{Level: psaapi.LevelRestricted, Version: psaapi.LatestVersion()}, &pod.ObjectMeta, &pod.Spec)
				for _, r := range results {
					if !r.Allowed {
						t.Errorf("%s violates the restricted profile: %s: %s", key, r.ForbiddenReason, r.ForbiddenDetail)
					}
				}
				c := pod.Spec.Containers[0]
				if c.TerminationMessagePolicy != corev1.TerminationMessageFallbackToLogsOnError {
					t.Errorf("%s: terminationMessagePolicy %q, want FallbackToLogsOnError", key, c.TerminationMessagePolicy)
				}
				if c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem {
					t.Errorf("%s: the root filesystem must be read-only", key)
				}
				if pod.Spec.AutomountServiceAccountToken == nil || *pod.Spec.AutomountServiceAccountToken {
					t.Errorf("%s: the pod must not mount a service account token", key)
				}
			}
		})
	}
}

// TestJobFromSpecAndInput: each spec field and each Input field lands where
// the README's "The download Job" says, and user strings reach the script only as
// environment values.
func TestJobFromSpecAndInput(t *testing.T) {
	spec := `storagePVC: models
hfTokenRef: {name: hf, key: tok}
nodePool: gpu-pool
settings: {timeoutMillis: 1001, keepAliveSeconds: 60, enableHFTransfer: true, forceReload: true, cpu: '3', memory: 6Gi}
models:
- name: org/alpha
  revision: refs/pr/1
  retryCount: 0
  include: ['*.json', 'sub/*.safetensors']
  exclude: ['*.bin']
  repoType: dataset
`
	r := withToken(xrYAML(spec))
	r.secret = secretResource("tok", testToken)
	r.input = fullInput
	rsp := run(t, r.build())
	job := asJob(t, jobResources(rsp)[keyOf(t, rsp, "org/alpha")].GetResource())
	pod := job.Spec.Template.Spec
	c := pod.Containers[0]

	type shape struct {
		BackoffLimit, TTL int32
		Deadline          int64
		Image, Pull       string
		PullSecrets       []corev1.LocalObjectReference
		ServiceAccount    string
		NodeSelector      map[string]string
		Tolerations       []corev1.Toleration
		CPU, Memory       string
		Users             [3]int64
		Mounts            []corev1.VolumeMount
		PVC               string
		Command           []string
		Env               map[string]string
		TokenFrom         *corev1.SecretKeySelector
	}
	got := shape{
		BackoffLimit: *job.Spec.BackoffLimit, TTL: *job.Spec.TTLSecondsAfterFinished, Deadline: *job.Spec.ActiveDeadlineSeconds,
		Image: c.Image, Pull: string(c.ImagePullPolicy), PullSecrets: pod.ImagePullSecrets, ServiceAccount: pod.ServiceAccountName,
		NodeSelector: pod.NodeSelector, Tolerations: pod.Tolerations,
		CPU: c.Resources.Limits.Cpu().String(), Memory: c.Resources.Requests.Memory().String(),
		Users:   [3]int64{*pod.SecurityContext.RunAsUser, *pod.SecurityContext.RunAsGroup, *pod.SecurityContext.FSGroup},
		Mounts:  c.VolumeMounts,
		PVC:     pod.Volumes[0].PersistentVolumeClaim.ClaimName,
		Command: c.Command,
		Env:     map[string]string{},
	}
	for _, e := range c.Env {
		if e.ValueFrom != nil {
			got.TokenFrom = e.ValueFrom.SecretKeyRef
			continue
		}
		got.Env[e.Name] = e.Value
	}
	want := shape{
		BackoffLimit: 0, TTL: 60, Deadline: 2,
		Image: "registry.example.com/hf-downloader:1.33.0", Pull: "Always",
		PullSecrets: []corev1.LocalObjectReference{{Name: "regcred"}}, ServiceAccount: "downloader",
		NodeSelector: map[string]string{"example.com/pool": "gpu-pool"},
		Tolerations:  []corev1.Toleration{{Key: "gpu", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}},
		CPU:          "3", Memory: "6Gi",
		Users: [3]int64{2000, 3000, 4000},
		Mounts: []corev1.VolumeMount{
			{Name: "models", MountPath: "/data/models"}, {Name: "script", MountPath: build.ScriptMountPath, ReadOnly: true},
			{Name: "tmp", MountPath: "/tmp"},
		},
		PVC:     "models",
		Command: []string{"/bin/sh", build.ScriptMountPath + "/" + build.ScriptFile},
		Env: map[string]string{
			script.EnvRepoID: "org/alpha", script.EnvRepoType: "dataset", script.EnvRevision: "refs/pr/1",
			script.EnvLocalDir: "/data/models/org/alpha", script.EnvInclude: "*.json\nsub/*.safetensors", script.EnvExclude: "*.bin",
			script.EnvContentHash: got.Env[script.EnvContentHash], script.EnvMaxWorkers: "4", script.EnvForce: "true",
			"HF_XET_HIGH_PERFORMANCE": "1", "HF_ENDPOINT": "https://hf-mirror.example.com",
		},
		TokenFrom: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "hf"}, Key: "tok"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("-want, +got:\n%s", diff)
	}
	if len(got.Env[script.EnvContentHash]) != 16 {
		t.Errorf("content hash %q: want 16 hex characters", got.Env[script.EnvContentHash])
	}
}

// TestNoNodeSelectorWithoutNodePool: an empty nodePool means no selector at
// all, not a selector on an empty value.
func TestNoNodeSelectorWithoutNodePool(t *testing.T) {
	rsp := run(t, withToken(xrYAML(twoModels)).build())
	for key, r := range jobResources(rsp) {
		if job := asJob(t, r.GetResource()); job.Spec.Template.Spec.NodeSelector != nil || job.Spec.ActiveDeadlineSeconds != nil {
			t.Errorf("%s: want no nodeSelector and no deadline, got %v and %v", key, job.Spec.Template.Spec.NodeSelector, job.Spec.ActiveDeadlineSeconds)
		}
	}
}

// TestInputValidation: each Input field refuses bad values with its path.
func TestInputValidation(t *testing.T) {
	cases := map[string]struct {
		input string
		want  field.ErrorList
	}{
		"Defaults": {input: ""},
		"ImageWithSpace": {input: "image: 'python 3'", want: field.ErrorList{
			field.Invalid(read.InputPath.Child("image"), "python 3", "must be an image reference without spaces")}},
		"PullSecretName": {input: "imagePullSecrets: [Bad_Name]", want: field.ErrorList{
			field.Invalid(read.InputPath.Child("imagePullSecrets").Index(0), "Bad_Name", dnsSubdomainMessage)}},
		"ServiceAccount": {input: "serviceAccountName: -sa", want: field.ErrorList{
			field.Invalid(read.InputPath.Child("serviceAccountName"), "-sa", dnsSubdomainMessage)}},
		"MountPathRoot": {input: "mountPath: /", want: field.ErrorList{
			field.Invalid(read.InputPath.Child("mountPath"), "/", "must be a clean absolute path other than /")}},
		"MountPathTraversal": {input: "mountPath: /data/../etc", want: field.ErrorList{
			field.Invalid(read.InputPath.Child("mountPath"), "/data/../etc", "must be a clean absolute path other than /")}},
		"NodePoolLabelKey": {input: "nodePoolLabelKey: 'a b'", want: field.ErrorList{
			field.Invalid(read.InputPath.Child("nodePoolLabelKey"), "a b", "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")}},
		"Toleration": {input: "tolerations: [{key: gpu, operator: Maybe, effect: Sometimes, tolerationSeconds: 5}]", want: field.ErrorList{
			field.NotSupported(read.InputPath.Child("tolerations").Index(0).Child("operator"), "Maybe", []corev1.TolerationOperator{corev1.TolerationOpEqual, corev1.TolerationOpExists}),
			field.NotSupported(read.InputPath.Child("tolerations").Index(0).Child("effect"), "Sometimes", []corev1.TaintEffect{corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute}),
			field.Invalid(read.InputPath.Child("tolerations").Index(0).Child("tolerationSeconds"), int64(5), "only allowed with effect NoExecute")}},
		"EnvNameAndDuplicate": {input: "env: [{name: '1X', value: a}, {name: HFDL_FORCE}, {name: A}, {name: A}]", want: field.ErrorList{
			field.Invalid(read.InputPath.Child("env").Index(0).Child("name"), "1X", "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', regex used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')"),
			field.Forbidden(read.InputPath.Child("env").Index(1).Child("name"), "HFDL_FORCE is set by the function itself"),
			field.Duplicate(read.InputPath.Child("env").Index(3).Child("name"), "A")}},
		"NegativeCPU": {input: "resources: {cpu: '-1'}", want: field.ErrorList{
			field.Invalid(read.InputPath.Child("resources", "cpu"), "-1", "must be greater than zero")}},
		"RootGroup": {input: "securityContext: {runAsGroup: 0, fsGroup: 9999999999}", want: field.ErrorList{
			field.Invalid(read.InputPath.Child("securityContext", "runAsGroup"), int64(0), "must be a non-root id between 1 and 2147483647"),
			field.Invalid(read.InputPath.Child("securityContext", "fsGroup"), int64(9999999999), "must be a non-root id between 1 and 2147483647")}},
		"MaxWorkers": {input: "maxWorkers: 65", want: field.ErrorList{
			field.Invalid(read.InputPath.Child("maxWorkers"), int64(65), "must be between 1 and 64")}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			in, err := read.DecodeInput(mustStruct("apiVersion: hfdownload.fn.hfops.kamal.dev/v1beta1\nkind: Input\n" + tc.input))
			if err != nil {
				t.Fatal(err)
			}
			p, errs := read.ResolvePlatform(in, defaultImage())
			if diff := cmp.Diff(tc.want.ToAggregate(), errs.ToAggregate()); diff != "" {
				t.Errorf("-want, +got:\n%s", diff)
			}
			if len(tc.want) == 0 && (p.Image != defaultImage() || p.MountPath != read.DefaultMountPath || p.MaxWorkers != read.DefaultMaxWorkers ||
				p.RunAsUser != read.DefaultID || p.CPU != read.DefaultCPU || p.Memory != read.DefaultMemory || p.NodePoolKey != read.DefaultNodePoolKey) {
				t.Errorf("defaults not applied: %+v", p)
			}
		})
	}
}

const dnsSubdomainMessage = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"

// TestQuantitiesAreKept: a user's quantity reaches the Job as written, and
// the defaults are the Input's.
func TestQuantitiesAreKept(t *testing.T) {
	rsp := run(t, withToken(xrYAML(twoModels)).build())
	for _, r := range jobResources(rsp) {
		res := asJob(t, r.GetResource()).Spec.Template.Spec.Containers[0].Resources
		if !res.Limits.Cpu().Equal(resource.MustParse(read.DefaultCPU)) || !res.Requests.Memory().Equal(resource.MustParse(read.DefaultMemory)) {
			t.Errorf("want defaults %s/%s, got %v", read.DefaultCPU, read.DefaultMemory, res)
		}
	}
}

// TestScriptConfigMap: the script reaches the Jobs once, in an immutable
// ConfigMap named after the script and the XR, mounted read-only where the
// container runs it; no Job starts before the ConfigMap exists.
func TestScriptConfigMap(t *testing.T) {
	tr := withToken(xrYAML(twoModels))
	tr.noScript = true
	first := run(t, tr.build())
	if n := len(jobResources(first)); n != 0 {
		t.Fatalf("before the script's ConfigMap exists no Job starts, got %d", n)
	}
	for _, m := range read.Get(first.GetDesired().GetComposite().GetResource(), "status", "models").GetListValue().GetValues() {
		if msg := read.GetString(m.GetStructValue(), "message"); !strings.Contains(msg, "ConfigMap") {
			t.Errorf("%s: the message says what it waits for: %q", read.GetString(m.GetStructValue(), "name"), msg)
		}
	}
	var cm *corev1.ConfigMap
	var key string
	for k, r := range first.GetDesired().GetResources() {
		if strings.HasPrefix(k, build.ScriptKeyPrefix) {
			key, cm = k, &corev1.ConfigMap{}
			if err := read.RuntimeFromUnstructured(r.GetResource().AsMap(), cm); err != nil {
				t.Fatal(err)
			}
			if r.GetReady() != fnv1.Ready_READY_TRUE {
				t.Error("the ConfigMap is ready as soon as it exists")
			}
		}
	}
	if cm == nil {
		t.Fatal("no script ConfigMap desired")
	}
	if cm.Data[build.ScriptFile] != script.Text || cm.Immutable == nil || !*cm.Immutable || cm.Namespace != "ml" ||
		!strings.HasPrefix(cm.Name, "hf-dl-cache-script-") || key != build.ScriptKey(cm.Name) {
		t.Errorf("want the script, immutable, in ml, named hf-dl-cache-script-<hash> under key %s; got %s/%s immutable=%v under %s",
			build.ScriptKey(cm.Name), cm.Namespace, cm.Name, cm.Immutable, key)
	}

	rsp := run(t, withToken(xrYAML(twoModels)).build())
	for k, r := range jobResources(rsp) {
		job := asJob(t, r.GetResource())
		var mounted string
		for _, v := range job.Spec.Template.Spec.Volumes {
			if v.Name == "script" && v.Projected != nil && len(v.Projected.Sources) > 0 && v.Projected.Sources[0].ConfigMap != nil {
				mounted = v.Projected.Sources[0].ConfigMap.Name
			}
		}
		if mounted != cm.Name || len(job.Spec.Template.Spec.Containers[0].Command) != 2 {
			t.Errorf("%s mounts ConfigMap %q (want %q) and runs %v", k, mounted, cm.Name, job.Spec.Template.Spec.Containers[0].Command)
		}
	}
}

// TestOldScriptStaysWhileMounted: after an upgrade with another script, the
// old ConfigMap stays desired while a Job observed still mounts it (the
// running download keeps its script), and goes with its last Job.
func TestOldScriptStaysWhileMounted(t *testing.T) {
	tr := withToken(xrYAML(oneModel))
	req := tr.build()
	rsp := run(t, req)
	key := keyOf(t, rsp, "org/alpha")
	// What an older function version composed: its script under another
	// name, and a running Job that mounts it.
	const oldName, oldKey = "hf-dl-cache-script-0123456789", "script-0123456789"
	old := mustStruct("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: " + oldName + ", namespace: ml, labels: {app: hf-downloader, parent: cache}}\n")
	job := proto.Clone(jobResources(rsp)[key].GetResource()).(*structpb.Struct)
	// Older versions mounted the script's ConfigMap alone.
	for _, v := range read.Get(job, "spec", "template", "spec", "volumes").GetListValue().GetValues() {
		if read.GetString(v.GetStructValue(), "name") == "script" {
			v.GetStructValue().Fields = fields{"name": str("script"), "configMap": object(fields{"name": str(oldName)})}
		}
	}
	job.Fields["metadata"].GetStructValue().Fields["name"] = str("hf-dl-cache-org-alpha-9999999999")
	job.Fields["metadata"].GetStructValue().Fields["labels"].GetStructValue().Fields[naming.LabelSpecHash] = str("9999999999")
	req.Observed.Resources[oldKey] = &fnv1.Resource{Resource: old}
	req.Observed.Resources["job-org-alpha-9999999999"] = observedJob(&fnv1.Resource{Resource: job}, jobRunning)

	rsp = run(t, req)
	if _, ok := rsp.GetDesired().GetResources()[oldKey]; !ok {
		t.Error("the old script's ConfigMap went while a Job still mounts it")
	}
	delete(req.Observed.Resources, "job-org-alpha-9999999999")
	rsp = run(t, req)
	if _, ok := rsp.GetDesired().GetResources()[oldKey]; ok {
		t.Error("the old script's ConfigMap stays with no Job mounting it")
	}
}

// checkManifests fails unless manifest makes, for every valid model of spec, in order, what
// build.AsUnstructured(Builder.Job(...)) makes: the same map, key for key; and unless their protobuf,
// converted by one sharingConverter as a response's are, is what structpb makes of each.
func checkManifests(t *testing.T, spec *read.XRSpec, plat *read.Platform, colocate bool) {
	t.Helper()
	b := build.NewBuilder("md", "ns", spec, plat)
	b.ScriptMap, b.ProgressMap = "script", "progress"
	if colocate {
		b.Colocate()
	}
	var typed, made []*unstructured.Unstructured
	for i := range spec.Models {
		m := &spec.Models[i]
		if len(m.Errs) > 0 {
			continue
		}
		h := naming.Hashes{Content: "content" + read.Itoa(int64(i)), Config: "config" + read.Itoa(int64(i)), Spec: "spec"}
		a := naming.Attempt{Number: int64(i + 1), Hash: "hash" + read.Itoa(int64(i))}
		want := build.AsUnstructured(b.Job(m, "job-"+read.Itoa(int64(i)), h, a))
		got := b.Manifest(m, "job-"+read.Itoa(int64(i)), h, a)
		if diff := cmp.Diff(want.Object, got.Object); diff != "" {
			t.Fatalf("model %d (%s): manifest differs from the typed Job (-typed +manifest):\n%s", i, m.Name, diff)
		}
		typed, made = append(typed, want), append(made, got)
	}
	conv := respond.NewSharingConverter(b.Template)
	var volumes *structpb.Value
	for i := range made {
		wantPB, err := structpb.NewStruct(typed[i].Object)
		if err != nil {
			t.Fatal(err)
		}
		gotPB, err := conv.StructOf(made[i].Object)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(wantPB, gotPB, protocmp.Transform()); diff != "" {
			t.Fatalf("Job %d: the shared protobuf differs from structpb's (-structpb +shared):\n%s", i, diff)
		}
		// What the Jobs share is one message.
		v := read.Get(gotPB, "spec", "template", "spec", "volumes")
		if i > 0 && v != volumes {
			t.Fatalf("Job %d: its volumes are a message of their own, not the one the Jobs share", i)
		}
		volumes = v
	}
}

// TestManifestIsTheTypedJob: the Jobs manifest makes by sharing what a call's Jobs have in
// common are the Jobs build makes, converted one by one, whatever the spec and the Input set.
func TestManifestIsTheTypedJob(t *testing.T) {
	specs := map[string]string{
		"Defaults": "storagePVC: models\nmodels:\n- name: org/a\n- name: org/b\n",
		"Everything": "storagePVC: models\nnodePool: gpu\nhfTokenRef: {name: hf, key: token}\nmodels:\n" +
			"- name: org/a\n  revision: refs/pr/1\n  retryCount: 7\n  include: ['*.json', 'sub/**']\n  exclude: ['*.bin']\n  repoType: dataset\n" +
			"- name: org/b\n- name: org/c\n  repoType: space\n  revision: v2\n" +
			"settings:\n  timeoutMillis: 2592000000\n  keepAliveSeconds: 0\n  cpu: 500m\n  memory: 1Gi\n  forceReload: true\n  enableHFTransfer: true\n  stallTimeoutSeconds: 60\n",
	}
	inputs := map[string]string{
		"DefaultInput": "",
		"EveryInputField": "image: example.com/dl:1\nimagePullPolicy: Always\nimagePullSecrets: [regcred]\nserviceAccountName: dl\nmountPath: /data\n" +
			"nodePoolLabelKey: pool\ntolerations: [{key: gpu, operator: Exists, effect: NoSchedule}]\nenv: [{name: HTTPS_PROXY, value: 'http://proxy:3128'}]\n" +
			"resources: {cpu: '2', memory: 4Gi}\nsecurityContext: {runAsUser: 2000, runAsGroup: 2000, fsGroup: 2000}\nmaxWorkers: 3\nstallTimeoutSeconds: 120\n",
	}
	for sname, specYAML := range specs {
		for iname, inputYAML := range inputs {
			for _, colocate := range []bool{false, true} {
				t.Run(sname+"/"+iname+"/colocate="+map[bool]string{true: "yes", false: "no"}[colocate], func(t *testing.T) {
					spec, errs := read.ParseSpec(mustStruct("apiVersion: hfops.kamal.dev/v1alpha1\nkind: ModelDownload\nmetadata: {name: md, namespace: ns}\nspec:\n" + indent(specYAML)))
					if len(errs) > 0 {
						t.Fatal(errs)
					}
					in, err := read.DecodeInput(mustStruct(inputHeader + inputYAML))
					if err != nil {
						t.Fatal(err)
					}
					plat, errs := read.ResolvePlatform(in, defaultImage())
					if len(errs) > 0 {
						t.Fatal(errs)
					}
					checkManifests(t, &spec, plat, colocate)
				})
			}
		}
	}
}
