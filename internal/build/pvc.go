package build

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/hfops/function-hf-download/internal/naming"
	"github.com/hfops/function-hf-download/internal/read"
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
	annotationDataWarning = "hfops.kamal.dev/retained"
	LabelPVC              = "hfops.kamal.dev/pvc"
)

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

// NeedsNamespaceOwner reports whether the PVC must name its Namespace as an
// owner, which needs the Namespace's uid (a required resource).
func NeedsNamespaceOwner(s *read.XRSpec, e Envelope) bool {
	return s.Storage != nil && s.Storage.DeletionPolicy == read.DeletionOrphan && !e.Object
}

// PVC returns the PVC of spec.storage. ns is the Namespace when it must
// own the PVC (see above), nil until known.
func (b *Builder) PVC(ns *corev1.Namespace) *corev1.PersistentVolumeClaim {
	st := b.Spec.Storage
	pvc := &corev1.PersistentVolumeClaim{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "PersistentVolumeClaim"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      b.Spec.StoragePVC,
			Namespace: b.namespace,
			Labels:    map[string]string{naming.LabelApp: naming.AppName, naming.LabelParent: b.ParentLabel},
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
	if st.DeletionPolicy == read.DeletionOrphan {
		pvc.Annotations = map[string]string{annotationDataWarning: "kept when the ModelDownload is deleted"}
	}
	if ns != nil && ns.UID != "" {
		pvc.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Namespace", Name: b.namespace, UID: ns.UID}}
	}
	return pvc
}
