package read

import (
	"encoding/base64"
	"fmt"
	"regexp"
	"strings"

	fnv1 "github.com/crossplane/function-sdk-go/proto/v1"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/hfops/function-hf-download/apis/v1alpha1"
	"github.com/hfops/function-hf-download/internal/naming"
)

// The token Secret is a required resource: Crossplane fetches it and calls
// the function again, so a rotated token changes the spec hash and re-runs
// the downloads. The value never leaves this file except as a SHA-256 digest.

const (
	RequirementToken = "hf-token-secret"
	RequirementPods  = "download-pods"
	RequirementPeers = "modeldownloads"
)

// Reasons of the HFTokenAvailable condition.
const (
	reasonSecretFound    = "SecretFound"
	ReasonSecretNotFound = "SecretNotFound"
	ReasonKeyNotFound    = "KeyNotFound"
	ReasonTokenEmpty     = "TokenEmpty"
	ReasonTokenInvalid   = "TokenNotBase64"
)

// TokenState is what the function knows of the token.
type TokenState struct {
	// digest is the SHA-256 of the token, nil without hfTokenRef.
	Digest []byte
	// reason and problem explain a token that cannot be used; problem names
	// the Secret, key and namespace, never a byte of the value.
	Reason  string
	Problem string
	// value is kept only to take it out of what pods report (see scrub).
	value []byte
}

// hfTokenPattern matches Hugging Face tokens (hf_ and then letters and
// digits), whoever's they are.
var hfTokenPattern = regexp.MustCompile(`hf_[A-Za-z0-9]{8,}`)

// minScrubbedToken: a shorter value is no real token, and replacing it
// everywhere would garble the message.
const minScrubbedToken = 8

// scrub takes the token, and anything shaped like one, out of a message a pod
// wrote before it reaches status or a result.
func (t TokenState) Scrub(msg string) string {
	if len(t.value) >= minScrubbedToken {
		msg = strings.ReplaceAll(msg, string(t.value), "[token]")
	}
	return hfTokenPattern.ReplaceAllString(msg, "[token]")
}

func (t TokenState) Usable() bool { return t.Problem == "" }

// requirements asks Crossplane for the token Secret, for the download pods
// of this XR, whose termination messages say what landed on disk, for the
// PVC (storage.go), and, when
// the PVC it composes must outlive the XR, for the Namespace (storage.go).
func Requirements(namespace, parentLabel string, s *XRSpec, namespaceOwner bool) *fnv1.Requirements {
	ns := namespace
	r := &fnv1.Requirements{Resources: map[string]*fnv1.ResourceSelector{
		RequirementPods: {
			ApiVersion: "v1",
			Kind:       "Pod",
			Namespace:  &ns,
			Match: &fnv1.ResourceSelector_MatchLabels{MatchLabels: &fnv1.MatchLabels{
				Labels: map[string]string{naming.LabelApp: naming.AppName, naming.LabelParent: parentLabel},
			}},
		},
	}}
	r.Resources[RequirementPVC] = &fnv1.ResourceSelector{
		ApiVersion: "v1",
		Kind:       "PersistentVolumeClaim",
		Namespace:  &ns,
		Match:      &fnv1.ResourceSelector_MatchName{MatchName: s.StoragePVC},
	}
	if s.HFTokenRef != nil {
		r.Resources[RequirementToken] = &fnv1.ResourceSelector{
			ApiVersion: "v1",
			Kind:       "Secret",
			Namespace:  &ns,
			Match:      &fnv1.ResourceSelector_MatchName{MatchName: s.HFTokenRef.Name},
		}
	}
	if namespaceOwner {
		r.Resources[RequirementNamespace] = &fnv1.ResourceSelector{
			ApiVersion: "v1",
			Kind:       "Namespace",
			Match:      &fnv1.ResourceSelector_MatchName{MatchName: namespace},
		}
	}
	return r
}

// resolved reports whether Crossplane has answered every requirement
// (required: what the dialect's Answered gives).
func Resolved(required map[string]*fnv1.Resources, r *fnv1.Requirements) bool {
	for name := range r.GetResources() {
		if _, ok := required[name]; !ok {
			return false
		}
	}
	return true
}

// ResolveToken reads the token from the required Secret (nil: not found).
func ResolveToken(secret *structpb.Struct, namespace string, ref *v1alpha1.TokenRef) TokenState {
	if ref == nil {
		return TokenState{}
	}
	where := fmt.Sprintf("Secret %q in namespace %q", ref.Name, namespace)
	if secret == nil {
		return TokenState{Reason: ReasonSecretNotFound, Problem: where + " was not found"}
	}
	value, reason := secretValue(secret, ref.Key)
	switch reason {
	case ReasonKeyNotFound:
		return TokenState{Reason: reason, Problem: fmt.Sprintf("%s has no key %q", where, ref.Key)}
	case ReasonTokenInvalid:
		return TokenState{Reason: reason, Problem: fmt.Sprintf("%s key %q is not valid base64", where, ref.Key)}
	}
	if len(value) == 0 {
		return TokenState{Reason: ReasonTokenEmpty, Problem: fmt.Sprintf("%s key %q is empty", where, ref.Key)}
	}
	return TokenState{Digest: naming.TokenDigest(value), Reason: reasonSecretFound, value: value}
}

// secretValue reads data (base64, as the API serves it) or, for Secrets
// written by hand for crossplane render, stringData.
func secretValue(secret *structpb.Struct, key string) ([]byte, string) {
	if v := Get(secret, "data", key); v != nil {
		b, err := base64.StdEncoding.DecodeString(v.GetStringValue())
		if err != nil {
			return nil, ReasonTokenInvalid
		}
		return b, ""
	}
	if v := Get(secret, "stringData", key); v != nil {
		return []byte(v.GetStringValue()), ""
	}
	return nil, ReasonKeyNotFound
}
