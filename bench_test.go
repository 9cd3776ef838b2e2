package main

import (
	"context"
	"fmt"
	"math"
	"net"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/structpb"

	function "github.com/crossplane/function-sdk-go"
	"github.com/crossplane/function-sdk-go/logging"
	fnv1 "github.com/crossplane/function-sdk-go/proto/v1"

	"github.com/hfops/function-hf-download/input/v1beta1"
	"github.com/hfops/function-hf-download/internal/build"
	"github.com/hfops/function-hf-download/internal/decide"
	"github.com/hfops/function-hf-download/internal/naming"
	"github.com/hfops/function-hf-download/internal/read"
)

// Benchmarks of RunFunction against the protobuf floor: what Crossplane and
// the gRPC server already pay to move the same request and response. See
// docs/performance.md for the figures and the command that reproduces them:
//
//	go test -run '^$' -bench . -benchmem -count 5 -timeout 60m . | tee bench.txt
//	go run docs/benchtable.go < bench.txt

// benchSizes are the model counts of the issue: 1, 10, 100 and 1000.
var benchSizes = []int{1, 10, 100, 1000}

// benchInput is the Input of example/composition.yaml: the Composition most
// users copy sets it, so every call decodes it.
const benchInput = `apiVersion: hfdownload.fn.hfops.kamal.dev/v1beta1
kind: Input
mountPath: /models
nodePoolLabelKey: karpenter.sh/nodepool
maxWorkers: 8
`

// benchSpec is a ModelDownload spec with n models, a token and settings; one
// model in three has a revision and globs, one in five an auditor's sha.
func benchSpec(n int) string {
	var b strings.Builder
	b.WriteString("storagePVC: models-pvc\nhfTokenRef:\n  name: hf\n  key: token\nnodePool: gpu\n")
	b.WriteString("settings:\n  enableHFTransfer: true\n  cpu: \"2\"\n  memory: 8Gi\n  keepAliveSeconds: 600\n  timeoutMillis: 3600000\n")
	b.WriteString("models:\n")
	for i := range n {
		fmt.Fprintf(&b, "- name: org-%d/model-%d-Instruct\n", i%37, i)
		if i%3 == 0 {
			b.WriteString("  revision: v1.0\n  include: [\"*.json\", \"*.safetensors\"]\n  exclude: [\"*.bin\"]\n")
		}
		if i%5 == 0 {
			b.WriteString("  sha: c9745ed1d9f207416be6d2e6f8de32d1f16199bf\n")
		}
	}
	return b.String()
}

// benchCard is the model card of a typical model, as the script reports it.
const benchCard = `{"architecture":"Qwen2ForCausalLM","modelType":"qwen2","dtype":"bfloat16","contextLength":32768,"parameters":494032768,"license":"apache-2.0"}`

// benchCase is one request and the response RunFunction gives it.
type benchCase struct {
	req *fnv1.RunFunctionRequest
	rsp *fnv1.RunFunctionResponse
}

var (
	benchMu    sync.Mutex
	benchCache = map[string]benchCase{}
)

// benchRequests returns the first-run request (no observed Jobs, the token
// Secret present) and the steady-state request (every Job observed, half of
// them complete with their pods' summaries, the rest running, and the XR
// status the previous call wrote) for n models.
func benchRequests(tb testing.TB, n int) (first, steady benchCase) {
	tb.Helper()
	benchMu.Lock()
	defer benchMu.Unlock()
	kf, ks := fmt.Sprintf("first/%d", n), fmt.Sprintf("steady/%d", n)
	if c, ok := benchCache[kf]; ok {
		return c, benchCache[ks]
	}
	// No response limit here: TestMessageLimits measures where it falls.
	f := &Function{log: newTestFunction().log, maxResponseBytes: math.MaxInt}
	call := func(req *fnv1.RunFunctionRequest) *fnv1.RunFunctionResponse {
		rsp, err := f.RunFunction(context.Background(), req)
		if err != nil {
			tb.Fatal(err)
		}
		for _, r := range rsp.GetResults() {
			if r.GetSeverity() == fnv1.Severity_SEVERITY_FATAL {
				tb.Fatalf("unexpected Fatal: %s", r.GetMessage())
			}
		}
		return rsp
	}

	tr := withToken(xrYAML(benchSpec(n)))
	tr.input = benchInput
	first = benchCase{req: tr.build()}
	first.rsp = call(first.req)

	// Every desired Job observed; in key order, even ones complete (with a
	// succeeded pod), odd ones running.
	jobs := jobResources(first.rsp)
	keys := make([]string, 0, len(jobs))
	for k := range jobs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	tr.observed = make(map[string]*fnv1.Resource, len(keys))
	for i, k := range keys {
		if i%2 == 0 {
			tr.observed[k] = observedJob(jobs[k], jobComplete)
			name := read.GetString(jobs[k].GetResource(), "metadata", "name")
			tr.pods = append(tr.pods, succeededPod(name, fmt.Sprintf(`{"commit":"%040x","files":%d,"bytes":%d,"seconds":%d,"verified":true,"card":%s}`, i, 7+i%5, 1<<30+i, 60+i, benchCard)))
		} else {
			tr.observed[k] = observedJob(jobs[k], jobRunning)
		}
	}
	// The XR as Crossplane observes it: with the status the last call wrote.
	steady = benchCase{req: tr.build()}
	withStatus := func(req *fnv1.RunFunctionRequest, rsp *fnv1.RunFunctionResponse) {
		xr := req.GetObserved().GetComposite().GetResource()
		xr.Fields["status"] = rsp.GetDesired().GetComposite().GetResource().GetFields()["status"]
	}
	withStatus(steady.req, call(steady.req))
	steady.rsp = call(steady.req)

	benchCache[kf], benchCache[ks] = first, steady
	return first, steady
}

