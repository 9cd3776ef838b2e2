package script

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hfops/function-hf-download/apis/v1alpha1"
	"github.com/hfops/function-hf-download/hubtest"
)

// The tests here are of the progress reports: a fake Kubernetes API server
// over TLS on loopback (its CA given to the script as EnvProgressCA) takes
// the JSON merge patches of the progress ConfigMap, checking what the
// function's Role allows and what the contract says, and records them.

const (
	progressNS   = "team-a"
	progressCM   = "hf-dl-llama-progress"
	apiToken     = "eyJhbGciOiJSUzI1NiJ9.ServiceAccountTokenNeverShown.c2lnbmF0dXJl"
	apiToken2    = "eyJhbGciOiJSUzI1NiJ9.RotatedServiceAccountToken.c2lnbmF0dXJlMg"
	progressPod  = "hf-dl-llama-model-0-abc12"
	progressHash = "hash-1"
)

// apiMode is how the fake API server answers a report.
type apiMode int

const (
	apiOK      apiMode = iota
	api500             // 500 Internal Server Error
	api403             // 403 Forbidden
	apiRefused         // nothing listens: connection refused
	apiHang            // takes the request and never answers
)

// report is one progress report the fake API server took, or refused.
type report struct {
	At       time.Time
	Token    string // which of the tokens it knew: "1", "2"; "" for another
	Status   int
	Key      string
	Progress Progress
}

type fakeAPI struct {
	t        testing.TB
	srv      *httptest.Server
	addr     string
	mu       sync.Mutex
	mode     apiMode
	tokens   map[string]string // bearer token -> name
	seen     []report          // every request, taken or not
	relisten net.Listener
	// since is when the server started: no report can be older.
	since time.Time
}

// newFakeAPI is a fake API server on host (127.0.0.1 or ::1), closed when
// the test ends.
func newFakeAPI(t testing.TB, host string) *fakeAPI {
	t.Helper()
	a := &fakeAPI{t: t, tokens: map[string]string{apiToken: "1", apiToken2: "2"}, since: time.Now()}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(a.serve))
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatalf("listening on %s: %v", host, err)
	}
	srv.Listener = l
	srv.StartTLS()
	a.srv, a.addr = srv, l.Addr().String()
	t.Cleanup(func() {
		a.mu.Lock()
		if a.relisten != nil {
			_ = a.relisten.Close()
		}
		a.mu.Unlock()
		srv.Close()
	})
	return a
}

// set changes how the server answers; apiRefused closes its listener, and
// any other mode after it listens again on the same address.
func (a *fakeAPI) set(mode apiMode) {
	a.t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case mode == apiRefused && a.mode != apiRefused:
		if a.relisten != nil {
			_ = a.relisten.Close()
			a.relisten = nil
		} else {
			_ = a.srv.Listener.Close()
		}
	case mode != apiRefused && a.mode == apiRefused:
		l, err := net.Listen("tcp", a.addr)
		if err != nil {
			a.t.Fatalf("listening again on %s: %v", a.addr, err)
		}
		a.relisten = l
		go func() { _ = a.srv.Config.Serve(tls.NewListener(l, a.srv.TLS)) }()
	}
	a.mode = mode
}

// jsonNames are the JSON names of a struct's fields, an embedded struct's
// in its place, as encoding/json writes them.
func jsonNames(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous {
			out = append(out, jsonNames(f.Type)...)
			continue
		}
		out = append(out, f.Tag.Get("json"))
	}
	return out
}

