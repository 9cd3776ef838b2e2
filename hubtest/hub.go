// Package hubtest is a fake Hugging Face Hub for tests that run the real hf
// CLI (huggingface_hub 2.4). It plays, on the listener it is given (loopback,
// or an address pods can reach), the few endpoints that
// `hf download <repo> [<file>...] --local-dir ...` calls:
//
//	GET  /api/agent-harnesses                         (the CLI's agent detection; 404 here)
//	GET  /api/{models,datasets}/<repo>/revision/<rev> (repo_info: the commit, or why not;
//	                                                   ?blobs=true: files_metadata)
//	GET  /api/{models,datasets}/<repo>/tree/<commit>  (list_repo_tree, recursive)
//	HEAD /[datasets/]<repo>/resolve/<rev>/<file>      (file metadata: commit, ETag, size)
//	GET  /[datasets/]<repo>/resolve/<rev>/<file>      (the file)
//
// Repo ids have the form org/name, and every revision names the repo's one
// commit. Anything else is answered 404 and recorded, so a test can tell
// that hf asked for nothing unexpected. See [Repo] for failing, private,
// slow, gated, stalling, rate-limited repos and LFS files.
//
// The package uses the standard library only, so that any module's tests can
// import it.
package hubtest

import (
	"maps"
	"net"
	"net/http"
	"net/url"
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
	requests     []string // "METHOD /path?query", in order
	unknown      []string // requests no route answered
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
// with. The Hub keeps its own copy of repo. Set panics on another repo type or
// a repo id of another form.
func (h *Hub) Set(repoType, repoID string, repo Repo) {
	if repoType != "model" && repoType != "dataset" {
		panic("hubtest: repo type " + repoType + " is neither model nor dataset")
	}
	if org, name, ok := strings.Cut(repoID, "/"); !ok || org == "" || name == "" || strings.Contains(name, "/") {
		panic("hubtest: repo id " + repoID + " is not of the form org/name")
	}
	repo.Files = maps.Clone(repo.Files)
	repo.LFS = slices.Clone(repo.LFS)
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

// Seen returns the requests so far, each as "METHOD /path?query" in the order
// they came, and those among them that no route answered.
func (h *Hub) Seen() (requests, unknown []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.requests...), append([]string(nil), h.unknown...)
}

// SeenFor returns the requests so far that name the repo repoType repoID, in
// the order they came: its revision, tree and file endpoints, answered or
// not. Tests that share a Hub read their own repos' requests with it, never
// their neighbours'.
func (h *Hub) SeenFor(repoType, repoID string) []string {
	org, name, _ := strings.Cut(repoID, "/")
	id := url.PathEscape(org) + "/" + url.PathEscape(name)
	files := "/" + id + "/resolve/"
	if repoType == "dataset" {
		files = "/datasets" + files
	}
	api := "/api/" + repoType + "s/" + id + "/"
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, line := range h.requests {
		if _, uri, _ := strings.Cut(line, " "); strings.HasPrefix(uri, api) || strings.HasPrefix(uri, files) {
			out = append(out, line)
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
	line := h.redact(r.Method+" "+r.URL.RequestURI(), r)
	h.requests = append(h.requests, line)
	// The route is chosen under the lock; the answer, which may take long,
	// is written without it.
	answer := h.route(r)
	if answer == nil {
		h.unknown = append(h.unknown, line)
		answer = http.NotFound
	}
	h.mu.Unlock()
	answer(w, r)
}

// redact keeps credentials out of the request log. hf sends its token in the
// Authorization header only, which the log does not hold; a client could still
// put one in the path or query, so the request's own credential and every
// repo's token are cut out of line. Called with mu held.
func (h *Hub) redact(line string, r *http.Request) string {
	secrets := []string{r.Header.Get("Authorization")}
	if _, cred, ok := strings.Cut(secrets[0], " "); ok {
		secrets = append(secrets, cred)
	}
	for _, repo := range h.repos {
		secrets = append(secrets, repo.Token)
	}
	for _, s := range secrets {
		if s = strings.TrimSpace(s); s != "" {
			line = strings.ReplaceAll(line, s, "<redacted>")
		}
	}
	return line
}
