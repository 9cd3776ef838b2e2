package v1alpha1

import _ "embed" // the schema travels inside the function

// CRD is the CustomResourceDefinition controller-gen makes of these types
// (go generate -tags generate ./apis): the XRDs' schema, and what the function
// decodes an XR's spec by.
//
//go:embed hfops.kamal.dev_modeldownloads.yaml
var CRD []byte