func (a *fakeAPI) serve(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	mode := a.mode
	a.mu.Unlock()
	rep := report{At: time.Now()}
	// fail answers with status; a failure that the mode does not ask for
	// is the reporter's fault.
	fail := func(status int, format string, args ...any) {
		rep.Status = status
		a.mu.Lock()
		a.seen = append(a.seen, rep)
		a.mu.Unlock()
		asked := mode == api500 && status == http.StatusInternalServerError || mode == api403 && status == http.StatusForbidden
		if !asked {
			a.t.Errorf("fake API server: "+format, args...)
		}
		http.Error(w, fmt.Sprintf(format, args...), status)
	}
	bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if name, known := a.tokens[bearer]; ok && known {
		rep.Token = name
	} else {
		fail(http.StatusUnauthorized, "%s %s: bad Authorization header", r.Method, r.URL)
		return
	}
	if want := "/api/v1/namespaces/" + progressNS + "/configmaps/" + progressCM; r.Method != http.MethodPatch || r.URL.Path != want || r.URL.RawQuery != "" {
		fail(http.StatusForbidden, "%s %s, want PATCH %s", r.Method, r.URL, want)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/merge-patch+json" {
		fail(http.StatusUnsupportedMediaType, "Content-Type %q", ct)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		fail(http.StatusBadRequest, "reading the body: %v", err)
		return
	}
	var patch struct {
		Data map[string]string `json:"data"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&patch); err != nil || len(patch.Data) != 1 {
		fail(http.StatusBadRequest, "the patch %s is not one data key: %v", body, err)
		return
	}
	for k, v := range patch.Data {
		rep.Key = k
		p, err := decodeProgress(v, a.since)
		if err != nil {
			fail(http.StatusBadRequest, "the value of %s: %v", k, err)
			return
		}
		rep.Progress = p
	}
	switch mode {
	case apiHang:
		rep.Status = http.StatusGatewayTimeout
		a.mu.Lock()
		a.seen = append(a.seen, rep)
		a.mu.Unlock()
		<-r.Context().Done() // the client gave up: nothing else ends this
		return
	case api500:
		fail(http.StatusInternalServerError, "etcdserver: request timed out")
		return
	case api403:
		fail(http.StatusForbidden, `configmaps %q is forbidden`, progressCM)
		return
	}
	rep.Status = http.StatusOK
	a.mu.Lock()
	a.seen = append(a.seen, rep)
	a.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"kind":"ConfigMap","apiVersion":"v1"}`))
}

// decodeProgress decodes a report's value strictly: one line of compact
// JSON, every field of Progress present and none other, updated since then.
func decodeProgress(v string, since time.Time) (Progress, error) {
	var p Progress
	if strings.ContainsAny(v, "\n ") {
		return p, fmt.Errorf("not one line of compact JSON: %q", v)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal([]byte(v), &fields); err != nil {
		return p, err
	}
	want := jsonNames(reflect.TypeOf(p))
	sort.Strings(want)
	if diff := cmp.Diff(want, sortedKeys(fields)); diff != "" {
		return p, fmt.Errorf("fields (-want +got):\n%s", diff)
	}
	dec := json.NewDecoder(strings.NewReader(v))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return p, err
	}
	at, err := time.Parse(time.RFC3339, p.Updated)
	if err != nil || !strings.HasSuffix(p.Updated, "Z") || at.After(time.Now().Add(time.Second)) || at.Before(since.Truncate(time.Second)) {
		return p, fmt.Errorf("updated %q is not an RFC 3339 time in UTC since the API server started (%w)", p.Updated, err)
	}
	return p, nil
}

// taken are the reports the server took.
func (a *fakeAPI) taken() []report {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []report
	for _, r := range a.seen {
		if r.Status == http.StatusOK {
			out = append(out, r)
		}
	}
	return out
}

// requests counts every request, taken or not.
func (a *fakeAPI) requests() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.seen)
}

func (a *fakeAPI) countStatus(status int) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, r := range a.seen {
		if r.Status == status {
			n++
		}
	}
	return n
}

