package hubtest

import (
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
)

// The tests here drive the Hub over HTTP with Go's client; realhf_test.go
// drives it with the real hf CLI.

const (
	commit = "4f1c7a1e0d3b2c5a6978b8c9d0e1f2a3b4c5d6e7"
	// token is the private repos' token: it must show nowhere in what the
	// Hub logs or answers.
	token = "hf_HubtestPrivateTokenNeverShown0123456789"
)

var files = map[string]string{
	"config.json":       `{"model_type":"tiny"}`,
	"weights/model.bin": strings.Repeat("0123456789abcdef", 64),
}

// testHub is a Hub and the client that reaches it.
type testHub struct {
	*Hub
	client *http.Client
}

// newHub is a Hub on loopback, closed when the test ends.
func newHub(t *testing.T) *testHub {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening on loopback: %v", err)
	}
	return newHubOn(t, l)
}

// newHubOn is a Hub on l, reached over the network, closed when the test ends.
func newHubOn(t *testing.T, l net.Listener) *testHub {
	t.Helper()
	h := New(l)
	t.Cleanup(h.Close)
	return &testHub{Hub: h, client: http.DefaultClient}
}

// pipeHub is a Hub for a test in a synctest bubble, on a pipeListener, with a
// client of its own that dials it; both closed when the test ends. In the
// bubble's fake time a test sees exactly when the Hub sends what, and whether
// it waits at all, however busy the machine.
func pipeHub(t *testing.T) (*testHub, *pipeListener) {
	t.Helper()
	l := newPipeListener(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 80})
	h := New(l)
	tr := &http.Transport{DialContext: l.dial}
	t.Cleanup(func() {
		h.Close()
		tr.CloseIdleConnections()
	})
	return &testHub{Hub: h, client: &http.Client{Transport: tr}}, l
}

// reply is what a test compares of an answer: the status, the headers that
// hf reads, and the body.
type reply struct {
	Status int
	Header map[string]string
	Body   string
}

// replyHeaders are the headers reply keeps.
var replyHeaders = []string{
	"Content-Length", "Content-Range", "Content-Type", "ETag", "Link", "RateLimit", "RateLimit-Policy", "X-Error-Code", "X-Error-Message", "X-Linked-Etag", "X-Linked-Size", "X-Repo-Commit",
	"X-Xet-Access-Token", "X-Xet-Cas-Url", "X-Xet-Hash", "X-Xet-Token-Expiration",
}

// get sends method path to h with the Authorization header auth (none when
// empty) and returns the answer.
func get(t *testing.T, h *testHub, method, path, auth string) reply {
	t.Helper()
	return send(t, h, method, path, auth, "")
}

// send sends method path to h with the Authorization header auth and the
// Range header rng (none when empty), and returns the answer.
func send(t *testing.T, h *testHub, method, path, auth, rng string) reply {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, h.URL()+path, http.NoBody)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, path, err)
	}
	r := reply{Status: resp.StatusCode, Header: map[string]string{}, Body: string(body)}
	for _, k := range replyHeaders {
		if v := resp.Header.Get(k); v != "" {
			r.Header[k] = v
		}
	}
	return r
}

// stream sends GET path to h in ctx and returns the answer, 200 OK, its body
// for the test to read; closed when the test ends.
func stream(ctx context.Context, t *testing.T, h *testHub, path string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.URL()+path, http.NoBody)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: the headers did not come: %v", path, err)
	}
	t.Cleanup(func() { _ = resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d", path, resp.StatusCode)
	}
	return resp
}

// pipeListener is a listener at any address that accepts only what its dial
// connects, in memory (net.Pipe): a synctest bubble's time advances only
// while every goroutine waits on the bubble's channels and timers, which a
// goroutine blocked on a socket does not.
type pipeListener struct {
	addr   net.Addr
	conns  chan net.Conn
	once   sync.Once
	closed chan struct{}
}

