// Package hubtest is a fake Hugging Face Hub for tests that run the real hf
// CLI (huggingface_hub 2.4 with hf_xet 1.8). It plays, on the listener it is
// given (loopback, or an address pods can reach), the endpoints that
// `hf download <repo> [<file>...] --local-dir ...` calls:
//
//	GET  /api/agent-harnesses                         (the CLI's agent detection: none)
//	GET  /api/{models,datasets}/<repo>/revision/<rev> (repo_info: the commit, or why not;
//	                                                   ?blobs=true: files_metadata)
//	GET  /api/{models,datasets}/<repo>/tree/<commit>  (list_repo_tree, recursive)
//	HEAD /[datasets/]<repo>/resolve/<rev>/<file>      (file metadata: commit, ETag, size,
//	                                                   and for a Xet file its hash)
//	GET  /[datasets/]<repo>/resolve/<rev>/<file>      (the file)
//
// and, for Xet-backed files (see [Repo].Xet), the read token and the Xet CAS
// that hf_xet downloads them from, on the same listener:
//
//	GET  /api/{models,datasets}/<repo>/xet-read-token/<commit> (a CAS token, an hour long)
//	GET  /cas/v2/reconstructions/<file hash>    (which xorb ranges make up the Range asked)
//	GET  /cas/xorbs/<type>/<repo>/<xorb hash>   (a xorb's chunk records, the Range asked)
//	POST /v1/telemetry                          (hf_xet's transfer report: 204)
//
// Repo ids have the form org/name, and every revision names the repo's one
// commit. Anything else is answered 404 and recorded, so a test can tell
// that hf asked for nothing unexpected. See [Repo] for failing, private,
// slow, gated, stalling, rate-limited repos, LFS and Xet files.
//
// Besides the standard library the package needs only lukechampine.com/blake3
// (Xet's hashes), so that any module's tests can import it.
package hubtest