// progressEnv sets up h for progress reports to api: the helper in a
// directory of its own with the progress file beside it, the token and the
// CA in files, the API server's address, a pod name and a 1 s interval.
func progressEnv(t testing.TB, h *harness, api *fakeAPI) map[string]string {
	t.Helper()
	opt := filepath.Join(h.root, "opt", "hf-download")
	secrets := filepath.Join(h.root, "secrets")
	mustMkdir(t, opt)
	mustMkdir(t, secrets)
	helper, err := os.ReadFile("hfdl.py")
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(opt, "hfdl.py"), string(helper))
	mustWrite(t, filepath.Join(opt, ProgressFile), progressNS+"/"+progressCM)
	mustWrite(t, filepath.Join(secrets, "token"), apiToken+"\n")
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: api.srv.Certificate().Raw})
	mustWrite(t, filepath.Join(secrets, "ca.crt"), string(ca))
	host, port, err := net.SplitHostPort(api.addr)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{
		EnvHelper:                 filepath.Join(opt, "hfdl.py"),
		EnvProgressToken:          filepath.Join(secrets, "token"),
		EnvProgressCA:             filepath.Join(secrets, "ca.crt"),
		EnvProgressInterval:       "1",
		EnvContentHash:            progressHash,
		"KUBERNETES_SERVICE_HOST": host,
		"KUBERNETES_SERVICE_PORT": port,
		"HOSTNAME":                progressPod,
	}
}

// rotateToken rewrites the token file as the kubelet does: a new file
// renamed into place.
func rotateToken(t testing.TB, env map[string]string, token string) {
	t.Helper()
	tmp := env[EnvProgressToken] + ".new"
	mustWrite(t, tmp, token+"\n")
	if err := os.Rename(tmp, env[EnvProgressToken]); err != nil {
		t.Fatal(err)
	}
}

// reporters are the pids of the processes that run h's copy of the helper.
func reporters(t testing.TB, h *harness) []int {
	t.Helper()
	return processesWith(t, filepath.Join(h.root, "opt", "hf-download", "hfdl.py"))
}

