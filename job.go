package main

import (
	"crypto/sha256"
	"path"
	"strings"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/hfops/function-hf-download/script"
)

// Labels and annotations on every Job and its pods.
const (
	labelApp      = "app"
	labelParent   = "parent"
	labelModel    = "model"
	labelSpecHash = "hfops.kamal.dev/spec-hash"
	appName       = "hf-downloader"

	// annotationModel keeps the exact repo id, which the model label can
	// only keep in a sanitized form.
	annotationModel = "hfops.kamal.dev/model"
	// annotationConfigHash lets a later call recognise a Job it can keep
	// while the token Secret is missing (see token.go).
	annotationConfigHash = "hfops.kamal.dev/config-hash"
	// annotationAttempt numbers the attempts at a model (see plan.go).
	annotationAttempt = "hfops.kamal.dev/attempt"

	// minKeepAliveSeconds: a finished Job must stay long enough for the
	// function to see how it ended (it is called at least every 20 s while
	// a download runs), or its outcome would be lost and the model tried
	// again, forever with a TTL of zero.
	minKeepAliveSeconds = 30

	containerName = "download"
	homeDir       = "/home/hf"
)

// scriptDigest is part of every config hash: a new script is a new Job.
var scriptDigest = func() []byte { d := sha256.Sum256([]byte(script.Text)); return d[:] }()

// commandValue is the container command, the same for every Job: the script
// text is constant and user strings reach it only through the environment.
var commandValue = strList([]string{"/bin/sh", "-c", script.Text, "hf-download"})

// jobBuilder holds what all Jobs of one XR share, built once per request.
type jobBuilder struct {
	// nameBase starts every Job name: the XR's name, or its claim's.
	nameBase  string
	namespace string
	spec      *xrSpec
	platform  *platform

	parentLabel string
	cpu         string
	memory      string
	podSecurity *structpb.Value
	ctrSecurity *structpb.Value
	resources   *structpb.Value
	volumes     *structpb.Value
	mounts      *structpb.Value
	sharedEnv   []*structpb.Value
	pullSecrets *structpb.Value
	selector    *structpb.Value
	pvcLabel    string
	affinity    *structpb.Value
}

func newJobBuilder(nameBase, namespace string, s *xrSpec, p *platform) *jobBuilder {
	b := &jobBuilder{nameBase: nameBase, namespace: namespace, spec: s, platform: p,
		parentLabel: labelValue(nameBase), pvcLabel: pvcLabelValue(s.StoragePVC)}

	b.cpu, b.memory = orDefault(s.Settings.CPU, p.CPU), orDefault(s.Settings.Memory, p.Memory)
	compute := object(fields{"cpu": str(b.cpu), "memory": str(b.memory)})
	b.resources = object(fields{"requests": compute, "limits": compute})

	// The restricted Pod Security Standard, field by field.
	b.podSecurity = object(fields{
		"runAsNonRoot":   boolean(true),
		"runAsUser":      num(p.RunAsUser),
		"runAsGroup":     num(p.RunAsGroup),
		"fsGroup":        num(p.FSGroup),
		"seccompProfile": object(fields{"type": str("RuntimeDefault")}),
	})
	b.ctrSecurity = object(fields{
		"allowPrivilegeEscalation": boolean(false),
		"readOnlyRootFilesystem":   boolean(true),
		"runAsNonRoot":             boolean(true),
		"capabilities":             object(fields{"drop": strList([]string{"ALL"})}),
	})

	b.volumes = list(
		object(fields{"name": str("models"), "persistentVolumeClaim": object(fields{"claimName": str(s.StoragePVC)})}),
		object(fields{"name": str("tmp"), "emptyDir": object(fields{})}),
		object(fields{"name": str("home"), "emptyDir": object(fields{})}),
	)
	b.mounts = list(
		object(fields{"name": str("models"), "mountPath": str(p.MountPath)}),
		object(fields{"name": str("tmp"), "mountPath": str("/tmp")}),
		object(fields{"name": str("home"), "mountPath": str(homeDir)}),
	)

	b.sharedEnv = append(b.sharedEnv,
		envVar(script.EnvMaxWorkers, itoa(p.MaxWorkers)),
		envVar(script.EnvForce, boolString(s.Settings.ForceReload)),
		envVar("HOME", homeDir),
		// A download pod talks to the Hub alone: no PyPI version check, no
		// telemetry, on every start of every Job.
		envVar("HF_HUB_DISABLE_UPDATE_CHECK", "1"),
		envVar("HF_HUB_DISABLE_TELEMETRY", "1"),
	)
	if s.Settings.EnableHFTransfer {
		// hf_transfer is deprecated upstream in favour of hf_xet's high
		// performance mode; old images still read the first variable.
		b.sharedEnv = append(b.sharedEnv,
			envVar("HF_HUB_ENABLE_HF_TRANSFER", "1"),
			envVar("HF_XET_HIGH_PERFORMANCE", "1"))
	}
	if t := s.Token; t != nil {
		b.sharedEnv = append(b.sharedEnv, object(fields{
			"name": str(script.EnvToken),
			"valueFrom": object(fields{"secretKeyRef": object(fields{
				"name": str(t.Name),
				"key":  str(t.Key),
			})}),
		}))
	}
	for _, e := range p.Env {
		b.sharedEnv = append(b.sharedEnv, envVar(e.Name, e.Value))
	}

	if len(p.PullSecrets) > 0 {
		refs := make([]*structpb.Value, len(p.PullSecrets))
		for i, n := range p.PullSecrets {
			refs[i] = object(fields{"name": str(n)})
		}
		b.pullSecrets = list(refs...)
	}
	if s.NodePool != "" {
		b.selector = strMap(map[string]string{p.NodePoolKey: s.NodePool})
	}
	return b
}

