// Package read is the first stage of a call: it reads the request into
// facts and reads nothing else. The Input (DecodeInput, ResolvePlatform),
// the XR's spec (ParseSpec, ValidateSpec) and recorded status
// (RecordedStatus), the observed Jobs, unwrapped from their Objects
// (Observe), and the resources the function asked Crossplane for, in the
// dialect of the Crossplane that calls (DialectOf, ReadRequired): the token
// Secret (ResolveToken), the PVC (ResolveStorage), the download pods, the
// Namespace, the other ModelDownloads and the namespace's Jobs.
//
// It imports only the API, the script's contract and the packages beneath
// every stage (internal/naming, internal/decode); deciding, building and
// responding are above it.
package read
