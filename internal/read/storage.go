package read

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
)

const (
	PVCKey               = "pvc"
	RequirementNamespace = "namespace"
	RequirementPVC       = "storage-pvc"

	ConditionStorageReady = "StorageReady"
	ReasonPVCFound        = "PVCFound"
	ReasonPVCNotFound     = "PVCNotFound"
	reasonPVCCreating     = "PVCBeingCreated"
	ReasonPVCTerminating  = "PVCBeingDeleted"
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

// StorageState is what the function knows of the PVC.
type StorageState struct {
	UID string
	// colocate: ReadWriteOnce only, so every pod mounting it shares a node.
	Colocate bool
	// OneAtATime: ReadWriteOncePod, so one download pod at a time.
	OneAtATime bool
	// reason and problem say why no Job may start; empty when the PVC is
	// there.
	Reason, Problem string
}

func (s StorageState) Ready() bool { return s.Problem == "" }

// ResolveStorage reads the required PVC (nil: not found).
func ResolveStorage(pvc *corev1.PersistentVolumeClaim, namespace string, spec *XRSpec) StorageState {
	where := fmt.Sprintf("PersistentVolumeClaim %q in namespace %q", spec.StoragePVC, namespace)
	if pvc == nil {
		if spec.Storage != nil {
			return StorageState{Reason: reasonPVCCreating, Problem: "waiting for the " + where + " to be created"}
		}
		return StorageState{Reason: ReasonPVCNotFound, Problem: where + " was not found; no download starts until it exists"}
	}
	if pvc.DeletionTimestamp != nil {
		return StorageState{Reason: ReasonPVCTerminating, Problem: where + " is being deleted; no download starts until a new one exists"}
	}
	uid := string(pvc.UID)
	if uid == "" {
		// crossplane render's required resources may have no uid; a
		// real PVC always has one.
		uid = "-"
	}
	st := StorageState{UID: uid, Reason: ReasonPVCFound}
	if modes := pvc.Spec.AccessModes; len(modes) == 1 {
		st.Colocate = modes[0] == corev1.ReadWriteOnce
		st.OneAtATime = modes[0] == corev1.ReadWriteOncePod
	}
	return st
}

// message is the StorageReady condition's message.
func (s StorageState) Message(pvc string) string {
	switch {
	case !s.Ready():
		return s.Problem
	case s.Colocate:
		return fmt.Sprintf("PersistentVolumeClaim %q is ReadWriteOnce: its download pods run on one node", pvc)
	case s.OneAtATime:
		return fmt.Sprintf("PersistentVolumeClaim %q is ReadWriteOncePod: its downloads run one at a time", pvc)
	}
	return fmt.Sprintf("PersistentVolumeClaim %q is there", pvc)
}
