package build

import (
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/hfops/function-hf-download/internal/naming"
	"github.com/hfops/function-hf-download/internal/read"
	"github.com/hfops/function-hf-download/script"
)

// CheckJob is the Job of check n of model's revision (settings.resyncInterval):
// the download Job of its attempt a, named by hash, with the script in its
// check mode (script.EnvResync), marked as a check.
func (b *Builder) CheckJob(m *read.ModelSpec, name string, h naming.Hashes, a naming.Attempt, n int64) *batchv1.Job {
	job := b.Job(m, name, h, a)
	job.Annotations[naming.AnnotationResync] = read.Itoa(n)
	c := &job.Spec.Template.Spec.Containers[0]
	c.Env = append(c.Env, corev1.EnvVar{Name: script.EnvResync, Value: "true"})
	return job
}
