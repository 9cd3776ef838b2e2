package build

import (
	"encoding/hex"
	"path"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	"github.com/hfops/function-hf-download/internal/naming"
	"github.com/hfops/function-hf-download/script"
)

// Live progress, with least privilege. Download pods have no API access of
// their own (automountServiceAccountToken stays false). Each ModelDownload
// gets one ConfigMap that its pods report progress into, a ServiceAccount for
// its pods, and a Role and RoleBinding that let that account get and patch
// exactly that ConfigMap (resourceNames) and nothing else. The token reaches
// only the download container, as a projected, audience-bound token that
// expires after progressTokenSeconds (the kubelet renews it), beside the
// cluster's CA. The ConfigMap's data is the pods' own: the function composes
// it without data, so Crossplane's server-side apply never owns (nor resets)
// what they patch, and reads it back from the observed ConfigMap.

const (
	// progressTokenSeconds is the shortest lifetime the API server grants a
	// projected token; the kubelet renews it at 80 %.
	progressTokenSeconds = 600
)

// ProgressName names the ConfigMap, ServiceAccount, Role and RoleBinding of
// one ModelDownload: hf-dl-<xr>-progress-<hash>.
func ProgressName(o naming.Owner) string {
	var scratch [256]byte
	c := naming.NewCanonical(scratch[:], "progress/v1")
	o.Identify(&c)
	d := c.Sum()
	return naming.JobName(o.Name, "progress", hex.EncodeToString(d[:naming.SpecHashLen/2]))
}

// scriptVolumeSource is the one volume at /opt/hf-download: the script's
// ConfigMap, and beside it what the download container reads to report
// progress, the projected token (file "token") and the API server's CA (file
// "ca.crt"; optional, so that a cluster without kube-root-ca.crt still starts
// the pod, which then reports nothing). One volume keeps every Job small.
func (b *Builder) scriptVolumeSource() corev1.VolumeSource {
	return corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
		{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: b.ScriptMap}}},
		{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
			Path: path.Base(script.ProgressTokenPath), ExpirationSeconds: ptr.To(int64(progressTokenSeconds)),
		}},
		{ConfigMap: &corev1.ConfigMapProjection{
			LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"},
			Items:                []corev1.KeyToPath{{Key: "ca.crt", Path: path.Base(script.ProgressCAPath)}},
			Optional:             ptr.To(true),
		}},
	}}}
}

// progressObject is one of the progress objects under its composition
// resource name, and how its envelope manages it.
type progressObject struct {
	Key    string
	Object runtime.Object
	Policy objectPolicy
}

// ProgressObjects are the progress ConfigMap and the identity of the
// download pods: a ServiceAccount of their own unless the Input names one,
// and the Role and RoleBinding that let it patch that ConfigMap alone.
func (b *Builder) ProgressObjects() []progressObject {
	name, ns := b.ProgressMap, b.namespace
	labels := map[string]string{naming.LabelApp: naming.AppName, naming.LabelParent: b.ParentLabel}
	meta := func(kind, apiVersion string) (metav1.TypeMeta, metav1.ObjectMeta) {
		return metav1.TypeMeta{Kind: kind, APIVersion: apiVersion}, metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels}
	}
	cmType, cmMeta := meta("ConfigMap", "v1")
	// createOnly: provider-kubernetes would otherwise reset the pods' data
	// to the empty manifest on every update.
	out := []progressObject{{naming.ProgressKeyConfigMap, &corev1.ConfigMap{TypeMeta: cmType, ObjectMeta: cmMeta}, createOnly}}

	subject := b.Platform.ServiceAccount
	if subject == "" {
		subject = name
		saType, saMeta := meta("ServiceAccount", "v1")
		out = append(out, progressObject{naming.ProgressKeyAccount, &corev1.ServiceAccount{
			TypeMeta: saType, ObjectMeta: saMeta, AutomountServiceAccountToken: ptr.To(false),
		}, Manage})
	}
	roleType, roleMeta := meta("Role", rbacv1.SchemeGroupVersion.String())
	bindingType, bindingMeta := meta("RoleBinding", rbacv1.SchemeGroupVersion.String())
	return append(out,
		progressObject{naming.ProgressKeyRole, &rbacv1.Role{TypeMeta: roleType, ObjectMeta: roleMeta,
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{name}, Verbs: []string{"get", "patch"}}},
		}, Manage},
		progressObject{naming.ProgressKeyBinding, &rbacv1.RoleBinding{TypeMeta: bindingType, ObjectMeta: bindingMeta,
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: subject, Namespace: ns}},
		}, Manage},
	)
}