func benchCases(b *testing.B, each func(b *testing.B, n int, c benchCase)) {
	for _, state := range []string{"first", "steady"} {
		for _, n := range benchSizes {
			b.Run(fmt.Sprintf("state=%s/models=%d", state, n), func(b *testing.B) {
				first, steady := benchRequests(b, n)
				c := first
				if state == "steady" {
					c = steady
				}
				each(b, n, c)
			})
		}
	}
}

// BenchmarkRunFunction is the function's own cost, in process.
func BenchmarkRunFunction(b *testing.B) {
	benchCases(b, func(b *testing.B, _ int, c benchCase) {
		f := newTestFunction()
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			if _, err := f.RunFunction(ctx, c.req); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkWireBytes reports what a call puts on the wire per model: the
// response (what Crossplane's 4 MB client limit bounds) and the steady
// request. Its loop only measures; the figures are the custom metrics.
func BenchmarkWireBytes(b *testing.B) {
	benchCases(b, func(b *testing.B, n int, c benchCase) {
		var rq, rs int
		for b.Loop() {
			rq, rs = proto.Size(c.req), proto.Size(c.rsp)
		}
		b.ReportMetric(float64(rs)/float64(n), "rsp-B/model")
		b.ReportMetric(float64(rq)/float64(n), "req-B/model")
	})
}

// BenchmarkFloor is the protobuf floor of the same call: marshal and
// unmarshal the request (Crossplane's client, the function's server), then
// marshal and unmarshal the response (the server, Crossplane's client).
func BenchmarkFloor(b *testing.B) {
	benchCases(b, func(b *testing.B, _ int, c benchCase) {
		b.ReportAllocs()
		for b.Loop() {
			floorOnce(b, c)
		}
	})
}

func floorOnce(b *testing.B, c benchCase) {
	rq, err := proto.Marshal(c.req)
	if err != nil {
		b.Fatal(err)
	}
	if err := proto.Unmarshal(rq, &fnv1.RunFunctionRequest{}); err != nil {
		b.Fatal(err)
	}
	rs, err := proto.Marshal(c.rsp)
	if err != nil {
		b.Fatal(err)
	}
	if err := proto.Unmarshal(rs, &fnv1.RunFunctionResponse{}); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkFloorParts splits the floor: the same four steps one by one.
func BenchmarkFloorParts(b *testing.B) {
	benchCases(b, func(b *testing.B, _ int, c benchCase) {
		rq, _ := proto.Marshal(c.req)
		rs, _ := proto.Marshal(c.rsp)
		b.Run("part=req-marshal", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(rq)))
			for b.Loop() {
				_, _ = proto.Marshal(c.req)
			}
		})
		b.Run("part=req-unmarshal", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(rq)))
			for b.Loop() {
				_ = proto.Unmarshal(rq, &fnv1.RunFunctionRequest{})
			}
		})
		b.Run("part=rsp-marshal", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(rs)))
			for b.Loop() {
				_, _ = proto.Marshal(c.rsp)
			}
		})
		b.Run("part=rsp-unmarshal", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(rs)))
			for b.Loop() {
				_ = proto.Unmarshal(rs, &fnv1.RunFunctionResponse{})
			}
		})
	})
}

