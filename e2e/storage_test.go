package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestComposedPVCDeletion proves what README says of spec.storage in Job mode, with the
// real garbage collector: by default the PVC the function composed, and the models on it,
// outlive the ModelDownload (its Namespace is a second owner, so the collector only drops
// the XR from its owners); with deletionPolicy Delete the PVC goes with the XR.
func TestComposedPVCDeletion(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		policy    string
		survives  bool
		wantOwner []string // kinds of the PVC's owners while the XR exists, sorted
	}{
		{policy: "Orphan", survives: true, wantOwner: []string{"ModelDownload", "Namespace"}},
		{policy: "Delete", survives: false, wantOwner: []string{"ModelDownload"}},
	} {
		t.Run(tc.policy, func(t *testing.T) {
			t.Parallel()
			const pvc = "composed-models"
			md := newModelDownload(t, "pvc-"+map[bool]string{true: "orphan", false: "delete"}[tc.survives], func(spec map[string]any) {
				spec["storagePVC"] = pvc
				spec["storage"] = map[string]any{"size": "10Gi", "deletionPolicy": tc.policy}
			})
			ctx := context.Background()
			pvcs := cluster.kube.CoreV1().PersistentVolumeClaims(md.ns)

			var claim *corev1.PersistentVolumeClaim
			waitFor(t, 2*time.Minute, "the composed PVC", func() (bool, string) {
				c, err := pvcs.Get(ctx, pvc, metav1.GetOptions{})
				if err != nil {
					return false, err.Error()
				}
				claim = c
				return true, ""
			})
			if got := kinds(claim.OwnerReferences); got != fmt.Sprint(tc.wantOwner) {
				t.Errorf("owners of the composed PVC: got %v, want %v", got, tc.wantOwner)
			}
			// The Jobs mount it, so they start only once it exists.
			md.waitJobs(t, 2, "one Job per model once the PVC exists", nil)

			md.delete(t)
			md.waitJobs(t, 0, "the garbage collector to delete the Jobs", nil)

			if !tc.survives {
				waitPVCGone(t, md.ns, pvc)
				return
			}
			// The collector handled the Jobs, owned by the XR alone; the PVC, owned by the
			// Namespace too, must lose the XR as an owner and stay.
			waitFor(t, 2*time.Minute, "the PVC to keep only its Namespace as owner", func() (bool, string) {
				c, err := pvcs.Get(ctx, pvc, metav1.GetOptions{})
				if apierrors.IsNotFound(err) {
					t.Fatalf("the PVC of an Orphan ModelDownload was deleted with it")
				}
				if err != nil {
					return false, err.Error()
				}
				if c.DeletionTimestamp != nil {
					t.Fatalf("the PVC of an Orphan ModelDownload is being deleted")
				}
				return len(c.OwnerReferences) == 1 && c.OwnerReferences[0].Kind == "Namespace", fmt.Sprint(c.OwnerReferences)
			})

			// A new ModelDownload naming the same PVC adopts it: its Jobs start (and would
			// exit at their completion markers), and it owns the PVC again.
			md.update(t, nil)
			md.waitJobs(t, 2, "the new ModelDownload's Jobs on the kept PVC", nil)
			waitFor(t, time.Minute, "the new ModelDownload to own the kept PVC", func() (bool, string) {
				c, err := pvcs.Get(ctx, pvc, metav1.GetOptions{})
				if err != nil {
					return false, err.Error()
				}
				return kinds(c.OwnerReferences) == fmt.Sprint(tc.wantOwner), kinds(c.OwnerReferences)
			})
		})
	}
}

// kinds lists the kinds of owners, sorted.
func kinds(refs []metav1.OwnerReference) string {
	var out []string
	for _, o := range refs {
		out = append(out, o.Kind)
	}
	slices.Sort(out)
	return fmt.Sprint(out)
}

// TestComposedPVCDeletionObjectMode is the same promise in Object mode, with the real
// provider-kubernetes: the PVC's Object leaves Delete out of its management policies by
// default, so deleting the ModelDownload deletes the Objects and the Jobs but leaves the PVC;
// with deletionPolicy Delete the provider deletes it too.
func TestComposedPVCDeletionObjectMode(t *testing.T) {
	t.Parallel()
	useProviderKubernetes(t)
	for _, tc := range []struct {
		policy   string
		survives bool
	}{
		{policy: "Orphan", survives: true},
		{policy: "Delete", survives: false},
	} {
		t.Run(tc.policy, func(t *testing.T) {
			t.Parallel()
			const pvc = "composed-models"
			md := newModelDownload(t, "objects-pvc-"+strings.ToLower(tc.policy), func(spec map[string]any) {
				spec["crossplane"] = map[string]any{"compositionRef": map[string]any{"name": objectsComposite}}
				spec["storagePVC"] = pvc
				spec["storage"] = map[string]any{"size": "10Gi", "deletionPolicy": tc.policy}
			})
			ctx := context.Background()
			pvcs := cluster.kube.CoreV1().PersistentVolumeClaims(md.ns)
			waitFor(t, 2*time.Minute, "the PVC, created by provider-kubernetes", func() (bool, string) {
				_, err := pvcs.Get(ctx, pvc, metav1.GetOptions{})
				return err == nil, fmt.Sprint(err)
			})
			md.waitJobs(t, 2, "one Job per model once the PVC exists", nil)

			md.delete(t)
			waitFor(t, 2*time.Minute, "the Objects to go", func() (bool, string) {
				l, err := cluster.dynamic.Resource(objectResource).Namespace(md.ns).List(ctx, metav1.ListOptions{})
				return err == nil && len(l.Items) == 0, fmt.Sprintf("%v (%v)", l, err)
			})
			md.waitJobs(t, 0, "provider-kubernetes to delete the unfinished Jobs", nil)

			if !tc.survives {
				waitPVCGone(t, md.ns, pvc)
				return
			}
			c, err := pvcs.Get(ctx, pvc, metav1.GetOptions{})
			if err != nil || c.DeletionTimestamp != nil {
				t.Fatalf("the PVC of an Orphan ModelDownload: %v (deletion %v), want it kept", err, c.GetDeletionTimestamp())
			}
		})
	}
}

// waitPVCGone waits until the PVC has been deleted with its ModelDownload.
func waitPVCGone(t testing.TB, ns, name string) {
	t.Helper()
	waitGone(t, 2*time.Minute, "the PVC, deleted with its ModelDownload", func(ctx context.Context) error {
		_, err := cluster.kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, name, metav1.GetOptions{})
		return err
	})
}