// checkNoToken checks that the API token shows nowhere but in its file and
// the requests: not in the output, nor any file the run wrote.
func checkNoToken(t testing.TB, h *harness, out string) {
	t.Helper()
	for _, tok := range []string{apiToken, apiToken2} {
		if strings.Contains(out, tok) {
			t.Errorf("the output shows the API token:\n%s", out)
		}
		err := filepath.WalkDir(h.root, func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Type()&os.ModeSymlink != 0 || filepath.Dir(path) == filepath.Join(h.root, "secrets") {
				return err
			}
			if data, err := os.ReadFile(path); err == nil && bytes.Contains(data, []byte(tok)) {
				t.Errorf("the API token is in %s", path)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// bigFile is the content of a file of n bytes that does not compress to nothing.
func bigFile(n int) string {
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "%015d\n", i)
	}
	return b.String()[:n]
}

// hfChunk is how much hf writes of a file at a time: its partial file grows
// by this much (huggingface_hub's DOWNLOAD_CHUNK_SIZE).
const hfChunk = 10 << 20

// TestRealHFProgressGrows: a real download whose file the Hub lets through a
// step at a time, each once a report showed the last (hf writes its partial
// file hfChunk at a time): the first report comes at once, with the plan's
// totals; bytes grow across reports, partial files counted, with a rate and
// an ETA; reports are an interval apart at least and each says something new;
// the last says bytes == totalBytes, files == totalFiles. Every value decodes
// strictly into Progress, under the content hash, and the token shows
// nowhere.
func TestRealHFProgressGrows(t *testing.T) {
	realHF(t)
	files := map[string]string{"config.json": `{"model_type":"p"}`, "model.safetensors": bigFile(2*hfChunk + 4<<20)}
	var total int64
	for _, c := range files {
		total += int64(len(c))
	}
	for shName, sh := range realShells(t) {
		t.Run(shName, func(t *testing.T) {
			t.Parallel()
			hub := newHub(t)
			gate := hubtest.NewGate()
			hub.Set("model", "org/p", hubtest.Repo{Commit: commitV1, Files: files, LFS: []string{"model.safetensors"}, Gate: gate})
			api := newFakeAPI(t, "127.0.0.1")
			h, env := newRealHarness(t, sh, hub)
			env = withEnv(withEnv(env, progressEnv(t, h, api)), map[string]string{EnvRepoID: "org/p"})
			s := h.start(env)
			waitFor(t, "the first report", s, func() bool { return len(api.taken()) >= 1 })
			// Each step lets a chunk more of the big file through (and
			// config.json, whichever asks first): hf writes it whole.
			gate.Let(int64(len(files["config.json"])))
			for step := int64(1); step <= 2; step++ {
				gate.Let(hfChunk)
				waitFor(t, fmt.Sprintf("a report of %d bytes", step*hfChunk), s, func() bool {
					reps := api.taken()
					return reps[len(reps)-1].Progress.Bytes >= step*hfChunk
				})
			}
			gate.Open()
			r := s.wait()
			if r.code != 0 {
				t.Fatalf("exit %d\n%s", r.code, r.out)
			}
			checkClean(t, h, r)
			checkNoToken(t, h, r.out)
			if want := "hf-download: reporting progress to ConfigMap " + progressNS + "/" + progressCM + " every 1 s at most\n"; !strings.Contains(r.out, want) {
				t.Errorf("the log lacks %q:\n%s", want, r.out)
			}
			reps := api.taken()
			if len(reps) != api.requests() {
				t.Errorf("%d requests, %d taken", api.requests(), len(reps))
			}
			if len(reps) < 3 {
				t.Fatalf("%d reports, want at least the first, one while hf writes, and the last: %+v", len(reps), reps)
			}
			t.Logf("reports: %+v", reps)
			var grew, partial, rated int
			for i, rep := range reps {
				p := rep.Progress
				if rep.Key != progressHash || p.Attempt != progressPod || p.TotalBytes != total || p.TotalFiles != int64(len(files)) {
					t.Errorf("report %d: key %q, %+v; want key %q, attempt %q, totals %d bytes, %d files", i, rep.Key, p, progressHash, progressPod, total, len(files))
				}
				if p.Bytes < 0 || p.Bytes > total || p.Files < 0 || p.Files > p.TotalFiles {
					t.Errorf("report %d out of bounds: %+v", i, p)
				}
				if p.Files < int64(len(files)) && p.Bytes > int64(len(files["config.json"])) {
					partial++ // the big file not there yet, its bytes counted
				}
				if p.BytesPerSecond > 0 && p.ETASeconds > 0 {
					rated++
				}
				if i == 0 {
					continue
				}
				prev := reps[i-1]
				if p.Bytes < prev.Progress.Bytes {
					t.Errorf("report %d: bytes went down from %d to %d", i, prev.Progress.Bytes, p.Bytes)
				}
				if p.Bytes > prev.Progress.Bytes {
					grew++
				}
				if i == len(reps)-1 {
					continue // the last report comes once hf is done, whenever that is
				}
				if gap := rep.At.Sub(prev.At); gap < 900*time.Millisecond {
					t.Errorf("reports %d and %d %v apart, want an interval (1 s) at least", i-1, i, gap)
				}
				if p.Bytes == prev.Progress.Bytes && p.Files == prev.Progress.Files {
					t.Errorf("report %d says nothing new: %+v after %+v", i, p, prev.Progress)
				}
			}
			if grew < 2 || partial < 1 || rated < 1 {
				t.Errorf("bytes grew %d times, %d reports counted a partial file, %d had a rate and an ETA; want 2, 1, 1 at least: %+v", grew, partial, rated, reps)
			}
			last := reps[len(reps)-1].Progress
			if last.Bytes != total || last.Files != int64(len(files)) || last.ETASeconds != 0 {
				t.Errorf("last report %+v, want all %d bytes and %d files, no ETA", last, total, len(files))
			}
			if pids := reporters(t, h); len(pids) != 0 {
				t.Errorf("reporters still running: %v", pids)
			}
		})
	}
}

// TestRealHFProgressSurvivesTheAPIServer: an API server that answers 500,
// then is not there (connection refused), then refuses the token's access
// (403), and then takes reports again, while hf waits for the Hub: the
// download completes as ever, each failure is retried at the next interval,
// the log says so once (not every interval) and says when reports go through
// again, counting the failures, and those that do grow to the last, complete
// one. A token rotated meanwhile (the file replaced) is the one the next
// reports carry. Once the API server has answered 500 twice, the test holds
// each attempt back (see attempts) to decide what it meets.
func TestRealHFProgressSurvivesTheAPIServer(t *testing.T) {
	realHF(t)
	files := map[string]string{"config.json": `{"model_type":"p"}`, "model.safetensors": bigFile(1 << 20)}
	var total int64
	for _, c := range files {
		total += int64(len(c))
	}
	hub := newHub(t)
	gate := hubtest.NewGate()
	hub.Set("model", "org/p", hubtest.Repo{Commit: commitV1, Files: files, LFS: []string{"model.safetensors"}, Gate: gate})
	api := newFakeAPI(t, "127.0.0.1")
	h, env := newRealHarness(t, testShell(t), hub)
	env = withEnv(withEnv(env, progressEnv(t, h, api)), map[string]string{EnvRepoID: "org/p"})
	api.set(api500)
	start := time.Now()
	s := h.start(env)
	waitFor(t, "two 500s", s, func() bool { return api.countStatus(http.StatusInternalServerError) >= 2 })
	attempts := heldAttempts(t, env[EnvProgressToken])
	// Each turn: an attempt under way (the one before it over), what the
	// API server does for it, then its token.
	for _, mode := range []apiMode{apiRefused, api403, api403, apiOK} {
		f := attempts.next(s)
		api.set(mode)
		give(t, f, apiToken)
	}
	waitFor(t, "a report taken", s, func() bool { return len(api.taken()) >= 1 })
	failing := time.Since(start)
	// Nothing changes on disk until the gate opens: no attempt is under way.
	rotateToken(t, env, apiToken2)
	before := len(api.taken())
	gate.Open()
	r := s.wait()
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.out)
	}
	checkClean(t, h, r)
	checkNoToken(t, h, r.out)

	if n := strings.Count(r.out, "hf-download: warning: cannot report progress to "+progressNS+"/"+progressCM+" (1 failed so far): HTTP 500 Internal Server Error; trying again every 1 s\n"); n != 1 {
		t.Errorf("the first failure is logged %d times, want once:\n%s", n, r.out)
	}
	// Once, and once a minute at most after that, however long it took.
	if n, most := strings.Count(r.out, "cannot report progress"), 1+int(failing/time.Minute); n < 1 || n > most {
		t.Errorf("%d lines on failed reports in %v, want 1 to %d:\n%s", n, failing, most, r.out)
	}
	failed := api.countStatus(http.StatusInternalServerError) + 3 // refused once, 403 twice
	if want := fmt.Sprintf("hf-download: progress reported to %s/%s again, after %d failed reports\n", progressNS, progressCM, failed); !strings.Contains(r.out, want) {
		t.Errorf("the log lacks %q:\n%s", want, r.out)
	}
	reps := api.taken()
	var tokens []string
	for i, rep := range reps {
		tokens = append(tokens, rep.Token)
		if i > 0 && rep.Progress.Bytes < reps[i-1].Progress.Bytes {
			t.Errorf("report %d: bytes went down: %+v", i, reps)
		}
	}
	if want := slices.Repeat([]string{"1"}, before); len(reps) <= before || !slices.Equal(want, tokens[:before]) || slices.ContainsFunc(tokens[before:], func(tok string) bool { return tok != "2" }) {
		t.Errorf("the reports' tokens %q, want the first %d with the old token and the rest, one at least, with the new", tokens, before)
	}
	if last := reps[len(reps)-1].Progress; last.Bytes != total || last.Files != 2 {
		t.Errorf("last report %+v, want %d bytes, 2 files", last, total)
	}
}

