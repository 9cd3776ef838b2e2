package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/hfops/function-hf-download/internal/naming"
)

// Optional PVC provisioning: with spec.storage the function composes the PVC
// named by storagePVC, and starts the Jobs that mount it once it exists.
//
// Data is never lost by surprise. Deleting the XR deletes what it composed,
// so with deletionPolicy Orphan (the default) the PVC is kept:
//   - in Object mode the Object says so (deletionPolicy Orphan, or no Delete
//     in the management policies of a namespaced Object);
//   - in Job mode Crossplane v2 has no per-resource deletion policy: it owns
//     the PVC through a controller reference, and Kubernetes' garbage
//     collector deletes a dependent only when all of its owners are gone. So
//     the PVC also names its Namespace as an owner: deleting the XR leaves the
//     PVC and its models in place (a new XR adopts it again); deleting the
//     namespace still removes it.

const (
	pvcKey                = "pvc"
	requirementNamespace  = "namespace"
	requirementPVC        = "storage-pvc"
	annotationDataWarning = "hfops.kamal.dev/retained"
	labelPVC              = "hfops.kamal.dev/pvc"

	conditionStorageReady = "StorageReady"
	reasonPVCFound        = "PVCFound"
	reasonPVCNotFound     = "PVCNotFound"
	reasonPVCCreating     = "PVCBeingCreated"
	reasonPVCTerminating  = "PVCBeingDeleted"
)

// The PVC is part of the truth. Whether the function composes it or the user
// made it, it is a required resource: no Job starts until it exists, and its
// uid enters every model's hash, so a PVC deleted and made again (empty)
// sends its models back to Pending and downloads them again. How it may be
// mounted decides how the Jobs run: a PVC whose only access mode is
// ReadWriteOnce is mounted on one node at a time, so all download pods of it
// are placed together (pod affinity on the node of the ones running); one
// that is ReadWriteOncePod takes one pod at a time, so downloads run one
// after another.

// storageState is what the function knows of the PVC.
type storageState struct {
	uid string
	// colocate: ReadWriteOnce only, so every pod mounting it shares a node.
	colocate bool
	// oneAtATime: ReadWriteOncePod, so one download pod at a time.
	oneAtATime bool
	// reason and problem say why no Job may start; empty when the PVC is
	// there.
	reason, problem string
}

func (s storageState) ready() bool { return s.problem == "" }

// resolveStorage reads the required PVC (nil: not found).
func resolveStorage(pvc *corev1.PersistentVolumeClaim, namespace string, spec *xrSpec) storageState {
	where := fmt.Sprintf("PersistentVolumeClaim %q in namespace %q", spec.StoragePVC, namespace)
	if pvc == nil {
		if spec.Storage != nil {
			return storageState{reason: reasonPVCCreating, problem: "waiting for the " + where + " to be created"}
		}
		return storageState{reason: reasonPVCNotFound, problem: where + " was not found; no download starts until it exists"}
	}
	if pvc.DeletionTimestamp != nil {
		return storageState{reason: reasonPVCTerminating, problem: where + " is being deleted; no download starts until a new one exists"}
	}
	uid := string(pvc.UID)
	if uid == "" {
		// crossplane render's required resources may have no uid; a
		// real PVC always has one.
		uid = "-"
	}
	st := storageState{uid: uid, reason: reasonPVCFound}
	if modes := pvc.Spec.AccessModes; len(modes) == 1 {
		st.colocate = modes[0] == corev1.ReadWriteOnce
		st.oneAtATime = modes[0] == corev1.ReadWriteOncePod
	}
	return st
}

// message is the StorageReady condition's message.
func (s storageState) message(pvc string) string {
	switch {
	case !s.ready():
		return s.problem
	case s.colocate:
		return fmt.Sprintf("PersistentVolumeClaim %q is ReadWriteOnce: its download pods run on one node", pvc)
	case s.oneAtATime:
		return fmt.Sprintf("PersistentVolumeClaim %q is ReadWriteOncePod: its downloads run one at a time", pvc)
	}
	return fmt.Sprintf("PersistentVolumeClaim %q is there", pvc)
}

// pvcLabelValue names a PVC in a label value: its name (a DNS subdomain is a
// valid label value) when it fits, else a cut name and a hash of the whole,
// so two PVCs never share a value.
func pvcLabelValue(name string) string {
	if len(name) <= naming.MaxLabelValue {
		return name
	}
	d := sha256.Sum256([]byte(name))
	return strings.TrimRight(name[:naming.MaxLabelValue-11], "-.") + "-" + hex.EncodeToString(d[:5])
}

// needsNamespaceOwner reports whether the PVC must name its Namespace as an
// owner, which needs the Namespace's uid (a required resource).
func needsNamespaceOwner(s *xrSpec, e envelope) bool {
	return s.Storage != nil && s.Storage.DeletionPolicy == deletionOrphan && !e.object
}

// buildPVC returns the PVC of spec.storage. ns is the Namespace when it must
// own the PVC (see above), nil until known.
func (b *jobBuilder) buildPVC(ns *corev1.Namespace) *corev1.PersistentVolumeClaim {
	st := b.spec.Storage
	pvc := &corev1.PersistentVolumeClaim{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "PersistentVolumeClaim"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      b.spec.StoragePVC,
			Namespace: b.namespace,
			Labels:    map[string]string{naming.LabelApp: naming.AppName, naming.LabelParent: b.parentLabel},
		},
		Spec: corev1.PersistentVolumeClaimSpec{
			VolumeMode:       ptr.To(corev1.PersistentVolumeMode(st.VolumeMode)),
			StorageClassName: st.StorageClassName,
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceStorage: resource.MustParse(st.Size),
			}},
		},
	}
	for _, m := range st.AccessModes {
		pvc.Spec.AccessModes = append(pvc.Spec.AccessModes, corev1.PersistentVolumeAccessMode(m))
	}
	if st.DeletionPolicy == deletionOrphan {
		pvc.Annotations = map[string]string{annotationDataWarning: "kept when the ModelDownload is deleted"}
	}
	if ns != nil && ns.UID != "" {
		pvc.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Namespace", Name: b.namespace, UID: ns.UID}}
	}
	return pvc
}
