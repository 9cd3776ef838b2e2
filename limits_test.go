package main

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/structpb"

	fnv1 "github.com/crossplane/function-sdk-go/proto/v1"
)

// TestResponseSizeIsProtoSize holds responseSize to what it replaces.
func TestResponseSizeIsProtoSize(t *testing.T) {
	for _, f := range []struct {
		msg  protoreflect.Message
		name protoreflect.Name
		num  protowire.Number
	}{
		{(&fnv1.RunFunctionResponse{}).ProtoReflect(), "desired", responseFieldDesired},
		{(&fnv1.State{}).ProtoReflect(), "composite", stateFieldComposite},
		{(&fnv1.State{}).ProtoReflect(), "resources", stateFieldResources},
		{(&fnv1.Resource{}).ProtoReflect(), "resource", resourceFieldResource},
		{(&fnv1.Resource{}).ProtoReflect(), "connection_details", resourceFieldDetails},
		{(&fnv1.Resource{}).ProtoReflect(), "ready", resourceFieldReady},
	} {
		fd := f.msg.Descriptor().Fields().ByName(f.name)
		if fd == nil || fd.Number() != f.num {
			t.Errorf("%s.%s is not field %d: responseSize must learn the new schema", f.msg.Descriptor().FullName(), f.name, f.num)
		}
	}
	// responseSize walks State and Resource by hand: a field it does not
	// know would be missed, so their field counts are pinned.
	for msg, want := range map[protoreflect.Message]int{(&fnv1.State{}).ProtoReflect(): 2, (&fnv1.Resource{}).ProtoReflect(): 3} {
		if got := msg.Descriptor().Fields().Len(); got != want {
			t.Errorf("%s has %d fields, responseSize knows %d", msg.Descriptor().FullName(), got, want)
		}
	}

	odd := &structpb.Struct{Fields: fields{
		"null":    structpb.NewNullValue(),
		"empty":   str(""),
		"zero":    structpb.NewNumberValue(0),
		"nan":     structpb.NewNumberValue(math.NaN()),
		"false":   boolean(false),
		"list":    list(),
		"nested":  list(list(object(fields{})), strList([]string{"", "ü", strings.Repeat("x", 300)})),
		"nilKind": {},
		"":        object(fields{"k": num(-1)}),
		"long":    str(strings.Repeat("y", 70000)),
	}}
	cases := map[string]*fnv1.RunFunctionResponse{
		"Nil":          nil,
		"Empty":        {},
		"NoDesired":    fatalResponse("x"),
		"EmptyDesired": {Desired: &fnv1.State{}, Meta: &fnv1.ResponseMeta{Tag: "t"}},
		"Odd": {
			Desired: &fnv1.State{
				Composite: &fnv1.Resource{Resource: odd, Ready: fnv1.Ready_READY_TRUE},
				Resources: map[string]*fnv1.Resource{
					"a":     {Resource: odd, ConnectionDetails: map[string][]byte{"k": []byte("v"), "": nil}},
					"b":     {Ready: fnv1.Ready_READY_FALSE},
					"empty": {},
					"":      {Resource: &structpb.Struct{}},
				},
			},
			Context: odd,
		},
	}
	for _, n := range []int{1, 10, 100} {
		first, steady := benchRequests(t, n)
		cases[fmt.Sprintf("First%d", n)] = first.rsp
		cases[fmt.Sprintf("Steady%d", n)] = steady.rsp
	}
	for name, rsp := range cases {
		t.Run(name, func(t *testing.T) {
			want := proto.Size(rsp)
			if got := responseSize(rsp, nil); got != want {
				t.Errorf("responseSize = %d, proto.Size = %d", got, want)
			}
			if want != proto.Size(rsp) {
				t.Error("responseSize changed the response")
			}
		})
	}
}

// TestCheckResponseSize: a response over the limit becomes one Fatal that
// names the count, the size, whose limit it is and what to do; never a
// response with some of the Jobs.
func TestCheckResponseSize(t *testing.T) {
	_, steady := benchRequests(t, 100)
	size := proto.Size(steady.rsp)
	if err := checkResponseSize(steady.rsp, 100, crossplaneMaxResponseBytes, nil); err != nil {
		t.Fatalf("100 models must fit: %v", err)
	}
	if err := checkResponseSize(steady.rsp, 100, size, nil); err != nil {
		t.Fatalf("a response of exactly the limit fits: %v", err)
	}
	err := checkResponseSize(steady.rsp, 100, size-1, nil)
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
	if rsp := call(size); rsp.GetDesired() == nil || len(rsp.GetDesired().GetResources()) != 11 {
		t.Errorf("a limit of exactly %d bytes refused the response: %v", size, rsp.GetResults())
	}
	if rsp := call(size - 1); rsp.GetDesired() != nil {
		t.Errorf("a limit of %d bytes let a response of %d through", size-1, size)
	}
}

// TestResponseLimitEndToEnd: an XR whose Jobs do not fit Crossplane's 4 MB
// answers with the Fatal alone, through RunFunction as Crossplane calls it.
func TestResponseLimitEndToEnd(t *testing.T) {
	const n = 500 // about 18 KB a model: 9 MB
	first, _ := benchRequests(t, n)
	rsp, err := newTestFunction().RunFunction(context.Background(), first.req)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkResponseSize(first.rsp, n, crossplaneMaxResponseBytes, nil); err == nil {
		t.Fatalf("%d models (%s) fit in 4 MB: raise n", n, mb(proto.Size(first.rsp)))
	}
	if rsp.GetDesired() != nil || len(rsp.GetResults()) != 1 {
		t.Fatalf("RunFunction answered %d Jobs and results %v; want the Fatal alone", len(rsp.GetDesired().GetResources()), rsp.GetResults())
	}
	r := rsp.GetResults()[0]
	msg := r.GetMessage()
	if r.GetSeverity() != fnv1.Severity_SEVERITY_FATAL || !strings.HasPrefix(msg, "the response for 500 models is "+mb(proto.Size(first.rsp))+",") ||
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