func newPipeListener(addr net.Addr) *pipeListener {
	return &pipeListener{addr: addr, conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return l.addr }

// dial connects to the listener, as an http.Transport's DialContext; it fails
// once the listener is closed.
func (l *pipeListener) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	server, client := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.closed:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// TestURL: the URL is http:// and the listener's address as it is, whatever
// the address (the e2e suite listens on a bridge's gateway), and Close closes
// the listener.
func TestURL(t *testing.T) {
	for _, tc := range []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}, "http://127.0.0.1:8080"},
		{&net.TCPAddr{IP: net.IPv4(172, 18, 0, 1), Port: 31337}, "http://172.18.0.1:31337"},
		{&net.TCPAddr{IP: net.ParseIP("fd00::1"), Port: 443}, "http://[fd00::1]:443"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			l := newPipeListener(tc.addr)
			h := New(l)
			if diff := cmp.Diff(tc.want, h.URL()); diff != "" {
				t.Errorf("URL() (-want +got):\n%s", diff)
			}
			h.Close()
			select {
			case <-l.closed:
			default:
				t.Error("Close left the listener open")
			}
		})
	}
}

// TestRoutes: each endpoint hf calls, for a public, a failing and a private
// repo, answers as the package's doc says, and what no route answers is a
// 404 recorded as unknown. A private repo answers 401 RepoNotFound on all its
// endpoints to a request without its token, or with another.
func TestRoutes(t *testing.T) {
	h := newHub(t)
	h.Set("model", "org/pub", Repo{Commit: commit, Files: files})
	h.Set("dataset", "org/data", Repo{Commit: commit, Files: map[string]string{"a/b.csv": "x,y\n"}})
	h.Set("model", "org/gated", Repo{Fail: &Error{Status: 403, Code: "GatedRepo", Message: "Access to model org/gated is restricted."}})
	h.Set("model", "org/priv", Repo{Commit: commit, Files: files, Token: token})
	h.Set("model", "org/lfs", Repo{Commit: commit, Files: files, LFS: []string{"weights/model.bin"}})

	jsonHeader := func(body string) map[string]string {
		return map[string]string{"Content-Type": "application/json; charset=utf-8", "Content-Length": strconv.Itoa(len(body))}
	}
	errorReply := func(e Error) reply {
		body := `{"error":"` + e.Message + `"}`
		hdr := jsonHeader(body)
		hdr["X-Error-Message"] = e.Message
		if e.Code != "" {
			hdr["X-Error-Code"] = e.Code
		}
		return reply{Status: e.Status, Header: hdr, Body: body}
	}
	fileReply := func(content string, withBody bool) reply {
		r := reply{Status: 200, Header: map[string]string{
			"Content-Type":   "application/octet-stream",
			"Content-Length": strconv.Itoa(len(content)),
			"ETag":           `"` + GitBlobID(content) + `"`,
			"X-Repo-Commit":  commit,
		}}
		if withBody {
			r.Body = content
		}
		return r
	}
	revision := `{"id":"org/pub","sha":"` + commit + `","siblings":[{"rfilename":"config.json"},{"rfilename":"weights/model.bin"}]}`
	privRevision := strings.Replace(revision, "org/pub", "org/priv", 1)
	tree := `[{"oid":"` + GitBlobID(files["config.json"]) + `","path":"config.json","size":21,"type":"file"},` +
		`{"oid":"` + GitBlobID(files["weights/model.bin"]) + `","path":"weights/model.bin","size":1024,"type":"file"}]`
	big := files["weights/model.bin"]
	pointer := "version https://git-lfs.github.com/spec/v1\noid sha256:" + SHA256(big) + "\nsize 1024\n"
	lfsEntry := `"lfs":{"oid":"` + SHA256(big) + `","pointerSize":` + strconv.Itoa(len(pointer)) + `,"size":1024}`
	lfsTree := `[{"oid":"` + GitBlobID(files["config.json"]) + `","path":"config.json","size":21,"type":"file"},` +
		`{` + lfsEntry + `,"oid":"` + GitBlobID(pointer) + `","path":"weights/model.bin","size":1024,"type":"file"}]`
	blobsRevision := `{"id":"org/lfs","sha":"` + commit + `","siblings":[{"blobId":"` + GitBlobID(files["config.json"]) + `","rfilename":"config.json","size":21},` +
		`{"blobId":"` + GitBlobID(pointer) + `","lfs":{"pointerSize":` + strconv.Itoa(len(pointer)) + `,"sha256":"` + SHA256(big) + `","size":1024},"rfilename":"weights/model.bin","size":1024}]}`
	lfsFile := fileReply(big, true)
	lfsFile.Header["ETag"] = `"` + GitBlobID(pointer) + `"`
	lfsFile.Header["X-Linked-Etag"] = `"` + SHA256(big) + `"`
	lfsFile.Header["X-Linked-Size"] = "1024"
	lfsHead := lfsFile
	lfsHead.Body = ""
	harnesses := `{"harnesses":{},"standardEnvVars":[]}`
	notFound := reply{Status: 404, Header: map[string]string{"Content-Type": "text/plain; charset=utf-8", "Content-Length": "19"}, Body: "404 page not found\n"}
	denied := errorReply(private)
	deniedHead := denied
	deniedHead.Body = ""

	for _, tc := range []struct {
		name    string
		method  string
		path    string
		auth    string
		want    reply
		unknown bool
	}{
		{name: "agent harnesses", path: "/api/agent-harnesses", want: reply{200, jsonHeader(harnesses), harnesses}},
		{name: "revision", path: "/api/models/org/pub/revision/main", want: reply{200, jsonHeader(revision), revision}},
		{name: "revision with slashes", path: "/api/models/org/pub/revision/refs%2Fpr%2F1", want: reply{200, jsonHeader(revision), revision}},
		{name: "tree", path: "/api/models/org/pub/tree/" + commit + "?recursive=true", want: reply{200, jsonHeader(tree), tree}},
		{name: "tree at another commit", path: "/api/models/org/pub/tree/main?recursive=true", want: notFound, unknown: true},
		{name: "tree not recursive", path: "/api/models/org/pub/tree/" + commit, want: notFound, unknown: true},
		{name: "file metadata", method: http.MethodHead, path: "/org/pub/resolve/" + commit + "/weights/model.bin", want: fileReply(files["weights/model.bin"], false)},
		{name: "file", path: "/org/pub/resolve/" + commit + "/weights/model.bin", want: fileReply(files["weights/model.bin"], true)},
		{name: "file at a branch", path: "/org/pub/resolve/main/config.json", want: fileReply(files["config.json"], true)},
		{name: "dataset file", path: "/datasets/org/data/resolve/" + commit + "/a/b.csv", want: fileReply("x,y\n", true)},
		{name: "dataset as a model", path: "/org/data/resolve/" + commit + "/a/b.csv", want: notFound, unknown: true},
		{name: "missing file", path: "/org/pub/resolve/" + commit + "/nope", want: notFound, unknown: true},
		{name: "missing repo", path: "/api/models/org/nope/revision/main", want: notFound, unknown: true},
		{name: "revision without blobs", path: "/api/models/org/lfs/revision/main", want: reply{200, jsonHeader(strings.Replace(revision, "org/pub", "org/lfs", 1)), strings.Replace(revision, "org/pub", "org/lfs", 1)}},
		{name: "revision with blobs", path: "/api/models/org/lfs/revision/main?blobs=true", want: reply{200, jsonHeader(blobsRevision), blobsRevision}},
		{name: "LFS tree", path: "/api/models/org/lfs/tree/" + commit + "?recursive=true", want: reply{200, jsonHeader(lfsTree), lfsTree}},
		{name: "LFS file metadata", method: http.MethodHead, path: "/org/lfs/resolve/" + commit + "/weights/model.bin", want: lfsHead},
		{name: "LFS file", path: "/org/lfs/resolve/main/weights/model.bin", want: lfsFile},
		{name: "regular file of an LFS repo", path: "/org/lfs/resolve/main/config.json", want: fileReply(files["config.json"], true)},
		{name: "failing revision", path: "/api/models/org/gated/revision/main", want: errorReply(Error{403, "GatedRepo", "Access to model org/gated is restricted."})},
		{name: "failing repo's tree", path: "/api/models/org/gated/tree/" + commit + "?recursive=true", want: notFound, unknown: true},
		{name: "POST", method: http.MethodPost, path: "/api/models/org/pub/revision/main", want: notFound, unknown: true},

		{name: "private revision without token", path: "/api/models/org/priv/revision/main", want: denied},
		{name: "private revision, other token", path: "/api/models/org/priv/revision/main", auth: "Bearer hf_other", want: denied},
		{name: "private revision, token without Bearer", path: "/api/models/org/priv/revision/main", auth: token, want: denied},
		{name: "private revision, token as a prefix", path: "/api/models/org/priv/revision/main", auth: "Bearer " + token + "x", want: denied},
		{name: "private revision", path: "/api/models/org/priv/revision/main", auth: "Bearer " + token, want: reply{200, jsonHeader(privRevision), privRevision}},
		{name: "private tree without token", path: "/api/models/org/priv/tree/" + commit + "?recursive=true", want: denied},
		{name: "private tree", path: "/api/models/org/priv/tree/" + commit + "?recursive=true", auth: "Bearer " + token, want: reply{200, jsonHeader(tree), tree}},
		{name: "private file metadata without token", method: http.MethodHead, path: "/org/priv/resolve/main/config.json", want: deniedHead},
		{name: "private file metadata", method: http.MethodHead, path: "/org/priv/resolve/main/config.json", auth: "Bearer " + token, want: fileReply(files["config.json"], false)},
		{name: "private file, other token", path: "/org/priv/resolve/" + commit + "/config.json", auth: "Bearer hf_other", want: denied},
		{name: "private file", path: "/org/priv/resolve/" + commit + "/config.json", auth: "Bearer " + token, want: fileReply(files["config.json"], true)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			method := tc.method
			if method == "" {
				method = http.MethodGet
			}
			_, unknownBefore := h.Seen()
			if diff := cmp.Diff(tc.want, get(t, h, method, tc.path, tc.auth)); diff != "" {
				t.Errorf("%s %s (-want +got):\n%s", method, tc.path, diff)
			}
			requests, unknown := h.Seen()
			if diff := cmp.Diff(method+" "+tc.path, requests[len(requests)-1]); diff != "" {
				t.Errorf("the last request logged (-want +got):\n%s", diff)
			}
			if got := len(unknown) > len(unknownBefore); got != tc.unknown {
				t.Errorf("recorded as unknown: %v, want %v", got, tc.unknown)
			}
		})
	}
}

