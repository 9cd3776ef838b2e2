// Package v1beta1 contains the input type for this Function.
// +kubebuilder:object:generate=true
// +groupName=hfdownload.fn.hfops.kamal.dev
// +versionName=v1beta1
package v1beta1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// This isn't a custom resource, in the sense that we never install its CRD.
// It is a KRM-like object, so we generate a CRD to describe its schema.

// Input configures how the function builds download Jobs. A platform team sets
// it once in the Composition so users of ModelDownload never repeat it. Every
// field is optional; the defaults run the downloader image of the function's
// own release.
// +kubebuilder:object:root=true
// +kubebuilder:storageversion
// +kubebuilder:resource:categories=crossplane
type Input struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Image runs the download script. It defaults to the downloader image
	// released with the function, at the function's version (downloader/,
	// pushed by `make push` beside the function), which has `hf` baked in.
	// Another image needs a POSIX sh and Python 3; when it has no `hf`, the
	// script installs a pinned huggingface_hub into /tmp at start, from the
	// Python package index the pod reaches, and says so in its log.
	// +kubebuilder:validation:MinLength=1
	// +optional
	Image string `json:"image,omitempty"`

	// ImagePullPolicy of the download container.
	// +kubebuilder:validation:Enum=Always;IfNotPresent;Never
	// +kubebuilder:default=IfNotPresent
	// +optional
	ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy,omitempty"`

	// ImagePullSecrets names Secrets in the XR's namespace used to pull Image.
	// +optional
	ImagePullSecrets []string `json:"imagePullSecrets,omitempty"`

	// ServiceAccountName runs the download pods as this service account. The
	// pods never mount its token: downloads need no Kubernetes API access.
	// +optional
	ServiceAccountName string `json:"serviceAccountName,omitempty"`

	// MountPath is where the PVC is mounted; each model lands in
	// <mountPath>/<model name>.
	// +kubebuilder:default="/models"
	// +kubebuilder:validation:Pattern=`^/`
	// +optional
	MountPath string `json:"mountPath,omitempty"`

	// NodePoolLabelKey is the node label that spec.nodePool selects on.
	// +kubebuilder:default="karpenter.sh/nodepool"
	// +optional
	NodePoolLabelKey string `json:"nodePoolLabelKey,omitempty"`

	// Tolerations added to every download pod.
	// +optional
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`

	// Env is added to the download container, for example HF_ENDPOINT for a
	// mirror or HTTPS_PROXY. Names the function sets itself are refused.
	// +optional
	Env []EnvVar `json:"env,omitempty"`

	// Resources are the default CPU and memory of a download container when
	// the XR's spec.settings leaves them out.
	// +optional
	Resources *Resources `json:"resources,omitempty"`

	// SecurityContext sets the ids the download pod runs as. The rest of the
	// restricted pod security profile is always applied.
	// +optional
	SecurityContext *SecurityContext `json:"securityContext,omitempty"`

	// Mode chooses what the function composes: Job composes batch/v1 Jobs
	// directly (Crossplane v2, namespaced XRs); Object wraps each Job, and the
	// PVC, in a provider-kubernetes Object (claims on cluster-scoped XRs, or
	// clusters that route every object through provider-kubernetes).
	// Default: Job for a namespaced XR, Object for a cluster-scoped one.
	// +kubebuilder:validation:Enum=Job;Object
	// +optional
	Mode string `json:"mode,omitempty"`

	// Object configures the provider-kubernetes Objects of Object mode.
	// +optional
	Object *ObjectSettings `json:"object,omitempty"`

	// MaxWorkers is passed to `hf download --max-workers`.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=64
	// +kubebuilder:default=8
	// +optional
	MaxWorkers *int32 `json:"maxWorkers,omitempty"`

	// StallTimeoutSeconds: a download that writes no byte for this long is
	// stopped and fails as stalled (its Job's retries resume it), unless the
	// ModelDownload sets settings.stallTimeoutSeconds.
	// +kubebuilder:validation:Minimum=30
	// +kubebuilder:validation:Maximum=86400
	// +kubebuilder:default=600
	// +optional
	StallTimeoutSeconds *int32 `json:"stallTimeoutSeconds,omitempty"`

	// MaxActiveJobsPerNamespace bounds the download Jobs active at once in a
	// namespace, whichever ModelDownload they belong to: new Jobs start only
	// while fewer are active, and the free slots go first to the
	// ModelDownload with the fewest active Jobs, then to the one that started
	// a Job longest ago. Unset: no limit.
	// +kubebuilder:validation:Minimum=1
	// +optional
	MaxActiveJobsPerNamespace *int32 `json:"maxActiveJobsPerNamespace,omitempty"`
}

// ObjectSettings configure provider-kubernetes Objects.
type ObjectSettings struct {
	// APIVersion of the Object: kubernetes.crossplane.io/v1alpha2 is
	// cluster-scoped; kubernetes.m.crossplane.io/v1alpha1 is the namespaced
	// Object of provider-kubernetes 1.x on Crossplane v2.
	// +kubebuilder:validation:Enum=kubernetes.crossplane.io/v1alpha2;kubernetes.m.crossplane.io/v1alpha1
	// +kubebuilder:default="kubernetes.crossplane.io/v1alpha2"
	// +optional
	APIVersion string `json:"apiVersion,omitempty"`

	// ProviderConfigRef selects the provider-kubernetes ProviderConfig.
	// +optional
	ProviderConfigRef *ProviderConfigRef `json:"providerConfigRef,omitempty"`
}

// ProviderConfigRef names a provider-kubernetes ProviderConfig.
type ProviderConfigRef struct {
	// +kubebuilder:default=default
	// +optional
	Name string `json:"name,omitempty"`
	// Kind is used by the namespaced Object only: ProviderConfig (in the
	// Object's namespace) or ClusterProviderConfig.
	// +kubebuilder:validation:Enum=ProviderConfig;ClusterProviderConfig
	// +kubebuilder:default=ClusterProviderConfig
	// +optional
	Kind string `json:"kind,omitempty"`
}

// EnvVar is a plain name and value; values from Secrets belong in the XR's
// hfTokenRef, not in platform-wide settings.
type EnvVar struct {
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// +optional
	Value string `json:"value,omitempty"`
}

// Resources are default compute resources, used as both request and limit.
type Resources struct {
	// +kubebuilder:default="1"
	// +optional
	CPU string `json:"cpu,omitempty"`
	// +kubebuilder:default="4Gi"
	// +optional
	Memory string `json:"memory,omitempty"`
}

// SecurityContext holds the ids of the download pod. fsGroup makes the PVC
// writable for the non-root user.
type SecurityContext struct {
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:default=1000
	// +optional
	RunAsUser *int64 `json:"runAsUser,omitempty"`
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:default=1000
	// +optional
	RunAsGroup *int64 `json:"runAsGroup,omitempty"`
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:default=1000
	// +optional
	FSGroup *int64 `json:"fsGroup,omitempty"`
}
