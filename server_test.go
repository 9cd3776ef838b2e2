package main

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hfops/function-hf-download/hubtest"
	"github.com/hfops/function-hf-download/internal/read"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	rtlogging "github.com/crossplane/crossplane-runtime/v2/pkg/logging"
	function "github.com/crossplane/function-sdk-go"
	fnv1 "github.com/crossplane/function-sdk-go/proto/v1"
)

// The server survives: these tests serve the Function over real gRPC on a
// loopback port, as main.go does (insecure, no metrics server), and call it
// as Crossplane would.

// serve starts function.Serve on a free loopback port and returns a client.
// The server runs until the test binary exits (Serve cannot be stopped). A
// port found free may be taken before Serve binds it: then Serve fails at
// once, and it is started again on another port.
func serve(t *testing.T, fn fnv1.FunctionRunnerServiceServer, opts ...function.ServeOption) fnv1.FunctionRunnerServiceClient {
	t.Helper()
	for range 5 {
		addr, ok := tryServe(t, fn, opts...)
		if !ok {
			continue
		}
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		return fnv1.NewFunctionRunnerServiceClient(conn)
	}
	t.Fatal("function.Serve could not bind a free port in five tries")
	return nil
}

// tryServe starts function.Serve on a port found free and waits until it
// listens there (ok) or fails to bind (not ok).
func tryServe(t *testing.T, fn fnv1.FunctionRunnerServiceServer, opts ...function.ServeOption) (string, bool) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	opts = append([]function.ServeOption{
		function.Listen("tcp", addr),
		function.Insecure(true),
		function.WithMetricsServer(""),
	}, opts...)
	served := make(chan error, 1)
	go func() { served <- function.Serve(fn, opts...) }()
	failed := func() bool {
		select {
		case err := <-served:
			t.Logf("function.Serve on %s: %v", addr, err)
			return true
		default:
			return false
		}
	}
	// Generous: a loaded 2-core CI machine under the race detector.
	deadline := time.Now().Add(time.Minute)
	for {
		if failed() {
			return "", false
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c := net.Dialer{}
		nc, err := c.DialContext(ctx, "tcp", addr)
		cancel()
		if err == nil {
			_ = nc.Close()
			// Listening, and Serve still running: it is ours that listens.
			time.Sleep(100 * time.Millisecond)
			return addr, !failed()
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server at %s never listened: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func call(c fnv1.FunctionRunnerServiceClient, req *fnv1.RunFunctionRequest) (*fnv1.RunFunctionResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return c.RunFunction(ctx, req, grpc.WaitForReady(true))
}

// panicLogger panics on Debug for the XR named "boom": a fault deep inside
// RunFunction, after its recover is installed. Info (which the recover uses)
// is recorded.
type panicLogger struct {
	mu   *sync.Mutex
	info *[]string
	kv   []any
}

func newPanicLogger() panicLogger {
	return panicLogger{mu: &sync.Mutex{}, info: &[]string{}}
}

func (l panicLogger) Info(msg string, kv ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	*l.info = append(*l.info, fmt.Sprint(append([]any{msg}, append(l.kv, kv...)...)...))
}

func (l panicLogger) Debug(msg string, _ ...any) {
	for i := 0; i+1 < len(l.kv); i += 2 {
		if l.kv[i] == "xr-name" && l.kv[i+1] == "boom" {
			panic("forced panic in a test: " + msg)
		}
	}
}

func (l panicLogger) WithValues(kv ...any) rtlogging.Logger {
	return panicLogger{mu: l.mu, info: l.info, kv: append(append([]any{}, l.kv...), kv...)}
}

func (l panicLogger) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), *l.info...)
}

// TestServerSurvivesPanic: a panic in one call is an Internal error for that
// call only; the same server answers the next calls.
func TestServerSurvivesPanic(t *testing.T) {
	log := newPanicLogger()
	c := serve(t, &Function{log: log})

	good := withToken(xrYAML(twoModels)).build()
	boom := withToken(strings.Replace(xrYAML(twoModels), "name: cache", "name: boom", 1)).build()

	if _, err := call(c, good); err != nil {
		t.Fatalf("first call: %v", err)
	}
	_, err := call(c, boom)
	if got := status.Code(err); got != codes.Internal {
		t.Fatalf("the panicking call: want codes.Internal, got %v (%v)", got, err)
	}
	if strings.Contains(err.Error(), "forced panic") {
		t.Errorf("the panic's text reached the caller: %v", err)
	}
	found := false
	for _, l := range log.lines() {
		if strings.Contains(l, "RunFunction panicked") && strings.Contains(l, "forced panic") {
			found = true
		}
	}
	if !found {
		t.Errorf("the panic was not logged; Info lines: %q", log.lines())
	}
	for i := range 3 {
		rsp, err := call(c, good)
		if err != nil {
			t.Fatalf("call %d after the panic: %v", i, err)
		}
		if n := len(jobResources(rsp)); n != 2 {
			t.Fatalf("call %d after the panic: want 2 Jobs, got %d", i, n)
		}
	}
}