// TestTokenNeverShown: a private repo's token, or any credential a request
// carries, shows neither in the request log nor in an answer, even when a
// request puts it in its path or query.
func TestTokenNeverShown(t *testing.T) {
	h := newHub(t)
	h.Set("model", "org/priv", Repo{Commit: commit, Files: files, Token: token})
	const other = "hf_AnotherTokenThatShowsNowhere42"
	var answers []reply
	for _, tc := range []struct{ method, path, auth string }{
		{http.MethodGet, "/api/models/org/priv/revision/main", ""},
		{http.MethodGet, "/api/models/org/priv/revision/main", "Bearer " + token},
		{http.MethodGet, "/api/models/org/priv/revision/main", "Bearer " + other},
		{http.MethodHead, "/org/priv/resolve/main/config.json", "Bearer " + other},
		{http.MethodGet, "/org/priv/resolve/main/config.json?token=" + token, ""},
		{http.MethodGet, "/api/models/org/" + other + "/revision/main", "Bearer " + other},
	} {
		answers = append(answers, get(t, h, tc.method, tc.path, tc.auth))
	}
	requests, unknown := h.Seen()
	want := []string{
		"GET /api/models/org/priv/revision/main",
		"GET /api/models/org/priv/revision/main",
		"GET /api/models/org/priv/revision/main",
		"HEAD /org/priv/resolve/main/config.json",
		"GET /org/priv/resolve/main/config.json?token=<redacted>",
		"GET /api/models/org/<redacted>/revision/main",
	}
	if diff := cmp.Diff(want, requests); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want[5:], unknown); diff != "" {
		t.Errorf("unknown (-want +got):\n%s", diff)
	}
	for i, a := range answers {
		for _, secret := range []string{token, other} {
			if strings.Contains(a.Body, secret) || strings.Contains(strings.Join(mapValues(a.Header), "\n"), secret) {
				t.Errorf("answer %d shows a token: %+v", i, a)
			}
		}
	}
}

