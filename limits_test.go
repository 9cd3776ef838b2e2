package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	fnv1 "github.com/crossplane/function-sdk-go/proto/v1"

	"github.com/hfops/function-hf-download/internal/respond"
)

// TestCheckResponseSize: a response over the limit becomes one Fatal that
// names the count, the size, whose limit it is and what to do; never a
// response with some of the Jobs.
func TestCheckResponseSize(t *testing.T) {
	_, steady := benchRequests(t, 100)
	size := proto.Size(steady.rsp)
	if err := respond.CheckSize(steady.rsp, 100, respond.CrossplaneMaxResponseBytes); err != nil {
		t.Fatalf("100 models must fit: %v", err)
	}
	if err := respond.CheckSize(steady.rsp, 100, size); err != nil {
		t.Fatalf("a response of exactly the limit fits: %v", err)
	}
	err := respond.CheckSize(steady.rsp, 100, size-1)
	if err == nil {
		t.Fatal("a response one byte over the limit passed")
	}
	want := fmt.Sprintf("the response for 100 models is %s, over the %s gRPC message limit of Crossplane's client "+
		"(Crossplane has no flag to raise it; the function's --max-recv-message-size governs only requests): "+
		"split the models across several ModelDownloads", respond.MB(size), respond.MB(size-1))
	if err.Error() != want {
		t.Errorf("message:\n got %s\nwant %s", err, want)
	}

	rsp := respond.Oversize(steady.rsp, err)
	if rsp.GetDesired() != nil || len(rsp.GetResults()) != 1 || rsp.GetResults()[0].GetSeverity() != fnv1.Severity_SEVERITY_FATAL ||
		rsp.GetResults()[0].GetMessage() != want || rsp.GetMeta().GetTag() != steady.req.GetMeta().GetTag() {
		t.Errorf("oversizeResponse = %v, want a Fatal result alone", rsp)
	}

	if got := respond.MB(respond.CrossplaneMaxResponseBytes); got != "4 MB" {
		t.Errorf("respond.MB(4 MiB) = %q", got)
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
	if err := respond.CheckSize(first.rsp, n, respond.CrossplaneMaxResponseBytes); err == nil {
		t.Fatalf("%d models (%s) fit in 4 MB: raise n", n, respond.MB(proto.Size(first.rsp)))
	}
	if rsp.GetDesired() != nil || len(rsp.GetResults()) != 1 {
		t.Fatalf("RunFunction answered %d Jobs and results %v; want the Fatal alone", len(jobResources(rsp)), rsp.GetResults())
	}
	r := rsp.GetResults()[0]
	msg := r.GetMessage()
	if r.GetSeverity() != fnv1.Severity_SEVERITY_FATAL || !strings.HasPrefix(msg, fmt.Sprintf("the response for %d models is %s,", n, respond.MB(proto.Size(first.rsp)))) ||
		!strings.HasSuffix(msg, "over the 4 MB gRPC message limit of Crossplane's client (Crossplane has no flag to raise it; "+
			"the function's --max-recv-message-size governs only requests): split the models across several ModelDownloads") {
		t.Errorf("result = %v %q", r.GetSeverity(), msg)
	}
}

// TestMessageLimits checks that a ModelDownload of maxModels models fits, in
// the steady state of the benchmarks (every Job observed, half of them
// complete with their pods): its response within Crossplane's 4 MB client
// limit, its request within the function's default --max-recv-message-size.
// It logs the bytes a model adds (docs/performance.md):
//
//	go test -run TestMessageLimits -v .
func TestMessageLimits(t *testing.T) {
	if testing.Short() {
		t.Skip("builds requests of maxModels models")
	}
	_, small := benchRequests(t, 100)
	_, steady := benchRequests(t, maxModels)
	rq, rs := proto.Size(steady.req), proto.Size(steady.rsp)
	perReq := float64(rq-proto.Size(small.req)) / float64(maxModels-100)
	perRsp := float64(rs-proto.Size(small.rsp)) / float64(maxModels-100)
	t.Logf("%d models, steady state: request %d bytes, response %d bytes; each model adds %.0f to the request, %.0f to the response",
		maxModels, rq, rs, perReq, perRsp)
	t.Logf("largest response within 4 MB: about %d models", maxModels+int(float64(respond.CrossplaneMaxResponseBytes-rs)/perRsp))
	if rs > respond.CrossplaneMaxResponseBytes {
		t.Errorf("the XRD allows %d models, but their response is %s, over Crossplane's 4 MB", maxModels, respond.MB(rs))
	}
	if rq > defaultMaxRecvMB<<20 {
		t.Errorf("the XRD allows %d models, but their request is %s, over the function's default %d MB", maxModels, respond.MB(rq), defaultMaxRecvMB)
	}
}

// maxModels is the XRD's maxItems for spec.models: what fits Crossplane's
// 4 MB response limit (TestMessageLimits) and etcd (TestXRFitsInEtcd).
const maxModels = 1300

// TestXRFitsInEtcd: a ModelDownload of maxModels models, with the status the
// function writes, is one object in etcd, whose requests are limited to
// 1.5 MiB by default (--max-request-bytes).
func TestXRFitsInEtcd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a request of maxModels models")
	}
	_, steady := benchRequests(t, maxModels)
	xr := steady.req.GetObserved().GetComposite().GetResource()
	b, err := protojson.Marshal(xr)
	if err != nil {
		t.Fatal(err)
	}
	const etcdLimit = 3 << 19 // 1.5 MiB
	t.Logf("a ModelDownload of %d models with its status: %d bytes of JSON", maxModels, len(b))
	if len(b) > etcdLimit*2/3 {
		t.Errorf("%d models make an XR of %d bytes: too close to etcd's %d", maxModels, len(b), etcdLimit)
	}
}

// TestXRDMaxItems keeps the XRD's maxItems where the limits tests put it.
func TestXRDMaxItems(t *testing.T) {
	b, err := os.ReadFile("example/definition.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), fmt.Sprintf("maxItems: %d\n", maxModels)) {
		t.Errorf("example/definition.yaml: spec.models must have maxItems: %d", maxModels)
	}
}