// concurrentRequests are many different requests: valid and invalid specs,
// different tokens, observed Jobs in every phase, a missing Secret.
func concurrentRequests(t *testing.T) []*fnv1.RunFunctionRequest {
	t.Helper()
	base := run(t, withToken(xrYAML(twoModels)).build())
	var reqs []*fnv1.RunFunctionRequest
	for i := range 60 {
		spec := fmt.Sprintf("storagePVC: pvc-%d\nhfTokenRef:\n  name: hf\nmodels:\n- name: org/alpha\n- name: org/beta\n  revision: v%d\n- name: org/m%d\n  include: ['*.json']\nsettings:\n  cpu: '%d'\n", i%7, i, i, 1+i%4)
		r := withToken(xrYAML(spec))
		r.secret = secretResource("token", fmt.Sprintf("%s-%d", testToken, i%5))
		switch i % 6 {
		case 1:
			r = withToken(xrYAML(twoModels))
			r.observed = map[string]*fnv1.Resource{}
			for k, job := range base.GetDesired().GetResources() {
				r.observed[k] = observedJob(job, []string{jobRunning, jobComplete, jobFailed}[i%3])
			}
		case 2:
			r.secret = nil
		case 3:
			r = withToken(xrYAML(twoModels + "- name: 'bad..name'\n"))
		case 4:
			r = withToken(xrYAML("storagePVC: 7\nmodels: []\n"))
		}
		reqs = append(reqs, r.build())
	}
	return reqs
}

// TestServerConcurrentCallsMatchSerial: 60 different requests sent at once
// over gRPC give exactly the answers the same requests give one by one, and
// the debug logs of all of them hold no token.
func TestServerConcurrentCallsMatchSerial(t *testing.T) {
	var logs hubtest.SyncBuffer
	c := serve(t, &Function{log: bufferLogger(&logs)})
	reqs := concurrentRequests(t)

	serial := make([]*fnv1.RunFunctionResponse, len(reqs))
	for i, req := range reqs {
		rsp, err := call(c, req)
		if err != nil {
			t.Fatalf("serial call %d: %v", i, err)
		}
		serial[i] = rsp
	}

	for round := range 2 {
		got := make([]*fnv1.RunFunctionResponse, len(reqs))
		errs := make([]error, len(reqs))
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i, req := range reqs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				got[i], errs[i] = call(c, req)
			}()
		}
		close(start)
		wg.Wait()
		for i := range reqs {
			if errs[i] != nil {
				t.Fatalf("round %d, concurrent call %d: %v", round, i, errs[i])
			}
			if !proto.Equal(serial[i], got[i]) {
				t.Errorf("round %d, request %d: the concurrent answer differs from the serial one", round, i)
			}
		}
	}

	for i := range 5 {
		tok := fmt.Sprintf("%s-%d", testToken, i)
		for _, p := range append(leakProbes(tok), leakProbes(testToken)...) {
			if strings.Contains(logs.String(), p) {
				t.Fatalf("the debug logs hold %q", p)
			}
		}
	}
	if !strings.Contains(logs.String(), "Composed download Jobs") {
		t.Errorf("no debug line was logged; is the logger at debug level?\n%s", logs.String())
	}
}

// TestServerRefusesOversizedRequest: a request over the server's limit is
// refused with ResourceExhausted before the function sees it, and the server
// keeps serving.
func TestServerRefusesOversizedRequest(t *testing.T) {
	const limit = 1 << 20 // --max-recv-message-size=1
	c := serve(t, newTestFunction(), function.MaxRecvMessageSize(limit))

	big := withToken(xrYAML(twoModels)).build()
	md := read.Get(big.GetObserved().GetComposite().GetResource(), "metadata").GetStructValue()
	md.Fields["annotations"] = object(fields{"padding": str(strings.Repeat("x", 2*limit))})
	if n := proto.Size(big); n <= limit {
		t.Fatalf("the big request is only %d bytes", n)
	}
	_, err := call(c, big)
	if got := status.Code(err); got != codes.ResourceExhausted {
		t.Fatalf("want codes.ResourceExhausted, got %v (%v)", got, err)
	}

	// Just under the limit is served.
	fit := withToken(xrYAML(twoModels)).build()
	md = read.Get(fit.GetObserved().GetComposite().GetResource(), "metadata").GetStructValue()
	md.Fields["annotations"] = object(fields{"padding": structpb.NewStringValue(strings.Repeat("x", limit-proto.Size(fit)-1024))})
	if _, err := call(c, fit); err != nil {
		t.Fatalf("a request under the limit: %v", err)
	}
	if _, err := call(c, withToken(xrYAML(twoModels)).build()); err != nil {
		t.Fatalf("a normal call after the refused one: %v", err)
	}
}
