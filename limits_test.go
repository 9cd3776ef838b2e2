package main

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	fnv1 "github.com/crossplane/function-sdk-go/proto/v1"
)

// TestCheckResponseSize: a response over the limit becomes one Fatal that
// names the count, the size, whose limit it is and what to do; never a
// response with some of the Jobs.
func TestCheckResponseSize(t *testing.T) {
	_, steady := benchRequests(t, 100)
	size := proto.Size(steady.rsp)
	if err := checkResponseSize(steady.rsp, 100, crossplaneMaxResponseBytes); err != nil {
		t.Fatalf("100 models must fit: %v", err)
	}
	if err := checkResponseSize(steady.rsp, 100, size); err != nil {
		t.Fatalf("a response of exactly the limit fits: %v", err)
	}
	err := checkResponseSize(steady.rsp, 100, size-1)
	if err == nil {
		t.Fatal("a response one byte over the limit passed")
	}
	want := fmt.Sprintf("the response for 100 models is %s, over the %s gRPC message limit of Crossplane's client "+
		"(Crossplane v2.2.1 has no flag to raise it; the function's --max-recv-message-size governs only requests): "+
		"split the models across several ModelDownloads", mb(size), mb(size-1))
	if err.Error() != want {
		t.Errorf("message:\n got %s\nwant %s", err, want)
	}

	rsp := oversizeResponse(steady.req, err)
	if rsp.GetDesired() != nil || len(rsp.GetResults()) != 1 || rsp.GetResults()[0].GetSeverity() != fnv1.Severity_SEVERITY_FATAL ||
		rsp.GetResults()[0].GetMessage() != want || rsp.GetMeta().GetTag() != steady.req.GetMeta().GetTag() {
		t.Errorf("oversizeResponse = %v, want a Fatal result alone", rsp)
	}

	if got := mb(crossplaneMaxResponseBytes); got != "4 MB" {
		t.Errorf("mb(4 MiB) = %q", got)
	}
}

// TestRunFunctionMeasuresExactly: the size RunFunction checks, made of sizes
// measured as each resource is composed plus a walk of the rest (here a
// resource an earlier pipeline step desired), is the exact encoded size: a
// limit of that many bytes lets the response through, one byte less refuses
// it.
func TestRunFunctionMeasuresExactly(t *testing.T) {
	_, steady := benchRequests(t, 10)
	req := proto.Clone(steady.req).(*fnv1.RunFunctionRequest)
	req.Desired = &fnv1.State{Resources: map[string]*fnv1.Resource{
		"from-an-earlier-step": {Resource: mustStruct("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: b}\n")},
	}}
	call := func(limit int) *fnv1.RunFunctionResponse {
		t.Helper()
		rsp, err := (&Function{log: newTestFunction().log, maxResponseBytes: limit}).RunFunction(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		return rsp
	}
	size := proto.Size(call(math.MaxInt))
	if rsp := call(size); rsp.GetDesired() == nil || len(jobResources(rsp)) != 11 {
		t.Errorf("a limit of exactly %d bytes refused the response: %v", size, rsp.GetResults())
	}
	if rsp := call(size - 1); rsp.GetDesired() != nil {
		t.Errorf("a limit of %d bytes let a response of %d through", size-1, size)
	}
}

// TestResponseLimitEndToEnd: an XR whose Jobs do not fit Crossplane's 4 MB
// answers with the Fatal alone, through RunFunction as Crossplane calls it.
func TestResponseLimitEndToEnd(t *testing.T) {
	const n = 2500 // about 2 KB a model: 5 MB
	first, _ := benchRequests(t, n)
	rsp, err := newTestFunction().RunFunction(context.Background(), first.req)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkResponseSize(first.rsp, n, crossplaneMaxResponseBytes); err == nil {
		t.Fatalf("%d models (%s) fit in 4 MB: raise n", n, mb(proto.Size(first.rsp)))
	}
	if rsp.GetDesired() != nil || len(rsp.GetResults()) != 1 {
		t.Fatalf("RunFunction answered %d Jobs and results %v; want the Fatal alone", len(jobResources(rsp)), rsp.GetResults())
	}
	r := rsp.GetResults()[0]
	msg := r.GetMessage()
	if r.GetSeverity() != fnv1.Severity_SEVERITY_FATAL || !strings.HasPrefix(msg, fmt.Sprintf("the response for %d models is %s,", n, mb(proto.Size(first.rsp)))) ||
		!strings.HasSuffix(msg, "over the 4 MB gRPC message limit of Crossplane's client (Crossplane v2.2.1 has no flag to raise it; "+
			"the function's --max-recv-message-size governs only requests): split the models across several ModelDownloads") {
		t.Errorf("result = %v %q", r.GetSeverity(), msg)
	}
}

// TestMessageLimits measures the largest XR that fits 4 MB, request and
// response, in the steady state of the benchmarks (every Job observed, half
// of them complete with their pods). Its figures are in docs/performance.md:
//
//	go test -run TestMessageLimits -v .
func TestMessageLimits(t *testing.T) {
	if testing.Short() {
		t.Skip("builds requests of up to 500 models")
	}
	sizes := func(n int) (req, rsp int) {
		_, steady := benchRequests(t, n)
		return proto.Size(steady.req), proto.Size(steady.rsp)
	}
	fits := func(limit int, pick func(req, rsp int) int) int {
		lo, hi := 1, 1000 // lo fits, hi does not
		for hi-lo > 1 {
			mid := (lo + hi) / 2
			if pick(sizes(mid)) <= limit {
				lo = mid
			} else {
				hi = mid
			}
		}
		return lo
	}
	req := fits(4<<20, func(req, _ int) int { return req })
	rsp := fits(crossplaneMaxResponseBytes, func(_, rsp int) int { return rsp })
	rq, _ := sizes(req)
	_, rs := sizes(rsp)
	t.Logf("largest steady-state request within 4 MB: %d models (%d bytes); per model %.0f bytes", req, rq, float64(rq)/float64(req))
	t.Logf("largest response within 4 MB: %d models (%d bytes); per model %.0f bytes", rsp, rs, float64(rs)/float64(rsp))
	if req < 100 || rsp < 100 {
		t.Errorf("a ModelDownload of 100 models must fit: request %d, response %d models", req, rsp)
	}
}
