package hubtest

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// route returns the answer to r, or nil when none of the routes in the
// package's doc matches it, and the key of the repo (in h.repos) the request
// is for, answered or not; "" when none. Called with mu held: it only looks r
// up, and issues CAS tokens; the answer runs without the lock.
func (h *Hub) route(r *http.Request) (http.HandlerFunc, string) {
	// Split the escaped path: hf quotes the revision whole ("a/b" is a%2Fb).
	var parts []string
	for _, p := range strings.Split(strings.TrimPrefix(r.URL.EscapedPath(), "/"), "/") {
		u, err := url.PathUnescape(p)
		if err != nil {
			return nil, ""
		}
		parts = append(parts, u)
	}
	switch {
	case r.Method == http.MethodGet && len(parts) == 2 && parts[0] == "api" && parts[1] == "agent-harnesses":
		return answerAgentHarnesses, ""
	case len(parts) >= 5 && parts[0] == "api" && (parts[1] == "models" || parts[1] == "datasets"):
		key := strings.TrimSuffix(parts[1], "s") + "/" + parts[2] + "/" + parts[3]
		if r.Method != http.MethodGet || len(parts) != 6 {
			return nil, key
		}
		return h.routeAPI(r, key, parts[4], parts[5]), key
	}
	if answer, key, ok := h.routeCAS(r, parts); ok {
		return answer, key
	}
	return h.routeFile(r, parts)
}

// routeFile returns the answer to r, a request for
// /[datasets/]<repo>/resolve/<rev>/<file> split into parts, or nil, and the
// key of the repo it is for; "" when parts are another path. Called with mu
// held.
func (h *Hub) routeFile(r *http.Request, parts []string) (http.HandlerFunc, string) {
	repoType := "model"
	if len(parts) > 0 && parts[0] == "datasets" {
		repoType, parts = "dataset", parts[1:]
	}
	if len(parts) < 4 || parts[2] != "resolve" {
		return nil, ""
	}
	key := repoType + "/" + parts[0] + "/" + parts[1]
	repo := h.repos[key]
	if repo == nil || (r.Method != http.MethodGet && r.Method != http.MethodHead) || len(parts) < 5 {
		return nil, key
	}
	if !repo.allows(r) {
		return answerError(private), key
	}
	// Any revision: snapshot_download asks by the commit it resolved,
	// hf_hub_download (one file) by the revision it was given.
	path := strings.Join(parts[4:], "/")
	if _, ok := repo.Files[path]; repo.Fail != nil || !ok {
		return nil, key
	}
	if h.limited(key, repo, "resolvers") {
		return answerLimited(repo.Limit), key
	}
	return h.answerFile(key, repo, path), key
}

// routeAPI returns the answer to r, GET /api/<type>s/<repo>/<endpoint>/<rev>
// for the repo at key, or nil. Called with mu held.
func (h *Hub) routeAPI(r *http.Request, key, endpoint, rev string) http.HandlerFunc {
	repo := h.repos[key]
	if repo == nil || (endpoint != "revision" && endpoint != "tree" && endpoint != "xet-read-token") {
		return nil
	}
	if !repo.allows(r) {
		return answerError(private)
	}
	if h.limited(key, repo, "api") {
		return answerLimited(repo.Limit)
	}
	switch {
	case endpoint != "tree" && repo.Fail != nil:
		return answerError(*repo.Fail)
	case endpoint == "revision":
		_, repoID, _ := strings.Cut(key, "/")
		return answerRevision(repoID, repo, r.URL.Query().Get("blobs") == "true")
	case repo.Fail != nil || rev != repo.Commit:
		return nil
	case endpoint == "xet-read-token":
		return h.answerXetToken(key)
	case r.URL.Query().Get("recursive") != "true":
		return nil
	}
	return answerTree(repo)
}

// answerError answers e: its status, X-Error-Code and X-Error-Message, and
// {"error": message} (no body for HEAD).
func answerError(e Error) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		if e.Code != "" {
			w.Header().Set("X-Error-Code", e.Code)
		}
		w.Header().Set("X-Error-Message", e.Message)
		writeJSON(w, e.Status, map[string]string{"error": e.Message})
	}
}

// limited reports whether the request for resource on the repo at key is
// one to answer 429, counting it if so. Called with mu held.
func (h *Hub) limited(key string, repo *Repo, resource string) bool {
	l := repo.Limit
	if l == nil || l.Resource != resource || (l.Count >= 0 && h.limitedCount[key] >= l.Count) {
		return false
	}
	h.limitedCount[key]++
	return true
}

