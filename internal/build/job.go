package build

import (
	"cmp"
	"crypto/sha256"
	"encoding/json"
	"maps"
	"path"
	"strings"
	"sync"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"

	"github.com/hfops/function-hf-download/apis/v1alpha1"
	"github.com/hfops/function-hf-download/input/v1beta1"
	"github.com/hfops/function-hf-download/internal/naming"
	"github.com/hfops/function-hf-download/internal/read"
	"github.com/hfops/function-hf-download/script"
)

const (
	// minKeepAliveSeconds: a finished Job must stay long enough for the
	// function to see how it ended (it is called at least every 20 s while
	// a download runs), or its outcome would be lost and the model tried
	// again, forever with a TTL of zero.
	minKeepAliveSeconds = 30
)

// Builder holds what all Jobs of one XR share, built once per request.
type Builder struct {
	// nameBase starts every Job name: the XR's name, or its claim's.
	NameBase  string
	namespace string
	Spec      *read.XRSpec
	Platform  *read.Platform

	ParentLabel string
	pvcLabel    string
	CPU, Memory string
	resources   corev1.ResourceRequirements
	sharedEnv   []corev1.EnvVar
	pullSecrets []corev1.LocalObjectReference
	selector    map[string]string
	affinity    *corev1.Affinity
	// ScriptMap names the ConfigMap that holds the script (script.go);
	// ProgressMap the ModelDownload's progress ConfigMap, and its pods'
	// ServiceAccount unless the Input names one (progress.go).
	ScriptMap, ProgressMap string
	// template is what manifest shares between the Jobs of a call, made at
	// its first use, once the builder is complete.
	Template map[string]any
}

// podServiceAccount is the account the download pods run as.
func (b *Builder) podServiceAccount() string {
	return read.OrDefault(b.Platform.ServiceAccount, b.ProgressMap)
}

// digests are what every model's hashes cover besides the model and the
// token: the XR-wide fields (xr, naming.HashXR), the Input (the platform's
// digests), and the function's own script and Job template.
func Digests(xr []byte, plat *read.Platform) naming.Digests {
	return naming.Digests{
		XR: xr, Platform: plat.Digest, PlatformIntent: plat.IntentDigest,
		Script: scriptDigest, Template: templateDigest(),
	}
}

// templateDigest stands for the code that builds a Job: the digest of a Job
// built from a sample with every option on. It is part of every config hash,
// so a function version that builds Jobs differently makes new Jobs (a Job's
// spec cannot change in place), whose downloads exit at their markers.
var templateDigest = sync.OnceValue(func() []byte {
	toleration := &corev1.Toleration{Key: "k", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}
	spec := &read.XRSpec{ModelDownloadSpec: v1alpha1.ModelDownloadSpec{StoragePVC: "pvc", NodePool: "pool",
		HFTokenRef: &v1alpha1.TokenRef{Name: "s", Key: "k"},
		Settings:   v1alpha1.Settings{TimeoutMillis: 1, EnableHFTransfer: true, KeepAliveSeconds: 1, ForceReload: true}}}
	p := &read.Platform{Image: "i", PullPolicy: "Always", PullSecrets: []string{"p"}, ServiceAccount: "sa", MountPath: "/m",
		NodePoolKey: "n", Tolerations: []corev1.Toleration{*toleration}, Env: []v1beta1.EnvVar{{Name: "E", Value: "v"}},
		CPU: "1", Memory: "1Gi", RunAsUser: 1, RunAsGroup: 1, FSGroup: 1, MaxWorkers: 1}
	b := NewBuilder("xr", "ns", spec, p)
	b.ScriptMap, b.ProgressMap = "script", "progress"
	b.Colocate()
	m := &read.ModelSpec{Model: v1alpha1.Model{Name: "o/m", Revision: "r", RepoType: "dataset", RetryCount: 1, Include: []string{"i"}, Exclude: []string{"e"}}}
	j, err := json.Marshal(b.Job(m, "job", naming.Hashes{Content: "c", Config: "c", Spec: "s"}, naming.Attempt{Number: 1, Hash: "h"}))
	if err != nil {
		panic(err)
	}
	d := sha256.Sum256(j)
	return d[:]
})

