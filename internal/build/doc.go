// Package build makes the typed objects a call composes: the download Jobs
// (Builder.Job, and Builder.Manifest for many at once), the script's
// ConfigMap, the PVC of spec.storage, the progress objects, and in Object
// mode the provider-kubernetes Object around each (Envelope.Wrap). The digests
// of the Job template and of the script are part of every
// model's hash (Digests), so a function that builds Jobs differently makes
// new ones.
//
// It imports internal/read (the spec and the platform it builds from) and
// the packages beneath it; what to build is main's, from internal/decide's
// decisions.
package build