// benchServer is the real server (function.Serve, insecure, no metrics) on a
// free loopback port, started once per process; function.Serve never returns
// while its listener works, so it stays up until the test binary exits.
var benchServer = sync.OnceValues(func() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := l.Addr().String()
	_ = l.Close()
	errc := make(chan error, 1)
	go func() {
		errc <- function.Serve(&Function{log: logging.NewNopLogger()},
			function.Listen("tcp", addr),
			function.Insecure(true),
			function.MaxRecvMessageSize(64<<20), // the 1000-model request is over 4 MB
			function.WithMetricsServer(""))
	}()
	for range 100 {
		select {
		case err := <-errc:
			return "", err
		default:
		}
		if c, err := net.Dial("tcp", addr); err == nil {
			_ = c.Close()
			return addr, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return "", fmt.Errorf("the function did not listen on %s", addr)
})

// BenchmarkGRPC is a whole call over loopback, as Crossplane makes it: the
// client marshals, the server unmarshals, runs the function and marshals, the
// client unmarshals. callers goroutines call at once over one connection.
func BenchmarkGRPC(b *testing.B) {
	addr, err := benchServer()
	if err != nil {
		b.Fatal(err)
	}
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close() //nolint:errcheck // benchmark teardown
	client := fnv1.NewFunctionRunnerServiceClient(conn)

	for _, state := range []string{"first", "steady"} {
		for _, n := range benchSizes {
			for _, callers := range []int{1, 8} {
				b.Run(fmt.Sprintf("state=%s/models=%d/callers=%d", state, n, callers), func(b *testing.B) {
					first, steady := benchRequests(b, n)
					req := first.req
					if state == "steady" {
						req = steady.req
					}
					b.ReportAllocs()
					var next atomic.Int64
					var wg sync.WaitGroup
					b.ResetTimer()
					for range callers {
						wg.Go(func() {
							for next.Add(1) <= int64(b.N) {
								if _, err := client.RunFunction(context.Background(), req); err != nil {
									b.Error(err)
									return
								}
							}
						})
					}
					wg.Wait()
				})
			}
		}
	}
}

// TestBenchRequestsAreSteady checks that the benchmarks measure what they
// claim: the steady request observes every Job, half of them complete.
func TestBenchRequestsAreSteady(t *testing.T) {
	_, steady := benchRequests(t, 10)
	st := steady.req.GetObserved().GetComposite().GetResource().GetFields()["status"].GetStructValue()
	if got := read.GetString(st, "progress"); got != "5/10" {
		t.Fatalf("steady XR progress = %q, want 5/10", got)
	}
	if n := len(steady.req.GetObserved().GetResources()); n != 15 {
		t.Fatalf("steady request observes %d resources, want 10 Jobs, the script's ConfigMap and the four progress objects", n)
	}
	if n := len(jobResources(steady.rsp)); n != 10 {
		t.Fatalf("steady response desires %d Jobs, want 10", n)
	}
	if got := read.GetString(steady.rsp.GetDesired().GetComposite().GetResource().GetFields()["status"].GetStructValue(), "progress"); got != "5/10" {
		t.Fatalf("steady response progress = %q, want 5/10", got)
	}
}

// BenchmarkRSS is the resident memory of the function's binary, built and
// started as a process (--insecure, no metrics, at each --gc-percent), while
// it serves b.N gRPC calls of the 10-model (at each --gc-percent) or the
// 1000-model (at Go's default) steady-state request one after another: VmRSS
// before the first call (idle-MiB), then VmHWM, the peak (peak-MiB), and
// VmRSS (rss-MiB) after the last. What is resident depends on when the
// collector and the scavenger ran, so on the machine's load: these are
// figures to read (docs/performance.md); TestCallsRetainNoMemory is the bound
// a test can hold.
//
//	go test -run '^$' -bench '^BenchmarkRSS$/^models=10$/' -benchtime 10000x -benchmem .
//	go test -run '^$' -bench '^BenchmarkRSS$/^models=1000$/' -benchtime 30x -benchmem .
func BenchmarkRSS(b *testing.B) {
	for _, c := range []struct {
		models int
		gc     string
	}{{10, "100"}, {10, "50"}, {10, "30"}, {1000, "100"}} {
		_, steady := benchRequests(b, c.models)
		gc := c.gc
		b.Run(fmt.Sprintf("models=%d/gc-percent=%s", c.models, gc), func(b *testing.B) {
			addr, pid := startFunction(b, "--gc-percent="+gc)
			mib := func(field string) float64 {
				b.Helper()
				status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
				if err != nil {
					b.Fatal(err)
				}
				for _, line := range strings.Split(string(status), "\n") {
					if v, ok := strings.CutPrefix(line, field+":"); ok {
						var kB float64
						if _, err := fmt.Sscanf(v, "%f kB", &kB); err != nil {
							b.Fatalf("/proc/%d/status %s: %v", pid, line, err)
						}
						return kB / 1024
					}
				}
				b.Fatalf("/proc/%d/status has no %s", pid, field)
				return 0
			}
			idle := mib("VmRSS")
			conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close() //nolint:errcheck // benchmark teardown
			client := fnv1.NewFunctionRunnerServiceClient(conn)
			for b.Loop() {
				if _, err := client.RunFunction(context.Background(), steady.req); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(idle, "idle-MiB")
			b.ReportMetric(mib("VmHWM"), "peak-MiB")
			b.ReportMetric(mib("VmRSS"), "rss-MiB")
		})
	}
}

// TestCallsRetainNoMemory: a call keeps nothing once it answered. Over 100
// calls, each for another ModelDownload (a cache keyed by XR would grow), the
// live heap after two full collections grows by less than 64 KiB, about 650
// bytes a call, where one 10-model request is about 50 KB; and no goroutine
// is left behind. Live memory after collection counts only what is
// reachable, so unlike resident memory (BenchmarkRSS) it does not depend on
// when the collector ran.
func TestCallsRetainNoMemory(t *testing.T) {
	const calls, bound = 100, 64 << 10
	_, steady := benchRequests(t, 10)
	f := newTestFunction()
	call := func(i int) {
		req := proto.Clone(steady.req).(*fnv1.RunFunctionRequest)
		md := req.GetObserved().GetComposite().GetResource().GetFields()["metadata"].GetStructValue()
		md.Fields["name"] = str(fmt.Sprintf("cache-%d", i))
		md.Fields["uid"] = str(fmt.Sprintf("xr-uid-%d", i))
		if _, err := f.RunFunction(context.Background(), req); err != nil {
			t.Fatal(err)
		}
	}
	live := func() (uint64, int) {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc, runtime.NumGoroutine()
	}
	// Whatever the first calls set up once (a sync.Once, the script's text).
	call(-1)
	heap, goroutines := live()
	for i := range calls {
		call(i)
	}
	heapAfter, goroutinesAfter := live()
	t.Logf("after %d calls: live heap %+d bytes, goroutines %d to %d", calls, int64(heapAfter)-int64(heap), goroutines, goroutinesAfter)
	if grown := int64(heapAfter) - int64(heap); grown >= bound || goroutinesAfter > goroutines {
		t.Fatalf("after %d calls the live heap grew by %d bytes (bound %d) and goroutines went from %d to %d: a call retains memory",
			calls, grown, bound, goroutines, goroutinesAfter)
	}
}

// BenchmarkQueue is what the download queue costs: the steady request of
// benchRequests as it is (queue=off), and with limits that admit every model,
// so the output is the same (queue=on): settings.maxParallel, the Input's
// namespace limit, the namespace's Jobs in the request, and ten peers with as
// many models in all queued for the namespace.
func BenchmarkQueue(b *testing.B) {
	for _, n := range []int{100, 1000} {
		_, steady := benchRequests(b, n)
		on := proto.Clone(steady.req).(*fnv1.RunFunctionRequest)
		settings := read.Get(on.GetObserved().GetComposite().GetResource(), "spec", "settings").GetStructValue()
		settings.Fields["maxParallel"] = structpb.NewNumberValue(float64(n))
		on.Input.Fields["maxActiveJobsPerNamespace"] = structpb.NewNumberValue(float64(10 * n))
		jobs := &fnv1.Resources{}
		for _, k := range sortedKeys(on.GetObserved().GetResources()) {
			if r := on.GetObserved().GetResources()[k]; read.GetString(r.GetResource(), "kind") == "Job" {
				jobs.Items = append(jobs.Items, r)
			}
		}
		on.RequiredResources[read.RequirementNamespaceJobs] = jobs
		for p := range 10 {
			on.RequiredResources[read.RequirementPeers].Items = append(on.RequiredResources[read.RequirementPeers].Items, queuedPeer(p, n/10))
		}
		f := newTestFunction()
		want, err := f.RunFunction(context.Background(), steady.req)
		if err != nil {
			b.Fatal(err)
		}
		got, err := f.RunFunction(context.Background(), on)
		if err != nil {
			b.Fatal(err)
		}
		if diff := cmp.Diff(want.GetDesired(), got.GetDesired(), protocmp.Transform()); diff != "" {
			b.Fatalf("limits that admit every model changed the desired state (-off +on):\n%s", diff)
		}
		for _, c := range []struct {
			queue string
			req   *fnv1.RunFunctionRequest
		}{{"off", steady.req}, {"on", on}} {
			b.Run(fmt.Sprintf("models=%d/queue=%s", n, c.queue), func(b *testing.B) {
				ctx := context.Background()
				b.ReportAllocs()
				for b.Loop() {
					if _, err := f.RunFunction(ctx, c.req); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// queuedPeer is a peer ModelDownload whose n models wait for the namespace.
func queuedPeer(p, n int) *fnv1.Resource {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: hfops.kamal.dev/v1alpha1\nkind: ModelDownload\nmetadata:\n  name: peer-%d\n  namespace: ml\n  uid: peer-uid-%d\n", p, p)
	b.WriteString("spec:\n  storagePVC: other\n  models:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - name: peer-%d/m-%d\n", p, i)
	}
	b.WriteString("status:\n  models:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - {name: peer-%d/m-%d, phase: Pending, queue: Namespace, message: \"%s%d ahead; %s (10)\"}\n", p, i, decide.QueuedPrefix, i, decide.NamespaceLimitReached)
	}
	return &fnv1.Resource{Resource: mustStruct(b.String())}
}

// BenchmarkJobManifest: the Jobs of 100 models made as RunFunction makes them (manifest,
// sharing what they have in common) against converting each typed Job (build.AsUnstructured of
// build), in one run, so the ratio holds whatever the machine. Each op makes all 100.
func BenchmarkJobManifest(b *testing.B) {
	var models strings.Builder
	for i := range 100 {
		fmt.Fprintf(&models, "- name: org/model-%d\n  include: ['*.json', '*.safetensors']\n", i)
	}
	spec, errs := read.ParseSpec(mustStruct("apiVersion: hfops.kamal.dev/v1alpha1\nkind: ModelDownload\nmetadata: {name: md, namespace: ns}\nspec:\n" +
		indent("storagePVC: models\nhfTokenRef: {name: hf, key: token}\nmodels:\n"+models.String())))
	if len(errs) > 0 {
		b.Fatal(errs)
	}
	plat, errs := read.ResolvePlatform(&v1beta1.Input{}, defaultImage())
	if len(errs) > 0 {
		b.Fatal(errs)
	}
	h := naming.Hashes{Content: "c", Config: "c", Spec: "s"}
	for _, way := range []string{"typed", "shared"} {
		b.Run("way="+way, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				jb := build.NewBuilder("md", "ns", &spec, plat)
				jb.ScriptMap, jb.ProgressMap = "script", "progress"
				for i := range spec.Models {
					m := &spec.Models[i]
					if way == "typed" {
						_ = build.AsUnstructured(jb.Job(m, "job", h, naming.Attempt{Number: 1, Hash: "h"}))
					} else {
						_ = jb.Manifest(m, "job", h, naming.Attempt{Number: 1, Hash: "h"})
					}
				}
			}
		})
	}
}

// BenchmarkResync is the cost of settings.resyncInterval to a steady call:
// the steady request as it is (off), and with the interval set and the
// status its first call wrote (on: every completed model's check decided,
// none due).
func BenchmarkResync(b *testing.B) {
	for _, n := range []int{100, 1000} {
		_, steady := benchRequests(b, n)
		on := proto.Clone(steady.req).(*fnv1.RunFunctionRequest)
		xr := on.GetObserved().GetComposite().GetResource()
		// Not part of the hash: the Jobs are the same.
		read.Get(xr, "spec", "settings").GetStructValue().Fields["resyncInterval"] = structpb.NewStringValue("24h")
		f := newTestFunction()
		rsp, err := f.RunFunction(context.Background(), on)
		if err != nil {
			b.Fatal(err)
		}
		xr.Fields["status"] = rsp.GetDesired().GetComposite().GetResource().GetFields()["status"]
		for name, req := range map[string]*fnv1.RunFunctionRequest{"off": steady.req, "on": on} {
			b.Run(fmt.Sprintf("resync=%s/models=%d", name, n), func(b *testing.B) {
				ctx := context.Background()
				b.ReportAllocs()
				for b.Loop() {
					if _, err := f.RunFunction(ctx, req); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
