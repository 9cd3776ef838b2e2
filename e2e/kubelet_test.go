package e2e

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
)

// warningRecorder collects the warnings the apiserver returns (the Warning header), which
// is how Pod Security admission reports a workload that would violate the namespace's
// warn level.
type warningRecorder struct {
	mu       sync.Mutex
	warnings []string
}

func (w *warningRecorder) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.warnings = append(w.warnings, text)
}

func (w *warningRecorder) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.warnings
	w.warnings = nil
	return out
}

// adminWithWarnings returns an admin clientset whose warnings land in the returned recorder
// instead of the log.
func adminWithWarnings(t testing.TB) (kubernetes.Interface, *warningRecorder) {
	t.Helper()
	w := &warningRecorder{}
	cfg := rest.CopyConfig(cluster.admin)
	cfg.WarningHandler = w
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c, w
}

// podOutcome is what the fake kubelet reports for a pod's only container.
type podOutcome struct {
	exitCode int32
	// message is the container's termination message, as the kubelet would copy it from
	// terminationMessagePath.
	message string
}

// jobPods lists the pods the Job controller created for a Job, oldest first.
func jobPods(ctx context.Context, ns, job string) ([]corev1.Pod, error) {
	l, err := cluster.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: batchv1.JobNameLabel + "=" + job})
	if err != nil {
		return nil, err
	}
	sort.Slice(l.Items, func(i, j int) bool {
		return l.Items[i].CreationTimestamp.Before(&l.Items[j].CreationTimestamp)
	})
	return l.Items, nil
}

// finishJobPod waits for the Job controller to create a pod for the Job that has not
// finished yet, then writes a terminal status to it as a kubelet would: phase Succeeded
// or Failed, and the container terminated with the given exit code and message. It
// returns the pod's name.
func finishJobPod(t testing.TB, ns, job string, out podOutcome) string {
	t.Helper()
	ctx := context.Background()
	var pod corev1.Pod
	waitFor(t, time.Minute, "a running pod of Job "+ns+"/"+job, func() (bool, string) {
		pods, err := jobPods(ctx, ns, job)
		if err != nil {
			return false, err.Error()
		}
		for _, p := range pods {
			if p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed && p.DeletionTimestamp == nil {
				pod = p
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d pods, none unfinished", len(pods))
	})

	now := metav1.Now()
	started := metav1.NewTime(now.Add(-time.Second))
	phase, reason := corev1.PodSucceeded, "Completed"
	if out.exitCode != 0 {
		phase, reason = corev1.PodFailed, "Error"
	}
	// The scheduler writes the pod's PodScheduled condition (it tolerates no real node's
	// taint) meanwhile: a conflict is retried on the pod as it is now.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		current, err := cluster.kube.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		current.Status.Phase = phase
		current.Status.StartTime = &started
		current.Status.ContainerStatuses = nil
		for _, c := range current.Spec.Containers {
			current.Status.ContainerStatuses = append(current.Status.ContainerStatuses, corev1.ContainerStatus{
				Name:  c.Name,
				Image: c.Image,
				State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
					ExitCode:   out.exitCode,
					Reason:     reason,
					Message:    out.message,
					StartedAt:  started,
					FinishedAt: now,
				}},
			})
		}
		_, err = cluster.kube.CoreV1().Pods(ns).UpdateStatus(ctx, current, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("write status of pod %s/%s: %v", ns, pod.Name, err)
	}
	return pod.Name
}

// jobCondition returns the status of the Job's condition of the given type, or "" if the
// Job has no such condition.
func jobCondition(j *batchv1.Job, typ batchv1.JobConditionType) corev1.ConditionStatus {
	for _, c := range j.Status.Conditions {
		if c.Type == typ {
			return c.Status
		}
	}
	return ""
}

// waitJobCondition waits until the Job has the condition typ with status True.
func waitJobCondition(t testing.TB, ns, name string, typ batchv1.JobConditionType) *batchv1.Job {
	t.Helper()
	var job *batchv1.Job
	waitFor(t, time.Minute, fmt.Sprintf("Job %s/%s %s=True", ns, name, typ), func() (bool, string) {
		j, err := cluster.kube.BatchV1().Jobs(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		job = j
		return jobCondition(j, typ) == corev1.ConditionTrue, fmt.Sprintf("conditions %+v", j.Status.Conditions)
	})
	return job
}

// waitGone waits until get reports NotFound.
func waitGone(t testing.TB, timeout time.Duration, what string, get func(context.Context) error) {
	t.Helper()
	waitFor(t, timeout, what+" to be deleted", func() (bool, string) {
		err := get(context.Background())
		return apierrors.IsNotFound(err), fmt.Sprintf("get: %v", err)
	})
}

// failedCreates lists the events in which the Job controller says why it could not create
// a pod for a Job (Pod Security enforce, for one).
func failedCreates(ctx context.Context, ns, job string) ([]corev1.Event, error) {
	l, err := cluster.kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{
		FieldSelector: fields.Set{"involvedObject.name": job, "reason": "FailedCreate"}.String(),
	})
	if err != nil {
		return nil, err
	}
	return l.Items, nil
}