import (
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Hub is a fake Hugging Face Hub serving on a listener until Close.
type Hub struct {
	l      net.Listener
	srv    *http.Server
	url    string
	served chan struct{} // closed when Serve has returned
	stop   chan struct{} // closed by Close: file bodies in flight stop
	once   sync.Once

	mu       sync.Mutex
	closed   bool
	inflight sync.WaitGroup   // handlers running; Add only under mu, before closed
	active   int              // how many: what the WaitGroup does not tell
	repos    map[string]*Repo // by "model/org/name" or "dataset/org/name"; never changed once set
	// limitedCount is how many requests of each repo were answered 429.
	limitedCount map[string]int
	// casTokens are the CAS tokens the read-token endpoint issued, each
	// for a repo, by the key of h.repos.
	casTokens map[string]casToken
	requests  []logged // in order
	unknown   []string // requests no route answered
}

// logged is a request as the Hub logs it.
type logged struct {
	line string // "METHOD /path?query", with a CAS request's Range after it
	repo string // the key of the repo (in Hub.repos) it is for; "" when none
}

// New serves a fake Hub on l until Close, which closes l.
func New(l net.Listener) *Hub {
	h := &Hub{
		l:      l,
		url:    "http://" + l.Addr().String(),
		served: make(chan struct{}),
		stop:   make(chan struct{}),
		repos:  map[string]*Repo{},

		limitedCount: map[string]int{},
		casTokens:    map[string]casToken{},
	}
	h.srv = &http.Server{Handler: http.HandlerFunc(h.serve), ReadHeaderTimeout: time.Minute}
	go func() {
		defer close(h.served)
		_ = h.srv.Serve(l) // http.ErrServerClosed after Close
	}()
	return h
}

// URL is the Hub's endpoint, http://host:port of its listener: what
// HF_ENDPOINT is set to.
func (h *Hub) URL() string { return h.url }

// Close stops the Hub: it closes the listener and every connection, stops
// file bodies in flight however slow, and returns once no request is being
// served. Later calls do nothing.
func (h *Hub) Close() {
	h.once.Do(func() {
		h.mu.Lock()
		h.closed = true
		h.mu.Unlock()
		close(h.stop)
		_ = h.srv.Close()
		_ = h.l.Close() // in case Serve had not started yet: it then returns without closing l
		<-h.served
		h.inflight.Wait()
	})
}

// Set makes the Hub serve repo as repoType ("model" or "dataset") repoID
// ("org/name"), replacing what it served there before: for the requests that
// come next, as a request already being answered keeps the repo it was routed
// with. The Hub keeps its own copy of repo. Set panics on another repo type, a
// repo id of another form, or a Xet file that is not among the repo's files.
func (h *Hub) Set(repoType, repoID string, repo Repo) {
	if repoType != "model" && repoType != "dataset" {
		panic("hubtest: repo type " + repoType + " is neither model nor dataset")
	}
	if org, name, ok := strings.Cut(repoID, "/"); !ok || org == "" || name == "" || strings.Contains(name, "/") {
		panic("hubtest: repo id " + repoID + " is not of the form org/name")
	}
	repo.Files = maps.Clone(repo.Files)
	repo.LFS = slices.Clone(repo.LFS)
	repo.Xet = slices.Clone(repo.Xet)
	repo.cas = newCASStore(repo.Files, repo.Xet)
	repo.identify()
	if repo.Fail != nil {
		fail := *repo.Fail
		repo.Fail = &fail
	}
	if repo.Limit != nil {
		limit := *repo.Limit
		repo.Limit = &limit
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.repos[repoType+"/"+repoID] = &repo
	delete(h.limitedCount, repoType+"/"+repoID)
}

// Delete stops serving the repoType repoID, and lets its files go: for the
// requests that come next, as Set does.
func (h *Hub) Delete(repoType, repoID string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.repos, repoType+"/"+repoID)
	delete(h.limitedCount, repoType+"/"+repoID)
}

// Seen returns the requests so far, each as "METHOD /path?query" in the order
// they came, and those among them that no route answered. A request to the
// CAS that carries a Range shows it after the path, as in "GET
// /cas/v2/reconstructions/<hash> Range: bytes=0-199999": on the Xet path the
// ranges are what a test wants to see.
func (h *Hub) Seen() (requests, unknown []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.requests {
		requests = append(requests, r.line)
	}
	return requests, append([]string(nil), h.unknown...)
}

// SeenFor returns the requests so far for the repo repoType repoID, as Seen
// gives them, in the order they came: those of its revision, tree, file and
// read-token endpoints, answered or not, and those of the CAS for its Xet
// files: reconstructions and telemetry by the CAS token the Hub issued for
// the repo, xorbs by their URL. Tests that share a Hub read their own repos'
// requests with it, never their neighbours'.
func (h *Hub) SeenFor(repoType, repoID string) []string {
	key := repoType + "/" + repoID
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, r := range h.requests {
		if r.repo == key {
			out = append(out, r.line)
		}
	}
	return out
}

func (h *Hub) serve(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	if h.closed {
		// Close has closed the connection already.
		h.mu.Unlock()
		return
	}
	h.inflight.Add(1)
	h.active++
	defer func() {
		h.mu.Lock()
		h.active--
		h.mu.Unlock()
		h.inflight.Done()
	}()
	line := r.Method + " " + r.URL.RequestURI()
	if rng := r.Header.Get("Range"); rng != "" && strings.HasPrefix(r.URL.Path, "/cas/") {
		line += " Range: " + rng
	}
	line = h.redact(line, r)
	// The route is chosen under the lock; the answer, which may take long,
	// is written without it.
	answer, repo := h.route(r)
	h.requests = append(h.requests, logged{line: line, repo: repo})
	if answer == nil {
		h.unknown = append(h.unknown, line)
		answer = http.NotFound
	}
	h.mu.Unlock()
	answer(w, r)
}

// redact keeps credentials out of the request log. hf sends its token, and
// hf_xet the CAS token, in the Authorization header only, which the log does
// not hold; a client could still put one in the path or query, so the
// request's own credential, every repo's token and every CAS token issued are
// cut out of line. Called with mu held.
func (h *Hub) redact(line string, r *http.Request) string {
	secrets := []string{r.Header.Get("Authorization")}
	if _, cred, ok := strings.Cut(secrets[0], " "); ok {
		secrets = append(secrets, cred)
	}
	for _, repo := range h.repos {
		secrets = append(secrets, repo.Token)
	}
	for token := range h.casTokens {
		secrets = append(secrets, token)
	}
	for _, s := range secrets {
		if s = strings.TrimSpace(s); s != "" {
			line = strings.ReplaceAll(line, s, "<redacted>")
		}
	}
	return line
}