// attempts holds back the reporter's attempts at a report: its token file is
// a FIFO (through a symlink, as the kubelet's projected files are links),
// which an attempt opens first thing and reads until the test closes it.
type attempts struct {
	t    testing.TB
	path string // the token file's
	dir  string // where the FIFOs are: not under the run's root, whose files the tests read
	n    int
}

// heldAttempts holds back the attempts that read the token file at path,
// from the first next until rotateToken replaces the file.
func heldAttempts(t testing.TB, path string) *attempts {
	return &attempts{t: t, path: path, dir: t.TempDir()}
}

// next waits until an attempt of run's reporter has opened the token file,
// a new FIFO: the attempt before it, which opened another, is over. give lets
// it go on.
func (a *attempts) next(run *started) *os.File {
	a.t.Helper()
	a.n++
	fifo := filepath.Join(a.dir, "token-"+strconv.Itoa(a.n))
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		a.t.Fatal(err)
	}
	if err := os.Symlink(fifo, a.path+".new"); err != nil {
		a.t.Fatal(err)
	}
	if err := os.Rename(a.path+".new", a.path); err != nil {
		a.t.Fatal(err)
	}
	opened := make(chan *os.File, 1)
	go func() {
		// Opening for writing waits for a reader.
		f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err != nil {
			a.t.Errorf("opening %s: %v", fifo, err)
			return
		}
		opened <- f
	}()
	var f *os.File
	waitFor(a.t, "an attempt at a report", run, func() bool {
		select {
		case f = <-opened:
			return true
		default:
			return false
		}
	})
	return f
}