func mapValues(m map[string]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// TestSeenFor: a repo's requests are those of its revision, tree and file
// endpoints, answered or not, in order; not those of a repo whose id starts
// alike, of the dataset of the same id, or of no repo.
func TestSeenFor(t *testing.T) {
	h := newHub(t)
	h.Set("model", "org/a", Repo{Commit: commit, Files: files})
	h.Set("model", "org/ab", Repo{Commit: commit, Files: files})
	h.Set("dataset", "org/a", Repo{Commit: commit, Files: files})
	for _, p := range []string{
		"/api/agent-harnesses",
		"/api/models/org/a/revision/main",
		"/api/models/org/ab/revision/main",
		"/api/datasets/org/a/revision/main",
		"/api/models/org/a/tree/" + commit + "?recursive=true",
		"/org/ab/resolve/main/config.json",
		"/datasets/org/a/resolve/main/config.json",
		"/org/a/resolve/main/nope",
		"/org/a/resolve/" + commit + "/config.json",
	} {
		get(t, h, http.MethodGet, p, "")
	}
	for _, tc := range []struct {
		repoType, repoID string
		want             []string
	}{
		{"model", "org/a", []string{
			"GET /api/models/org/a/revision/main",
			"GET /api/models/org/a/tree/" + commit + "?recursive=true",
			"GET /org/a/resolve/main/nope",
			"GET /org/a/resolve/" + commit + "/config.json",
		}},
		{"dataset", "org/a", []string{"GET /api/datasets/org/a/revision/main", "GET /datasets/org/a/resolve/main/config.json"}},
		{"model", "org/none", nil},
	} {
		if diff := cmp.Diff(tc.want, h.SeenFor(tc.repoType, tc.repoID)); diff != "" {
			t.Errorf("SeenFor(%q, %q) (-want +got):\n%s", tc.repoType, tc.repoID, diff)
		}
	}
}

// TestSetCopies: what a test changes in a Repo after Set does not change what
// the Hub serves.
func TestSetCopies(t *testing.T) {
	h := newHub(t)
	fs := map[string]string{"a.txt": "a"}
	fail := &Error{Status: 500, Message: "down"}
	h.Set("model", "org/a", Repo{Commit: commit, Files: fs})
	h.Set("model", "org/b", Repo{Fail: fail})
	fs["a.txt"], fs["b.txt"] = "changed", "new"
	fail.Status, fail.Message = 403, "changed"

	got := []reply{
		get(t, h, http.MethodGet, "/org/a/resolve/main/a.txt", ""),
		get(t, h, http.MethodGet, "/org/a/resolve/main/b.txt", ""),
		get(t, h, http.MethodGet, "/api/models/org/b/revision/main", ""),
	}
	want := []int{200, 404, 500}
	for i := range got {
		if got[i].Status != want[i] {
			t.Errorf("answer %d: status %d, want %d", i, got[i].Status, want[i])
		}
	}
	if diff := cmp.Diff("a", got[0].Body); diff != "" {
		t.Errorf("a.txt (-want +got):\n%s", diff)
	}
}

// TestSetLeavesRequestsInFlight: what Set changes, the requests that come next
// get; a request already being answered keeps the repo it was routed with (a
// slow body goes on at its pace).
func TestSetLeavesRequestsInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _ := pipeHub(t)
		h.Set("model", "org/m", Repo{Commit: commit, Files: map[string]string{"f": "abc"}, Rate: 1})
		start := time.Now()
		slow := stream(t.Context(), t, h, "/org/m/resolve/main/f")
		h.Set("model", "org/m", Repo{Commit: commit, Files: map[string]string{"f": "abc"}})
		if r := get(t, h, http.MethodGet, "/org/m/resolve/main/f", ""); r.Body != "abc" || time.Since(start) != 0 {
			t.Errorf("after Set: %q after %v, want the whole file at once", r.Body, time.Since(start))
		}
		if body, err := io.ReadAll(slow.Body); err != nil || string(body) != "abc" || time.Since(start) != 3*time.Second {
			t.Errorf("the request before Set: %q (%v) after %v, want the file at a byte a second", body, err, time.Since(start))
		}
	})
}

