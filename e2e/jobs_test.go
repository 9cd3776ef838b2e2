package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// restrictedNamespaceLabels make Pod Security admission enforce the restricted profile on
// pods and warn about workloads (Jobs) whose pod template would break it.
var restrictedNamespaceLabels = map[string]string{
	"pod-security.kubernetes.io/enforce": "restricted",
	"pod-security.kubernetes.io/warn":    "restricted",
}

// downloadJob is a hand-built Job of the shape the function composes: restricted-profile
// pod, model PVC, HOME on an emptyDir, HF_TOKEN from a Secret. It stands in for the
// function's output so the control plane's own behaviour is tested on its own.
func downloadJob(name string, ttl *int32) *batchv1.Job {
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "hf-downloader"}},
		Spec: batchv1.JobSpec{
			BackoffLimit:            ptr.To[int32](0),
			TTLSecondsAfterFinished: ttl,
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "hf-downloader"}},
				Spec: corev1.PodSpec{
					RestartPolicy: corev1.RestartPolicyNever,
					SecurityContext: &corev1.PodSecurityContext{
						RunAsNonRoot:   ptr.To(true),
						RunAsUser:      ptr.To[int64](1000),
						FSGroup:        ptr.To[int64](1000),
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
					Containers: []corev1.Container{{
						Name:    "download",
						Image:   "python:3.12-slim",
						Command: []string{"/bin/sh", "-c", "echo downloading"},
						Env: []corev1.EnvVar{
							{Name: "HOME", Value: "/home/hf"},
							{Name: "HF_TOKEN", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
								LocalObjectReference: corev1.LocalObjectReference{Name: "hf-token"},
								Key:                  "token",
							}}},
						},
						Resources: corev1.ResourceRequirements{
							Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("4Gi")},
							Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("4Gi")},
						},
						SecurityContext: &corev1.SecurityContext{
							AllowPrivilegeEscalation: ptr.To(false),
							Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
						},
						VolumeMounts: []corev1.VolumeMount{
							{Name: "models", MountPath: "/models"},
							{Name: "home", MountPath: "/home/hf"},
						},
					}},
					Volumes: []corev1.Volume{
						{Name: "models", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "models"}}},
						{Name: "home", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
					},
				},
			},
		},
	}
}

// modelNamespace creates a restricted namespace holding the PVC and token Secret a
// download Job needs.
func modelNamespace(t testing.TB) string {
	t.Helper()
	ctx := context.Background()
	ns := newNamespace(t, "jobs", restrictedNamespaceLabels)
	_, err := cluster.kube.CoreV1().PersistentVolumeClaims(ns).Create(ctx, &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "models"},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("10Gi")}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create PVC: %v", err)
	}
	_, err = cluster.kube.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "hf-token"},
		StringData: map[string]string{"token": token("hf_e2e_not_a_real_token")},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create Secret: %v", err)
	}
	return ns
}

// TestRestrictedJobAcceptedWithoutWarnings proves a Job of the function's shape passes the
// restricted Pod Security profile with no warning at all, and that the same check does
// catch a Job that breaks it: the warning on create, then the pod refused by enforce.
func TestRestrictedJobAcceptedWithoutWarnings(t *testing.T) {
	useCluster(t)
	ctx := context.Background()
	ns := modelNamespace(t)
	kube, warnings := adminWithWarnings(t)

	if _, err := kube.BatchV1().Jobs(ns).Create(ctx, downloadJob("good", nil), metav1.CreateOptions{}); err != nil {
		t.Fatalf("create restricted Job: %v", err)
	}
	if w := warnings.take(); len(w) != 0 {
		t.Fatalf("restricted Job drew warnings: %q", w)
	}
	// The pod itself is checked by enforce, not warn: it must be created.
	finishJobPod(t, ns, "good", podOutcome{})

	bad := downloadJob("bad", nil)
	bad.Spec.Template.Spec.SecurityContext.RunAsNonRoot = nil
	if _, err := kube.BatchV1().Jobs(ns).Create(ctx, bad, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create Job without runAsNonRoot: %v", err)
	}
	w := warnings.take()
	if len(w) == 0 || !strings.Contains(strings.Join(w, "\n"), "runAsNonRoot") {
		t.Fatalf("Job without runAsNonRoot: want a PodSecurity warning naming runAsNonRoot, got %q", w)
	}
	// Enforce turns the Job controller's pod away; the controller records why.
	waitFor(t, time.Minute, "FailedCreate event for Job bad", func() (bool, string) {
		events, err := failedCreates(ctx, ns, "bad")
		if err != nil {
			return false, err.Error()
		}
		for _, e := range events {
			if strings.Contains(e.Message, "violates PodSecurity") {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d FailedCreate events", len(events))
	})
	if pods, err := jobPods(ctx, ns, "bad"); err != nil || len(pods) != 0 {
		t.Fatalf("Job without runAsNonRoot: want no pod, got %d (%v)", len(pods), err)
	}
}

// TestJobControllerDrivesStatus proves the real Job controller turns pod outcomes into Job
// conditions: a succeeded pod completes the Job, a failed one (backoffLimit 0) fails it.
func TestJobControllerDrivesStatus(t *testing.T) {
	useCluster(t)
	ctx := context.Background()
	ns := modelNamespace(t)

	for _, j := range []string{"succeeds", "fails"} {
		if _, err := cluster.kube.BatchV1().Jobs(ns).Create(ctx, downloadJob(j, nil), metav1.CreateOptions{}); err != nil {
			t.Fatalf("create Job %s: %v", j, err)
		}
	}
	finishJobPod(t, ns, "succeeds", podOutcome{message: `{"commit":"abc"}`})
	finishJobPod(t, ns, "fails", podOutcome{exitCode: 1, message: "401 Unauthorized"})

	done := waitJobCondition(t, ns, "succeeds", batchv1.JobComplete)
	if done.Status.Succeeded != 1 {
		t.Errorf("Job succeeds: status.succeeded = %d, want 1", done.Status.Succeeded)
	}
	failed := waitJobCondition(t, ns, "fails", batchv1.JobFailed)
	if failed.Status.Failed != 1 || jobCondition(failed, batchv1.JobComplete) != "" {
		t.Errorf("Job fails: status %+v, want one failed pod and no Complete condition", failed.Status)
	}
}

// TestTTLAfterFinishedDeletesJob proves the ttl-after-finished controller removes a finished
// Job and the garbage collector its pods: what the function must not undo.
func TestTTLAfterFinishedDeletesJob(t *testing.T) {
	useCluster(t)
	ctx := context.Background()
	ns := modelNamespace(t)

	if _, err := cluster.kube.BatchV1().Jobs(ns).Create(ctx, downloadJob("short-lived", ptr.To[int32](1)), metav1.CreateOptions{}); err != nil {
		t.Fatalf("create Job: %v", err)
	}
	pod := finishJobPod(t, ns, "short-lived", podOutcome{})
	waitGone(t, time.Minute, "finished Job with ttlSecondsAfterFinished 1", func(ctx context.Context) error {
		_, err := cluster.kube.BatchV1().Jobs(ns).Get(ctx, "short-lived", metav1.GetOptions{})
		return err
	})
	waitGone(t, time.Minute, "pod of the deleted Job", func(ctx context.Context) error {
		_, err := cluster.kube.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
		return err
	})
}