// give hands the attempt waiting at f its token.
func give(t testing.TB, f *os.File, token string) {
	t.Helper()
	if _, err := f.WriteString(token + "\n"); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestRealHFNoProgressWithoutItsFiles: without the progress file beside the
// helper, the token, the CA or the API server's address, a download sends no
// request at all, completes as ever and says once why progress is not
// reported.
func TestRealHFNoProgressWithoutItsFiles(t *testing.T) {
	realHF(t)
	for _, tc := range []struct {
		name  string
		setup func(h *harness, env map[string]string)
		why   string
	}{
		{"no progress file", func(h *harness, env map[string]string) {
			mustRemove(t, filepath.Join(filepath.Dir(env[EnvHelper]), ProgressFile))
		}, "no file {opt}/progress names a ConfigMap for it"},
		{"no token", func(h *harness, env map[string]string) {
			mustRemove(t, env[EnvProgressToken])
		}, "no token at {root}/secrets/token"},
		{"no CA", func(h *harness, env map[string]string) {
			mustRemove(t, env[EnvProgressCA])
		}, "no CA certificate at {root}/secrets/ca.crt"},
		{"default token path", func(h *harness, env map[string]string) {
			delete(env, EnvProgressToken)
		}, "no token at " + ProgressTokenPath},
		{"no API server", func(h *harness, env map[string]string) {
			delete(env, "KUBERNETES_SERVICE_HOST")
		}, "KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT do not name the API server"},
		{"progress file of another kind", func(h *harness, env map[string]string) {
			mustWrite(t, filepath.Join(filepath.Dir(env[EnvHelper]), ProgressFile), "../../secrets")
		}, "{opt}/progress does not name a ConfigMap as <namespace>/<name>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			hub := newHub(t)
			hub.Set("model", "org/p", hubtest.Repo{Commit: commitV1, Files: map[string]string{"config.json": "{}"}})
			api := newFakeAPI(t, "127.0.0.1")
			h, env := newRealHarness(t, testShell(t), hub)
			env = withEnv(withEnv(env, progressEnv(t, h, api)), map[string]string{EnvRepoID: "org/p"})
			tc.setup(h, env)
			r := h.run(env)
			if r.code != 0 {
				t.Fatalf("exit %d\n%s", r.code, r.out)
			}
			why := strings.NewReplacer("{opt}", filepath.Dir(env[EnvHelper]), "{root}", h.root).Replace(tc.why)
			if n := strings.Count(r.out, "hf-download: progress is not reported: "+why+"\n"); n != 1 {
				t.Errorf("the log says %d times that progress is not reported because %s, want once:\n%s", n, why, r.out)
			}
			if n := strings.Count(r.out, "report"); n != 1 {
				t.Errorf("the log speaks of reports %d times, want once:\n%s", n, r.out)
			}
			if n := api.requests(); n != 0 {
				t.Errorf("%d requests to the API server, want none", n)
			}
			checkNoToken(t, h, r.out)
		})
	}
}