// colocate places every download pod of the PVC on the node where the ones
// running are: a ReadWriteOnce volume is attached to one node at a time. The
// first pod, matching its own term, may go anywhere.
func (b *jobBuilder) colocate() {
	b.affinity = object(fields{"podAffinity": object(fields{
		"requiredDuringSchedulingIgnoredDuringExecution": list(object(fields{
			"labelSelector": object(fields{"matchLabels": strMap(map[string]string{labelPVC: b.pvcLabel})}),
			"topologyKey":   str("kubernetes.io/hostname"),
		})),
	})})
}

// localDir is where a model lands on the PVC.
func (b *jobBuilder) localDir(m *modelSpec) string { return path.Join(b.platform.MountPath, m.Name) }

func (b *jobBuilder) labels(m *modelSpec, jobHash string) *structpb.Value {
	return strMap(map[string]string{
		labelApp:      appName,
		labelParent:   b.parentLabel,
		labelModel:    labelValue(m.Name),
		labelSpecHash: jobHash,
		labelPVC:      b.pvcLabel,
	})
}

// build returns the Job of one attempt at a model.
func (b *jobBuilder) build(m *modelSpec, name string, h modelHashes, a attempt) *structpb.Struct {
	st := &b.spec.Settings
	labels := b.labels(m, a.hash)

	env := make([]*structpb.Value, 0, 6+len(b.sharedEnv))
	env = append(env,
		envVar(script.EnvRepoID, m.Name),
		envVar(script.EnvRepoType, m.RepoType),
		envVar(script.EnvRevision, m.Revision),
		envVar(script.EnvLocalDir, b.localDir(m)),
		envVar(script.EnvInclude, strings.Join(m.Include, "\n")),
		envVar(script.EnvExclude, strings.Join(m.Exclude, "\n")),
		envVar(script.EnvContentHash, h.content),
	)
	env = append(env, b.sharedEnv...)

	container := fields{
		"name":                     str(containerName),
		"image":                    str(b.platform.Image),
		"imagePullPolicy":          str(b.platform.PullPolicy),
		"command":                  commandValue,
		"env":                      list(env...),
		"resources":                b.resources,
		"securityContext":          b.ctrSecurity,
		"terminationMessagePolicy": str("FallbackToLogsOnError"),
		"volumeMounts":             b.mounts,
	}

	pod := fields{
		"restartPolicy":                str("Never"),
		"automountServiceAccountToken": boolean(false),
		"securityContext":              b.podSecurity,
		"containers":                   list(object(container)),
		"volumes":                      b.volumes,
	}
	if b.platform.ServiceAccount != "" {
		pod["serviceAccountName"] = str(b.platform.ServiceAccount)
	}
	if b.selector != nil {
		pod["nodeSelector"] = b.selector
	}
	if b.platform.tolerationsValue != nil {
		pod["tolerations"] = b.platform.tolerationsValue
	}
	if b.pullSecrets != nil {
		pod["imagePullSecrets"] = b.pullSecrets
	}
	if b.affinity != nil {
		pod["affinity"] = b.affinity
	}

	spec := fields{
		"backoffLimit":            num(m.RetryCount),
		"ttlSecondsAfterFinished": num(max(st.KeepAliveSeconds, minKeepAliveSeconds)),
		"template": object(fields{
			"metadata": object(fields{"labels": labels}),
			"spec":     object(pod),
		}),
	}
	if st.TimeoutMillis > 0 {
		spec["activeDeadlineSeconds"] = num((st.TimeoutMillis + 999) / 1000)
	}

	metadata := fields{
		"name":   str(name),
		"labels": labels,
		"annotations": strMap(map[string]string{
			annotationModel:      m.Name,
			annotationConfigHash: h.config,
			annotationAttempt:    itoa(a.number),
		}),
	}
	if b.namespace != "" {
		metadata["namespace"] = str(b.namespace)
	}

	return &structpb.Struct{Fields: fields{
		"apiVersion": str("batch/v1"),
		"kind":       str("Job"),
		"metadata":   object(metadata),
		"spec":       object(spec),
	}}
}

func envVar(name, value string) *structpb.Value {
	return object(fields{"name": str(name), "value": str(value)})
}

func boolString(b bool) string {
	if b {
		return "true"
	}
	return "false"
}