// TestSetPanics: Set refuses repo types and ids the Hub could never serve.
func TestSetPanics(t *testing.T) {
	for _, tc := range []struct{ repoType, repoID string }{
		{"models", "org/name"},
		{"space", "org/name"},
		{"model", "name"},
		{"model", "org/name/more"},
		{"model", "/name"},
		{"dataset", "org/"},
	} {
		t.Run(tc.repoType+" "+tc.repoID, func(t *testing.T) {
			h := newHub(t)
			defer func() {
				if recover() == nil {
					t.Errorf("Set(%q, %q) did not panic", tc.repoType, tc.repoID)
				}
			}()
			h.Set(tc.repoType, tc.repoID, Repo{Commit: commit})
		})
	}
}

// TestRate: a file body comes whole, on the pacer's schedule: in chunks of
// about a tenth of a second's worth (at most 64 KiB, at least a byte), each
// sent no sooner than the rate allows, and the next as soon as it does; the
// metadata (HEAD) of a slow file comes at once. The bubble's fake clock makes
// the schedule exact however busy the machine.
func TestRate(t *testing.T) {
	// A step is how many bytes of the body the client holds once the bubble's
	// clock reaches At after the request.
	type step struct {
		At    time.Duration
		Bytes int
	}
	for _, tc := range []struct {
		name       string
		size, rate int
		want       []step // each At a whole microsecond: the pacer computes in floating point
	}{
		{"a byte a second", 1, 1, []step{{time.Second, 1}}},
		{"chunks of a tenth", 3000, 10000, []step{{100 * time.Millisecond, 1000}, {200 * time.Millisecond, 2000}, {300 * time.Millisecond, 3000}}},
		{"chunks at most 64 KiB", 224 << 10, 2 << 20, []step{
			{31250 * time.Microsecond, 64 << 10}, {62500 * time.Microsecond, 128 << 10}, {93750 * time.Microsecond, 192 << 10}, {109375 * time.Microsecond, 224 << 10},
		}},
		{"size not a multiple of the chunk", 1000, 4000, []step{{100 * time.Millisecond, 400}, {200 * time.Millisecond, 800}, {250 * time.Millisecond, 1000}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				h, _ := pipeHub(t)
				content := strings.Repeat("x", tc.size)
				h.Set("model", "org/slow", Repo{Commit: commit, Files: map[string]string{"f": content}, Rate: tc.rate})

				start := time.Now()
				if r := get(t, h, http.MethodHead, "/org/slow/resolve/main/f", ""); r.Status != http.StatusOK {
					t.Errorf("HEAD: status %d", r.Status)
				}
				if took := time.Since(start); took != 0 {
					t.Errorf("HEAD waited %v", took)
				}

				resp := stream(t.Context(), t, h, "/org/slow/resolve/main/f")
				var got []step
				var body []byte
				buf := make([]byte, 32<<10)
				for {
					n, err := resp.Body.Read(buf)
					if n > 0 {
						body = append(body, buf[:n]...)
						at := time.Since(start).Round(time.Microsecond)
						if len(got) > 0 && got[len(got)-1].At == at {
							got[len(got)-1].Bytes = len(body)
						} else {
							got = append(got, step{at, len(body)})
						}
					}
					if err == io.EOF {
						break
					}
					if err != nil {
						t.Fatalf("reading the body: %v", err)
					}
				}
				if diff := cmp.Diff(tc.want, got); diff != "" {
					t.Errorf("the body over time (-want +got):\n%s", diff)
				}
				if string(body) != content {
					t.Errorf("the body: %d bytes, not the file's %d", len(body), tc.size)
				}
			})
		})
	}
}