// TestProgressReporterStops: the reporter ends with the download, whichever
// way it ends (success, failure, stall, SIGTERM to the script as a process
// and as PID 1), never holds the lock and never has the token in its argv or
// env. While hf writes nothing (the stub hangs) the first report is the only
// one; the stall comes once it is in, on the test's clock. Without the
// helper's plan (the stub's python3 cannot import huggingface_hub), the
// totals are 0 and the last report's are what is there.
func TestProgressReporterStops(t *testing.T) {
	for _, tc := range []struct {
		name  string
		env   map[string]string
		term  bool
		pid1  bool
		want  string // the reason; "" is a success
		hangs bool
	}{
		{name: "success"},
		{name: "failure", env: map[string]string{"HFSTUB_MODE": "fail"}, want: FailedPrefix("org/name", "main") + "hf exited with code 3"},
		{name: "stall", env: map[string]string{"HFSTUB_MODE": "hang", EnvStallTimeout: "3"}, want: FailedPrefix("org/name", "main") + "stalled: no progress for 3 s", hangs: true},
		{name: "TERM", env: map[string]string{"HFSTUB_MODE": "hang"}, term: true, want: "stopped by SIGTERM before the download of org/name@main finished", hangs: true},
		{name: "TERM to PID 1", env: map[string]string{"HFSTUB_MODE": "hang"}, term: true, pid1: true, want: "stopped by SIGTERM before the download of org/name@main finished", hangs: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			if tc.pid1 {
				unshare, err := exec.LookPath("unshare")
				if err != nil {
					missingTool(t, "unshare (util-linux) not on PATH")
				}
				if os.Geteuid() != 0 {
					missingTool(t, "a new PID namespace needs root")
				}
				h.sh = append([]string{unshare, "--pid", "--fork", "--kill-child"}, h.sh...)
			}
			api := newFakeAPI(t, "127.0.0.1")
			env := withEnv(progressEnv(t, h, api), tc.env)
			var clock func(seconds int)
			if tc.hangs && !tc.term {
				clock = h.stoppedClock(0)
				h.deadline = stallDeadline
			}
			s := h.start(env)
			if tc.hangs {
				waitFor(t, "the first report", s, func() bool { return len(api.taken()) >= 1 })
				pids := reporters(t, h)
				if len(pids) != 1 {
					t.Fatalf("reporters %v, want one", pids)
				}
				checkReporterProcess(t, pids[0])
			}
			if clock != nil {
				clock(3) // the stall timeout, since hf started
			}
			if tc.term {
				shell := s.cmd.Process.Pid
				if tc.pid1 {
					shell = childOf(t, shell)
				}
				if err := syscall.Kill(shell, syscall.SIGTERM); err != nil {
					t.Fatal(err)
				}
			}
			r := s.wait()
			if tc.want == "" {
				if r.code != 0 {
					t.Fatalf("exit %d\n%s", r.code, r.out)
				}
			} else {
				h.checkFailure(r, tc.want)
			}
			if pids := reporters(t, h); len(pids) != 0 {
				t.Errorf("reporters still running after the script ended: %v", pids)
			}
			checkNoToken(t, h, r.out)
			reps := api.taken()
			var got []Progress
			for _, rep := range reps {
				p := rep.Progress
				p.Updated = ""
				got = append(got, p)
			}
			var want []Progress
			switch {
			case tc.hangs:
				want = []Progress{{Attempt: progressPod}}
			case tc.want == "":
				// The last report; before it, whatever the reporter saw.
				before := got[:max(0, len(got)-1)]
				want = append(slices.Clone(before), Progress{
					Progress: v1alpha1.Progress{Bytes: stubBytes(), TotalBytes: stubBytes(), Files: int64(len(stubFiles)), TotalFiles: int64(len(stubFiles))},
					Attempt:  progressPod,
				})
			default:
				want = got // the stub fails at once: zero reports or one
				if len(got) > 1 {
					t.Errorf("%d reports of a failure at once", len(got))
				}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("reports (-want +got):\n%s", diff)
			}
			if api.requests() != len(reps) {
				t.Errorf("%d requests, %d taken", api.requests(), len(reps))
			}
		})
	}
}

