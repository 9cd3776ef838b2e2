package respond

import (
	"fmt"

	fnv1 "github.com/crossplane/function-sdk-go/proto/v1"
)

// Message size limits. A request or response grows by about 1.5 KB a model
// (the script is in one ConfigMap; docs/performance.md):
//
//   - The RESPONSE is received by Crossplane's gRPC client. Crossplane, v1.20
//     to v2.4.2 (internal/xfn/function_runner.go), dials functions without
//     MaxCallRecvMsgSize, so grpc-go's default applies: 4 MiB, and no flag of
//     Crossplane raises it. Over it, Crossplane fails the step with
//     "ResourceExhausted: grpc: received message larger than max". Nothing
//     is applied then, but the message names neither the XR's models nor a
//     remedy; CheckSize makes it a Fatal result that does.
//   - The REQUEST is received by this function's gRPC server: its limit is
//     the function's --max-recv-message-size flag (MB, default 16; Crossplane
//     sends without limit). Over it, the call is refused before RunFunction
//     runs, so only the flag helps; raise it with a
//     DeploymentRuntimeConfig's container args.
//
// CrossplaneMaxResponseBytes is the limit of Crossplane's gRPC client.
const CrossplaneMaxResponseBytes = 4 << 20

// CheckSize returns an error when the response cannot reach
// Crossplane whole: its size is over limitBytes (CrossplaneMaxResponseBytes
// for Crossplane). The caller then answers with that error as a Fatal
// result and no desired state, never with some of the Jobs: a desired state
// missing Jobs would make Crossplane delete them.
func CheckSize(rsp *fnv1.RunFunctionResponse, models, limitBytes int) error {
	n := Size(rsp)
	if n <= limitBytes {
		return nil
	}
	return fmt.Errorf("the response for %d models is %s, over the %s gRPC message limit of Crossplane's client "+
		"(Crossplane has no flag to raise it; the function's --max-recv-message-size governs only requests): "+
		"split the models across several ModelDownloads", models, MB(n), MB(limitBytes))
}

// Oversize is what the function answers instead of a response that
// is too big: the Fatal result alone, no desired state.
// rsp is the response that was too big: its tag is the request's.
func Oversize(rsp *fnv1.RunFunctionResponse, err error) *fnv1.RunFunctionResponse {
	return &fnv1.RunFunctionResponse{
		Meta: &fnv1.ResponseMeta{Tag: rsp.GetMeta().GetTag()},
		Results: []*fnv1.Result{{
			Severity: fnv1.Severity_SEVERITY_FATAL,
			Message:  err.Error(),
			Target:   fnv1.Target_TARGET_COMPOSITE.Enum(),
		}},
	}
}

// MB says n bytes in MiB, as the messages name them.
func MB(n int) string {
	if n%(1<<20) == 0 {
		return fmt.Sprintf("%d MB", n>>20)
	}
	return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
}