// TestSlowBodyStops: a slow body stops as soon as the client goes away, or
// the Hub is closed, and Close returns at once whatever the Hub is doing: in
// the bubble's fake clock, neither waits on any timer (the pacer's would
// show as time gone by).
func TestSlowBodyStops(t *testing.T) {
	for _, tc := range []struct {
		name string
		// stop ends the transfer the test started on h with the client's
		// cancel.
		stop func(h *Hub, cancel context.CancelFunc)
	}{
		{"client goes away", func(_ *Hub, cancel context.CancelFunc) { cancel() }},
		{"Hub closed", func(h *Hub, _ context.CancelFunc) { h.Close() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				h, _ := pipeHub(t)
				// 1 MiB at 1 KiB/s: some 17 minutes.
				h.Set("model", "org/slow", Repo{Commit: commit, Files: map[string]string{"big.bin": strings.Repeat("x", 1<<20)}, Rate: 1 << 10})
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				resp := stream(ctx, t, h, "/org/slow/resolve/main/big.bin")
				if _, err := io.ReadFull(resp.Body, make([]byte, 100)); err != nil {
					t.Fatalf("reading the first bytes: %v", err)
				}
				if n := busy(h); n != 1 {
					t.Fatalf("%d requests in flight, want 1", n)
				}

				start := time.Now()
				tc.stop(h.Hub, cancel)
				// Once whatever the stop set going has run, no request may be
				// left in flight.
				synctest.Wait()
				if n := busy(h); n != 0 {
					t.Fatalf("%d requests still answered after the stop", n)
				}
				if _, err := io.ReadAll(resp.Body); err == nil {
					t.Error("the client read the whole body")
				}
				h.Close()
				if took := time.Since(start); took != 0 {
					t.Errorf("the stop and Close waited %v", took)
				}
			})
		})
	}
}

