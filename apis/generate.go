//go:build generate

// Regenerate the ModelDownload schema from the types in v1alpha1; then
// `go test -run TestGeneratedManifests -update .` derives the XRDs from it.
//go:generate go run -tags generate sigs.k8s.io/controller-tools/cmd/controller-gen paths=./v1alpha1 crd:crdVersions=v1 output:crd:artifacts:config=./v1alpha1

package apis

import (
	_ "sigs.k8s.io/controller-tools/cmd/controller-gen" //nolint:typecheck
)
