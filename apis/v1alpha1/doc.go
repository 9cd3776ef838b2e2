// Package v1alpha1 is the ModelDownload API (group hfops.kamal.dev), the API
// of the hf-operator Kubebuilder operator, kept so its manifests keep
// working. It is the one source of the API: controller-gen makes its schema
// (modeldownloads.yaml, go generate ./apis) and the two XRDs are derived from
// that schema (TestGeneratedManifests); the function decodes each XR's spec
// into these types by the same schema, so the defaults and bounds the API
// server applies are the ones the function applies under crossplane render.
// +groupName=hfops.kamal.dev
// +versionName=v1alpha1
package v1alpha1