// TestClosePrompt: Close returns at once, waiting on no timer (such as the
// server's minute to read a request's headers), and the Hub answers no more,
// whatever its connections are doing: none, an idle keep-alive one, one that
// never sent a request, one in the middle of its headers.
func TestClosePrompt(t *testing.T) {
	for _, tc := range []struct {
		name string
		open func(t *testing.T, h *testHub, l *pipeListener)
	}{
		{"no connection", func(*testing.T, *testHub, *pipeListener) {}},
		{"idle connection", func(t *testing.T, h *testHub, _ *pipeListener) {
			get(t, h, http.MethodGet, "/api/agent-harnesses", "")
		}},
		{"silent connection", func(t *testing.T, _ *testHub, l *pipeListener) { dial(t, l) }},
		{"half a request", func(t *testing.T, _ *testHub, l *pipeListener) {
			if _, err := io.WriteString(dial(t, l), "GET /api/agent-harnesses HTTP/1.1\r\nHost: x\r\n"); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				h, l := pipeHub(t)
				tc.open(t, h, l)
				start := time.Now()
				h.Close()
				if took := time.Since(start); took != 0 {
					t.Errorf("Close waited %v", took)
				}
				h.Close() // again: nothing
				if c, err := l.dial(t.Context(), "", ""); err == nil {
					_ = c.Close()
					t.Error("the Hub still accepts connections")
				}
			})
		})
	}
}