// checkReporterProcess checks a running reporter: no lock file among its
// open files, no token in its argv or env.
func checkReporterProcess(t testing.TB, pid int) {
	t.Helper()
	proc := filepath.Join("/proc", strconv.Itoa(pid))
	fds, err := os.ReadDir(filepath.Join(proc, "fd"))
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		if target, err := os.Readlink(filepath.Join(proc, "fd", fd.Name())); err == nil && strings.HasSuffix(target, LockFile) {
			t.Errorf("the reporter holds the lock file on fd %s", fd.Name())
		}
	}
	for _, f := range []string{"cmdline", "environ"} {
		data, err := os.ReadFile(filepath.Join(proc, f))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		if bytes.Contains(data, []byte(apiToken)) {
			t.Errorf("the reporter's %s holds the token", f)
		}
	}
}

// TestRealHFProgressOverIPv6: an API server at an IPv6 address, as
// KUBERNETES_SERVICE_HOST gives it (unbracketed), is reached.
func TestRealHFProgressOverIPv6(t *testing.T) {
	realHF(t)
	hub := newHub(t)
	hub.Set("model", "org/p", hubtest.Repo{Commit: commitV1, Files: map[string]string{"config.json": "{}"}})
	api := newFakeAPI(t, "::1")
	h, env := newRealHarness(t, testShell(t), hub)
	env = withEnv(withEnv(env, progressEnv(t, h, api)), map[string]string{EnvRepoID: "org/p"})
	if env["KUBERNETES_SERVICE_HOST"] != "::1" {
		t.Fatalf("KUBERNETES_SERVICE_HOST %q", env["KUBERNETES_SERVICE_HOST"])
	}
	r := h.run(env)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.out)
	}
	reps := api.taken()
	if len(reps) == 0 || reps[len(reps)-1].Progress.Bytes != 2 || reps[len(reps)-1].Progress.TotalBytes != 2 {
		t.Errorf("reports %+v, want the last with all 2 bytes", reps)
	}
}

// TestProgressReporterOutlivesNoScript: a script killed outright (SIGKILL,
// no trap runs) leaves its reporter, which ends by itself once it finds the
// script gone (it looks every interval); hf, left running, is the test's to
// kill.
func TestProgressReporterOutlivesNoScript(t *testing.T) {
	h := newHarness(t)
	api := newFakeAPI(t, "127.0.0.1")
	s := h.start(withEnv(progressEnv(t, h, api), map[string]string{"HFSTUB_MODE": "hang"}))
	waitFor(t, "the first report", s, func() bool { return len(api.taken()) >= 1 })
	waitPidFile(t, h.record+".pid", s)
	if pids := reporters(t, h); len(pids) != 1 {
		t.Fatalf("reporters %v, want one", pids)
	}
	if err := s.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	// Wait reaps the script, then waits for its output, which the stub hf
	// still holds: the script's end is its reaping.
	waitFor(t, "the script's end", nil, func() bool { return errors.Is(s.cmd.Process.Signal(syscall.Signal(0)), os.ErrProcessDone) })
	waitFor(t, "the reporter's end", nil, func() bool { return len(reporters(t, h)) == 0 })
}

// TestProgressAPIServerHangs: an API server that takes a report and never
// answers (until the client goes away) does not hold the download: the last
// report gives up after its timeout (5 s), says so, and the download
// succeeds.
func TestProgressAPIServerHangs(t *testing.T) {
	h := newHarness(t)
	api := newFakeAPI(t, "127.0.0.1")
	api.set(apiHang)
	r := h.run(progressEnv(t, h, api))
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.out)
	}
	if want := "hf-download: warning: cannot send the final progress report to " + progressNS + "/" + progressCM + ": TimeoutError: "; !strings.Contains(r.out, want) {
		t.Errorf("the log lacks %q:\n%s", want, r.out)
	}
	if n := api.countStatus(http.StatusGatewayTimeout); n < 1 {
		t.Errorf("%d reports reached the server, want the last one at least", n)
	}
	if _, ok := h.readSummary(); !ok {
		t.Error("no summary")
	}
	checkNoToken(t, h, r.out)
}
