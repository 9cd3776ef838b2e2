package script

import (
	"crypto/sha1"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// fakeHub plays, on 127.0.0.1 only, the few Hugging Face Hub endpoints that
// `hf download <repo> --local-dir ...` (huggingface_hub 1.28) calls:
//
//	GET  /api/agent-harnesses                         (the CLI's agent detection; 404 here)
//	GET  /api/{models,datasets}/<repo>/revision/<rev> (repo_info: the commit, or why not)
//	GET  /api/{models,datasets}/<repo>/tree/<commit>  (list_repo_tree, recursive)
//	HEAD /[datasets/]<repo>/resolve/<commit>/<file>   (file metadata: commit, ETag, size)
//	GET  /[datasets/]<repo>/resolve/<commit>/<file>   (the file)
//
// A repo that fails answers the revision endpoint as the real Hub does, with
// the status and X-Error-Code / X-Error-Message headers that
// utils/_http.py's hf_raise_for_status turns into GatedRepoError,
// RepositoryNotFoundError, RevisionNotFoundError or a plain HfHubHTTPError.
// Repo ids have the form org/name. Anything else is answered 404 and
// recorded, so a test can tell that hf asked for nothing unexpected.
type fakeHub struct {
	srv *httptest.Server

	mu       sync.Mutex
	repos    map[string]*hubRepo // by "model/org/name" or "dataset/org/name"
	requests []string            // "METHOD /path?query", in order
	unknown  []string            // requests no route answered
}

// hubRepo is a repo as the fake Hub serves it: fail, when set, is how its
// revision endpoint answers; otherwise it holds files at commit.
type hubRepo struct {
	fail   *hubError
	commit string
	files  map[string]string
}

// hubError is one failing answer: the status, the X-Error-Code header (none
// when empty) and the message sent as X-Error-Message and as {"error": ...}.
type hubError struct {
	status  int
	code    string
	message string
}

func newFakeHub(t *testing.T) *fakeHub {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening on loopback: %v", err)
	}
	h := &fakeHub{repos: map[string]*hubRepo{}}
	h.srv = &httptest.Server{Listener: l, Config: &http.Server{Handler: http.HandlerFunc(h.serve)}}
	h.srv.Start()
	t.Cleanup(h.srv.Close)
	return h
}

// URL is the Hub's endpoint, for HF_ENDPOINT.
func (h *fakeHub) URL() string { return h.srv.URL }

// set makes repoType/repoID serve repo (replacing what it served before).
func (h *fakeHub) set(repoType, repoID string, repo hubRepo) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.repos[repoType+"/"+repoID] = &repo
}

// seen returns the requests so far, and those no route answered.
func (h *fakeHub) seen() (requests, unknown []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.requests...), append([]string(nil), h.unknown...)
}

func (h *fakeHub) serve(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.requests = append(h.requests, r.Method+" "+r.URL.RequestURI())
	if !h.route(w, r) {
		h.unknown = append(h.unknown, r.Method+" "+r.URL.RequestURI())
		http.NotFound(w, r)
	}
}

// route answers r and reports whether one of the routes above matched.
func (h *fakeHub) route(w http.ResponseWriter, r *http.Request) bool {
	// Split the escaped path: hf quotes the revision whole ("a/b" is a%2Fb).
	var parts []string
	for _, p := range strings.Split(strings.TrimPrefix(r.URL.EscapedPath(), "/"), "/") {
		u, err := url.PathUnescape(p)
		if err != nil {
			return false
		}
		parts = append(parts, u)
	}
	switch {
	case r.Method == http.MethodGet && len(parts) == 2 && parts[0] == "api" && parts[1] == "agent-harnesses":
		http.NotFound(w, r)
		return true
	case r.Method == http.MethodGet && len(parts) == 6 && parts[0] == "api" && (parts[1] == "models" || parts[1] == "datasets"):
		repoType := strings.TrimSuffix(parts[1], "s")
		repoID := parts[2] + "/" + parts[3]
		repo := h.repos[repoType+"/"+repoID]
		if repo == nil {
			return false
		}
		switch parts[4] {
		case "revision":
			if e := repo.fail; e != nil {
				if e.code != "" {
					w.Header().Set("X-Error-Code", e.code)
				}
				w.Header().Set("X-Error-Message", e.message)
				writeJSON(w, e.status, map[string]string{"error": e.message})
				return true
			}
			siblings := []map[string]string{}
			for _, name := range sortedKeys(repo.files) {
				siblings = append(siblings, map[string]string{"rfilename": name})
			}
			writeJSON(w, http.StatusOK, map[string]any{"id": repoID, "sha": repo.commit, "siblings": siblings})
			return true
		case "tree":
			if repo.fail != nil || parts[5] != repo.commit || r.URL.Query().Get("recursive") != "true" {
				return false
			}
			entries := []map[string]any{}
			for _, name := range sortedKeys(repo.files) {
				entries = append(entries, map[string]any{
					"type": "file", "path": name, "size": len(repo.files[name]), "oid": gitBlobID(repo.files[name]),
				})
			}
			writeJSON(w, http.StatusOK, entries)
			return true
		}
		return false
	case r.Method == http.MethodGet || r.Method == http.MethodHead:
		repoType := "model"
		if len(parts) > 0 && parts[0] == "datasets" {
			repoType, parts = "dataset", parts[1:]
		}
		if len(parts) < 5 || parts[2] != "resolve" {
			return false
		}
		repo := h.repos[repoType+"/"+parts[0]+"/"+parts[1]]
		if repo == nil || repo.fail != nil || parts[3] != repo.commit {
			return false
		}
		content, ok := repo.files[strings.Join(parts[4:], "/")]
		if !ok {
			return false
		}
		w.Header().Set("X-Repo-Commit", repo.commit)
		w.Header().Set("ETag", strconv.Quote(gitBlobID(content)))
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(len(content)))
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, _ = w.Write([]byte(content))
		}
		return true
	}
	return false
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(status)
	_, _ = w.Write(data)
}

// gitBlobID is git's object id of a blob: what the Hub sends as a regular
// (non-LFS) file's oid and ETag.
func gitBlobID(content string) string {
	s := sha1.New()
	_, _ = fmt.Fprintf(s, "blob %d\x00%s", len(content), content)
	return fmt.Sprintf("%x", s.Sum(nil))
}

// revisionRequests are the requests for repo_info among reqs, sorted.
func revisionRequests(reqs []string) []string {
	var out []string
	for _, r := range reqs {
		if strings.Contains(r, "/revision/") {
			out = append(out, r)
		}
	}
	sort.Strings(out)
	return out
}