func NewBuilder(nameBase, namespace string, s *read.XRSpec, p *read.Platform) *Builder {
	b := &Builder{NameBase: nameBase, namespace: namespace, Spec: s, Platform: p,
		ParentLabel: naming.LabelValue(nameBase), pvcLabel: pvcLabelValue(s.StoragePVC)}

	b.CPU, b.Memory = read.OrDefault(s.Settings.CPU, p.CPU), read.OrDefault(s.Settings.Memory, p.Memory)
	// Both parse: validation checked them.
	compute := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse(b.CPU),
		corev1.ResourceMemory: resource.MustParse(b.Memory),
	}
	b.resources = corev1.ResourceRequirements{Requests: compute, Limits: compute}

	// What is the same for every Job of every ModelDownload (HOME, hf's
	// update check and telemetry) the script sets; only what varies is here,
	// and what equals the script's defaults is left out.
	if p.MaxWorkers != script.DefaultMaxWorkers {
		b.sharedEnv = append(b.sharedEnv, corev1.EnvVar{Name: script.EnvMaxWorkers, Value: read.Itoa(p.MaxWorkers)})
	}
	if stall := cmp.Or(s.Settings.StallTimeoutSeconds, p.StallTimeoutSeconds); stall != script.DefaultStallTimeoutSeconds {
		b.sharedEnv = append(b.sharedEnv, corev1.EnvVar{Name: script.EnvStallTimeout, Value: read.Itoa(stall)})
	}
	if s.Settings.ForceReload {
		b.sharedEnv = append(b.sharedEnv, corev1.EnvVar{Name: script.EnvForce, Value: "true"})
	}
	if s.Settings.EnableHFTransfer {
		// hf_transfer is gone upstream: huggingface_hub reads its variable only
		// to warn. hf_xet's high performance mode is what the setting means now.
		b.sharedEnv = append(b.sharedEnv, corev1.EnvVar{Name: "HF_XET_HIGH_PERFORMANCE", Value: "1"})
	}
	if t := s.HFTokenRef; t != nil {
		b.sharedEnv = append(b.sharedEnv, corev1.EnvVar{Name: script.EnvToken, ValueFrom: &corev1.EnvVarSource{
			SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: t.Name}, Key: t.Key},
		}})
	}
	for _, e := range p.Env {
		b.sharedEnv = append(b.sharedEnv, corev1.EnvVar{Name: e.Name, Value: e.Value})
	}
	for _, n := range p.PullSecrets {
		b.pullSecrets = append(b.pullSecrets, corev1.LocalObjectReference{Name: n})
	}
	if s.NodePool != "" {
		b.selector = map[string]string{p.NodePoolKey: s.NodePool}
	}
	return b
}

// colocate places every download pod of the PVC on the node where the ones
// running are: a ReadWriteOnce volume is attached to one node at a time. The
// first pod, matching its own term, may go anywhere.
func (b *Builder) Colocate() {
	b.affinity = &corev1.Affinity{PodAffinity: &corev1.PodAffinity{
		RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
			LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{LabelPVC: b.pvcLabel}},
			TopologyKey:   corev1.LabelHostname,
		}},
	}}
}

// localDir is where a model lands on the PVC.
func (b *Builder) localDir(m *read.ModelSpec) string {
	return path.Join(b.Platform.MountPath, m.Name)
}

func (b *Builder) labels(m *read.ModelSpec, jobHash string) map[string]string {
	return map[string]string{
		naming.LabelApp:      naming.AppName,
		naming.LabelParent:   b.ParentLabel,
		naming.LabelModel:    naming.LabelValue(m.Name),
		naming.LabelSpecHash: jobHash,
	}
}

