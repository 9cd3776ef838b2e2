package main

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
)

const (
	pvcKey               = "pvc"
	requirementNamespace = "namespace"
	requirementPVC       = "storage-pvc"

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