// dial connects to l, closing the connection when the test ends.
func dial(t *testing.T, l *pipeListener) net.Conn {
	t.Helper()
	c, err := l.dial(t.Context(), "", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// busy is how many requests h is answering.
func busy(h *testHub) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.active
}

// TestRateLimit: a rate-limited repo answers its first Count requests for the
// resource 429 with the Hub's RateLimit headers, and then serves them again;
// the other resource is never limited; Set starts the count afresh.
func TestRateLimit(t *testing.T) {
	limited := func(resource string) reply {
		body := `{"error":"You have been rate-limited; you can retry this action in 7 seconds."}`
		return reply{Status: 429, Header: map[string]string{
			"Content-Type": "application/json; charset=utf-8", "Content-Length": strconv.Itoa(len(body)),
			"RateLimit": `"` + resource + `";r=0;t=7`, "RateLimit-Policy": `"fixed window";"` + resource + `";q=500;w=300`,
		}, Body: body}
	}
	for _, tc := range []struct {
		name     string
		resource string
		count    int
		paths    []string
		want     []int
	}{
		{"files twice", "resolvers", 2, []string{"/api/models/org/rl/revision/main", "/org/rl/resolve/main/config.json", "/org/rl/resolve/main/config.json", "/org/rl/resolve/main/config.json"}, []int{200, 429, 429, 200}},
		{"api once", "api", 1, []string{"/org/rl/resolve/main/config.json", "/api/models/org/rl/revision/main", "/api/models/org/rl/tree/" + commit + "?recursive=true"}, []int{200, 429, 200}},
		{"always", "resolvers", -1, []string{"/org/rl/resolve/main/config.json", "/org/rl/resolve/main/config.json", "/org/rl/resolve/main/config.json"}, []int{429, 429, 429}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHub(t)
			repo := Repo{Commit: commit, Files: files, Limit: &RateLimit{Resource: tc.resource, Count: tc.count, Reset: 7, Quota: 500, Window: 300}}
			h.Set("model", "org/rl", repo)
			var got []int
			for _, p := range tc.paths {
				r := get(t, h, http.MethodGet, p, "")
				got = append(got, r.Status)
				if r.Status == 429 {
					if diff := cmp.Diff(limited(tc.resource), r); diff != "" {
						t.Errorf("GET %s (-want +got):\n%s", p, diff)
					}
				}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("statuses (-want +got):\n%s", diff)
			}
			h.Set("model", "org/rl", repo)
			if r := get(t, h, http.MethodGet, tc.paths[len(tc.paths)-1], ""); tc.count > 0 && r.Status != 429 {
				t.Errorf("after Set again: %d, want the count afresh (429)", r.Status)
			}
		})
	}
}

// TestStall: a stalling repo's file bodies send their headers and then
// nothing, until the client goes away, however long it waits (an hour of the
// bubble's fake clock); its metadata (HEAD) comes at once.
func TestStall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _ := pipeHub(t)
		h.Set("model", "org/stall", Repo{Commit: commit, Files: files, Stall: true})
		start := time.Now()
		if r := get(t, h, http.MethodHead, "/org/stall/resolve/main/config.json", ""); r.Status != 200 || r.Header["Content-Length"] != "21" {
			t.Errorf("HEAD: %+v", r)
		}
		if took := time.Since(start); took != 0 {
			t.Errorf("HEAD waited %v", took)
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Hour)
		defer cancel()
		resp := stream(ctx, t, h, "/org/stall/resolve/main/config.json")
		data, err := io.ReadAll(resp.Body)
		if err == nil || len(data) != 0 {
			t.Errorf("read %q, %v; want nothing until the client gives up", data, err)
		}
		if took := time.Since(start); took != time.Hour {
			t.Errorf("the body ended after %v, before the client's hour", took)
		}
		synctest.Wait()
		if n := busy(h); n != 0 {
			t.Errorf("%d stalled bodies still answered after the client went away", n)
		}
	})
}