// modelEnv is the part of a Job's environment that is the model's own, each
// entry a name and a value; sharedEnv, the same for every Job of the call,
// follows it.
func (b *Builder) modelEnv(m *read.ModelSpec, h naming.Hashes) []corev1.EnvVar {
	env := make([]corev1.EnvVar, 0, 8+len(b.sharedEnv))
	env = append(env,
		corev1.EnvVar{Name: script.EnvRepoID, Value: m.Name},
		corev1.EnvVar{Name: script.EnvContentHash, Value: h.Content})
	repoType, revision, dir := m.RepoType, m.Revision, b.localDir(m)
	if repoType == script.DefaultRepoType {
		repoType = ""
	}
	if revision == script.DefaultRevision {
		revision = ""
	}
	if dir == script.DefaultMountPath+"/"+m.Name {
		dir = ""
	}
	// Unset is the script's default: left out, they cost nothing per Job.
	for _, e := range []corev1.EnvVar{
		{Name: script.EnvRevision, Value: revision},
		{Name: script.EnvLocalDir, Value: dir},
		{Name: script.EnvRepoType, Value: repoType},
		{Name: script.EnvInclude, Value: strings.Join(m.Include, "\n")},
		{Name: script.EnvExclude, Value: strings.Join(m.Exclude, "\n")},
	} {
		if e.Value != "" {
			env = append(env, e)
		}
	}
	return env
}

// build returns the Job of one attempt at a model.
func (b *Builder) Job(m *read.ModelSpec, name string, h naming.Hashes, a naming.Attempt) *batchv1.Job {
	st := &b.Spec.Settings
	env := append(b.modelEnv(m, h), b.sharedEnv...)

	job := &batchv1.Job{
		TypeMeta: metav1.TypeMeta{APIVersion: "batch/v1", Kind: "Job"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      name,
			Namespace: b.namespace,
			Labels:    b.labels(m, a.Hash),
			Annotations: map[string]string{
				naming.AnnotationModel:      m.Name,
				naming.AnnotationConfigHash: h.Config,
				naming.AnnotationAttempt:    read.Itoa(a.Number),
			},
		},
		Spec: batchv1.JobSpec{
			// Both are within int32: validation bounds them (0..100, 0..2^31-1).
			BackoffLimit:            ptr.To(int32(m.RetryCount)),                                  //nolint:gosec // bounded by validation
			TTLSecondsAfterFinished: ptr.To(int32(max(st.KeepAliveSeconds, minKeepAliveSeconds))), //nolint:gosec // bounded by validation
			Template: corev1.PodTemplateSpec{
				// The pods' labels: what the function selects them by, and
				// what co-locates them (the Job controller adds the Job's name).
				ObjectMeta: b.podMeta(),
				Spec: b.podSpec(corev1.Container{
					Name: naming.ContainerName,
					// The script comes from the ConfigMap, read-only;
					// user strings reach it only through the environment.
					Command:   []string{"/bin/sh", path.Join(ScriptMountPath, ScriptFile)},
					Env:       env,
					Resources: b.resources,
					VolumeMounts: []corev1.VolumeMount{
						{Name: "models", MountPath: b.Platform.MountPath},
						{Name: "script", MountPath: ScriptMountPath, ReadOnly: true},
						{Name: "tmp", MountPath: "/tmp"},
					},
				}, corev1.Volume{Name: "script", VolumeSource: b.scriptVolumeSource()}),
			},
		},
	}
	if st.TimeoutMillis > 0 {
		job.Spec.ActiveDeadlineSeconds = ptr.To((st.TimeoutMillis + 999) / 1000)
	}
	return job
}

func (b *Builder) podMeta() metav1.ObjectMeta {
	return metav1.ObjectMeta{Labels: map[string]string{naming.LabelApp: naming.AppName, naming.LabelParent: b.ParentLabel, LabelPVC: b.pvcLabel}}
}