// answerLimited answers 429 Too Many Requests with the Hub's rate-limit
// headers: no request left (r=0), l.Reset seconds until the window resets.
func answerLimited(l *RateLimit) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("RateLimit", fmt.Sprintf("%q;r=0;t=%d", l.Resource, l.Reset))
		w.Header().Set("RateLimit-Policy", fmt.Sprintf("\"fixed window\";%q;q=%d;w=%d", l.Resource, l.Quota, l.Window))
		writeJSON(w, http.StatusTooManyRequests, map[string]string{"error": "You have been rate-limited; you can retry this action in " + strconv.Itoa(l.Reset) + " seconds."})
	}
}

// answerRevision answers repo_info: the commit, and the files as siblings;
// with blobs (files_metadata=True), each with its size, blob id and, for an
// LFS file, its lfs entry.
func answerRevision(repoID string, repo *Repo, blobs bool) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		siblings := []map[string]any{}
		for _, name := range slices.Sorted(maps.Keys(repo.Files)) {
			s := map[string]any{"rfilename": name}
			if blobs {
				s["size"] = len(repo.Files[name])
				ids := repo.ids[name]
				s["blobId"] = ids.blobID
				if repo.isLFS(name) {
					s["lfs"] = map[string]any{"sha256": ids.sha256, "size": len(repo.Files[name]), "pointerSize": ids.pointerSize}
				}
			}
			siblings = append(siblings, s)
		}
		writeJSON(w, http.StatusOK, map[string]any{"id": repoID, "sha": repo.Commit, "siblings": siblings})
	}
}

// answerTree answers list_repo_tree (recursive): every file, with an lfs
// entry for the LFS ones and its xetHash for a Xet one.
func answerTree(repo *Repo) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		entries := []map[string]any{}
		for _, name := range slices.Sorted(maps.Keys(repo.Files)) {
			ids := repo.ids[name]
			e := map[string]any{"type": "file", "path": name, "size": len(repo.Files[name]), "oid": ids.blobID}
			if repo.isLFS(name) {
				e["lfs"] = map[string]any{"oid": ids.sha256, "size": len(repo.Files[name]), "pointerSize": ids.pointerSize}
			}
			if f := repo.cas.files[name]; f != nil {
				e["xetHash"] = f.hash
			}
			entries = append(entries, e)
		}
		writeJSON(w, http.StatusOK, entries)
	}
}

// answerFile answers HEAD with the metadata hf_hub_download checks (commit,
// ETag, size, for an LFS file X-Linked-Etag and X-Linked-Size, and for a Xet
// file X-Xet-Hash and the Link to its read token), and GET with the file too,
// as repo sends bodies (see sendBody). The repo is at key in h.repos.
func (h *Hub) answerFile(key string, repo *Repo, path string) http.HandlerFunc {
	content := repo.Files[path]
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Repo-Commit", repo.Commit)
		w.Header().Set("ETag", strconv.Quote(repo.ids[path].blobID))
		if repo.isLFS(path) {
			w.Header().Set("X-Linked-Etag", strconv.Quote(repo.ids[path].sha256))
			w.Header().Set("X-Linked-Size", strconv.Itoa(len(content)))
		}
		if f := repo.cas.files[path]; f != nil {
			w.Header().Set("X-Xet-Hash", f.hash)
			w.Header().Set("Link", "<"+h.xetTokenURL(key, repo.Commit)+`>; rel="xet-auth"`)
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(len(content)))
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			h.sendBody(w, r, repo, content)
		}
	}
}

// sendBody writes body, whose headers w has sent, as repo sends file bodies:
// stalled, held back by its gate, paced to its rate, or at once.
func (h *Hub) sendBody(w http.ResponseWriter, r *http.Request, repo *Repo, body string) {
	switch {
	case repo.Stall:
		h.stall(w, r)
	case repo.Gate != nil:
		h.gated(w, r, body, repo.Gate)
	case repo.Rate > 0:
		h.pace(w, r, body, repo.Rate)
	default:
		_, _ = io.WriteString(w, body)
	}
}

// answerAgentHarnesses answers the CLI's agent detection with no harness, so
// hf words its output for people; it caches the answer for a day
// (utils/_detect_agent.py), where a 404 makes it ask on every run.
func answerAgentHarnesses(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"standardEnvVars": []string{}, "harnesses": map[string]any{}})
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
