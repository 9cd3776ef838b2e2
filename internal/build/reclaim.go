package build

import (
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/hfops/function-hf-download/internal/naming"
	"github.com/hfops/function-hf-download/internal/read"
	"github.com/hfops/function-hf-download/script"
)

// reclaimResources: removing a directory takes a fraction of a core and a
// few MiB, whatever a download of it took.
var reclaimResources = func() corev1.ResourceRequirements {
	l := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")}
	return corev1.ResourceRequirements{Requests: l, Limits: l}
}()

// reclaimBackoffLimit: a pod lost to its node is run again; the program
// itself fails only on what a rerun does not change, or says to rerun.
const reclaimBackoffLimit = 2

// ReclaimJob is the Job that removes model's directory from the PVC
// (script.Reclaim), in the pod every Job of the function runs (podSpec). It
// has no deadline: it waits for a download that holds the directory's lock.
func (b *Builder) ReclaimJob(model, name, hash string, attempt int64) *batchv1.Job {
	return &batchv1.Job{
		TypeMeta: metav1.TypeMeta{APIVersion: "batch/v1", Kind: "Job"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      name,
			Namespace: b.namespace,
			Labels: map[string]string{
				naming.LabelApp:      naming.AppName,
				naming.LabelParent:   b.ParentLabel,
				naming.LabelModel:    naming.LabelValue(model),
				naming.LabelSpecHash: hash,
			},
			Annotations: map[string]string{naming.AnnotationReclaim: model, naming.AnnotationAttempt: read.Itoa(attempt)},
		},
		Spec: batchv1.JobSpec{
			BackoffLimit:            ptr.To(int32(reclaimBackoffLimit)),
			TTLSecondsAfterFinished: ptr.To(int32(max(b.Spec.Settings.KeepAliveSeconds, minKeepAliveSeconds))), //nolint:gosec // bounded by validation
			Template: corev1.PodTemplateSpec{
				ObjectMeta: b.podMeta(),
				Spec: b.podSpec(corev1.Container{
					Name: naming.ReclaimContainerName,
					// The program is the function's own text; the model
					// reaches it only through the environment.
					Command: []string{"python3", "-I", "-c", script.Reclaim},
					Env: []corev1.EnvVar{
						{Name: script.EnvReclaimRoot, Value: b.Platform.MountPath},
						{Name: script.EnvReclaimModel, Value: model},
					},
					Resources: reclaimResources,
					VolumeMounts: []corev1.VolumeMount{
						{Name: "models", MountPath: b.Platform.MountPath},
						{Name: "tmp", MountPath: "/tmp"},
					},
				}),
			},
		},
	}
}