// podSpec is the hardened pod every Job of the function runs: c, in the
// platform's image, with the PVC mounted at the mount path, an emptyDir
// /tmp and the volumes extra; the restricted Pod Security Standard, field
// by field.
func (b *Builder) podSpec(c corev1.Container, extra ...corev1.Volume) corev1.PodSpec {
	c.Image = b.Platform.Image
	c.ImagePullPolicy = corev1.PullPolicy(b.Platform.PullPolicy)
	c.TerminationMessagePolicy = corev1.TerminationMessageFallbackToLogsOnError
	c.SecurityContext = &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr.To(false),
		ReadOnlyRootFilesystem:   ptr.To(true),
		RunAsNonRoot:             ptr.To(true),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}
	volumes := append([]corev1.Volume{
		{Name: "models", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: b.Spec.StoragePVC}}},
	}, extra...)
	// /tmp holds HOME too (the script sets it).
	volumes = append(volumes, corev1.Volume{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
	return corev1.PodSpec{
		RestartPolicy:                corev1.RestartPolicyNever,
		AutomountServiceAccountToken: ptr.To(false),
		ServiceAccountName:           b.podServiceAccount(),
		NodeSelector:                 b.selector,
		Tolerations:                  b.Platform.Tolerations,
		ImagePullSecrets:             b.pullSecrets,
		Affinity:                     b.affinity,
		SecurityContext: &corev1.PodSecurityContext{
			RunAsNonRoot:   ptr.To(true),
			RunAsUser:      ptr.To(b.Platform.RunAsUser),
			RunAsGroup:     ptr.To(b.Platform.RunAsGroup),
			FSGroup:        ptr.To(b.Platform.FSGroup),
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		Containers: []corev1.Container{c},
		Volumes:    volumes,
	}
}

// Manifest is the Job as AsUnstructured makes it, made for many models
// at a fraction of the cost: what every Job of the call shares is converted
// once, from a Job built for a stand-in model, and shared by reference
// between the manifests; only the maps on the way to what is the model's own
// (its metadata, backoffLimit, its environment) are made per model. Nothing
// downstream changes a manifest in place (wrap and Crossplane's conversion
// read them), so the sharing is safe. TestManifestIsTheTypedJob, and the
// spec fuzzer, hold it to AsUnstructured(Job(...)); BenchmarkRunFunction
// shows what it buys.
func (b *Builder) Manifest(m *read.ModelSpec, name string, h naming.Hashes, a naming.Attempt) *unstructured.Unstructured {
	if b.Template == nil {
		b.Template = AsUnstructured(b.Job(&read.ModelSpec{Model: v1alpha1.Model{Name: "stand-in"}}, "stand-in", naming.Hashes{Content: "stand-in"}, naming.Attempt{})).Object
	}
	t := b.Template
	spec := maps.Clone(t["spec"].(map[string]any))
	spec["backoffLimit"] = m.RetryCount
	tmpl := maps.Clone(spec["template"].(map[string]any))
	spec["template"] = tmpl
	pod := maps.Clone(tmpl["spec"].(map[string]any))
	tmpl["spec"] = pod
	container := maps.Clone(pod["containers"].([]any)[0].(map[string]any))
	pod["containers"] = []any{container}

	shared := container["env"].([]any)
	shared = shared[len(shared)-len(b.sharedEnv):]
	own := b.modelEnv(m, h)
	env := make([]any, 0, len(own)+len(shared))
	for _, e := range own {
		env = append(env, map[string]any{"name": e.Name, "value": e.Value})
	}
	container["env"] = append(env, shared...)

	job := maps.Clone(t)
	job["metadata"] = map[string]any{
		"name":        name,
		"namespace":   b.namespace,
		"labels":      stringsToAny(b.labels(m, a.Hash)),
		"annotations": map[string]any{naming.AnnotationModel: m.Name, naming.AnnotationConfigHash: h.Config, naming.AnnotationAttempt: read.Itoa(a.Number)},
	}
	job["spec"] = spec
	return &unstructured.Unstructured{Object: job}
}
