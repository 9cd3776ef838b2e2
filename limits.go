package main

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	fnv1 "github.com/crossplane/function-sdk-go/proto/v1"
)

// Message size limits. Every Job carries the download script, so a request
// or response grows by about 10 KB a model (docs/performance.md):
//
//   - The RESPONSE is received by Crossplane's gRPC client. Crossplane v2.2.1
//     (internal/xfn/function_runner.go) dials functions without
//     MaxCallRecvMsgSize, so grpc-go's default applies: 4 MiB, and no flag of
//     Crossplane raises it. Over it, Crossplane fails the step with
//     "ResourceExhausted: grpc: received message larger than max". Nothing
//     is applied then, but the message names neither the XR's models nor a
//     remedy; checkResponseSize makes it a Fatal result that does.
//   - The REQUEST is received by this function's gRPC server: its limit is
//     the function's --max-recv-message-size flag (MB, default 4; Crossplane
//     sends without limit). Over it, the call is refused before RunFunction
//     runs, so only the flag helps; raise it with a
//     DeploymentRuntimeConfig's container args.
const crossplaneMaxResponseBytes = 4 << 20

// checkResponseSize returns an error when the response cannot reach
// Crossplane whole: its size is over limitBytes (crossplaneMaxResponseBytes
// for Crossplane v2.2.1). The caller then answers with that error as a Fatal
// result and no desired state, never with some of the Jobs: a desired state
// missing Jobs would make Crossplane delete them. known holds sizes already
// measured (see resourceSizes).
func checkResponseSize(rsp *fnv1.RunFunctionResponse, models, limitBytes int, known resourceSizes) error {
	n := responseSize(rsp, known)
	if n <= limitBytes {
		return nil
	}
	return fmt.Errorf("the response for %d models is %s, over the %s gRPC message limit of Crossplane's client "+
		"(Crossplane v2.2.1 has no flag to raise it; the function's --max-recv-message-size governs only requests): "+
		"split the models across several ModelDownloads", models, mb(n), mb(limitBytes))
}

// oversizeResponse is what the function answers instead of a response that
// is too big: the Fatal result alone, no desired state.
func oversizeResponse(req *fnv1.RunFunctionRequest, err error) *fnv1.RunFunctionResponse {
	return &fnv1.RunFunctionResponse{
		Meta: &fnv1.ResponseMeta{Tag: req.GetMeta().GetTag()},
		Results: []*fnv1.Result{{
			Severity: fnv1.Severity_SEVERITY_FATAL,
			Message:  err.Error(),
			Target:   fnv1.Target_TARGET_COMPOSITE.Enum(),
		}},
	}
}

func mb(n int) string {
	if n%(1<<20) == 0 {
		return fmt.Sprintf("%d MB", n>>20)
	}
	return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
}

// responseSize is proto.Size(rsp), computed cheaply. proto.Size reaches the
// Structs of the desired resources through reflection, one map entry at a
// time, and costs about as much as RunFunction itself; this walks them
// directly and asks proto.Size only for the small rest of the response.
// TestResponseSizeIsProtoSize holds the two equal. A desired resource whose
// size is in known is not walked again.
func responseSize(rsp *fnv1.RunFunctionResponse, known resourceSizes) int {
	if rsp == nil {
		return 0
	}
	desired := rsp.Desired
	if desired == nil {
		return proto.Size(rsp)
	}
	rsp.Desired = nil
	n := proto.Size(rsp)
	rsp.Desired = desired
	return n + lenField(responseFieldDesired, stateSize(desired, known))
}

// resourceSizes holds the encoded size of composed resources, measured as
// each is made: the Struct just built is still in the CPU's caches, where a
// walk over the whole response at the end, megabytes at a thousand models,
// would mostly miss them.
type resourceSizes map[*fnv1.Resource]int

func (k resourceSizes) size(r *fnv1.Resource) int {
	if n, ok := k[r]; ok {
		return n
	}
	return resourceSize(r)
}

// Field numbers of the messages walked by hand (run_function.proto); the
// test checks them against the descriptors.
const (
	responseFieldDesired = 2 // RunFunctionResponse.desired

	stateFieldComposite = 1 // State.composite
	stateFieldResources = 2 // State.resources

	resourceFieldResource = 1 // Resource.resource
	resourceFieldDetails  = 2 // Resource.connection_details
	resourceFieldReady    = 3 // Resource.ready
)

// lenField is the size of a length-delimited field holding n bytes.
func lenField(num protowire.Number, n int) int {
	return protowire.SizeTag(num) + protowire.SizeBytes(n)
}

// mapEntrySize is the size of one entry of a protobuf map with string keys:
// a message with the key as field 1 and a length-delimited value as field 2.
func mapEntrySize(key string, valueSize int) int {
	return lenField(1, len(key)) + lenField(2, valueSize)
}

func stateSize(s *fnv1.State, known resourceSizes) int {
	n := 0
	if s.Composite != nil {
		n += lenField(stateFieldComposite, resourceSize(s.Composite))
	}
	for k, r := range s.Resources {
		n += lenField(stateFieldResources, mapEntrySize(k, known.size(r)))
	}
	return n + len(s.ProtoReflect().GetUnknown())
}

func resourceSize(r *fnv1.Resource) int {
	if r == nil {
		return 0
	}
	n := 0
	if r.Resource != nil {
		n += lenField(resourceFieldResource, structSize(r.Resource))
	}
	for k, v := range r.ConnectionDetails {
		n += lenField(resourceFieldDetails, mapEntrySize(k, len(v)))
	}
	if r.Ready != 0 {
		n += protowire.SizeTag(resourceFieldReady) + protowire.SizeVarint(uint64(r.Ready))
	}
	return n + len(r.ProtoReflect().GetUnknown())
}

// structSize is proto.Size of a Struct: map<string, Value> fields = 1.
func structSize(s *structpb.Struct) int {
	n := 0
	for k, v := range s.GetFields() {
		n += lenField(1, mapEntrySize(k, valueSize(v)))
	}
	return n
}

// valueSize is proto.Size of a Value: a oneof, so even a zero kind is
// written (tag and value).
func valueSize(v *structpb.Value) int {
	switch k := v.GetKind().(type) {
	case *structpb.Value_NullValue:
		return 1 + protowire.SizeVarint(uint64(k.NullValue))
	case *structpb.Value_NumberValue:
		return 1 + 8
	case *structpb.Value_StringValue:
		return 1 + protowire.SizeBytes(len(k.StringValue))
	case *structpb.Value_BoolValue:
		return 1 + 1
	case *structpb.Value_StructValue:
		return 1 + protowire.SizeBytes(structSize(k.StructValue))
	case *structpb.Value_ListValue:
		n := 0
		for _, e := range k.ListValue.GetValues() {
			n += lenField(1, valueSize(e))
		}
		return 1 + protowire.SizeBytes(n)
	}
	return 0
}
