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
// package's doc matches it. Called with mu held: it only looks r up; the
// answer runs without the lock.
func (h *Hub) route(r *http.Request) http.HandlerFunc {
	// Split the escaped path: hf quotes the revision whole ("a/b" is a%2Fb).
	var parts []string
	for _, p := range strings.Split(strings.TrimPrefix(r.URL.EscapedPath(), "/"), "/") {
		u, err := url.PathUnescape(p)
		if err != nil {
			return nil
		}
		parts = append(parts, u)
	}
	switch {
	case r.Method == http.MethodGet && len(parts) == 2 && parts[0] == "api" && parts[1] == "agent-harnesses":
		return http.NotFound
	case r.Method == http.MethodGet && len(parts) == 6 && parts[0] == "api" && (parts[1] == "models" || parts[1] == "datasets"):
		repoID := parts[2] + "/" + parts[3]
		key := strings.TrimSuffix(parts[1], "s") + "/" + repoID
		repo := h.repos[key]
		if repo == nil || (parts[4] != "revision" && parts[4] != "tree") {
			return nil
		}
		if !repo.allows(r) {
			return answerError(private)
		}
		if h.limited(key, repo, "api") {
			return answerLimited(repo.Limit)
		}
		if parts[4] == "revision" {
			if repo.Fail != nil {
				return answerError(*repo.Fail)
			}
			return answerRevision(repoID, repo, r.URL.Query().Get("blobs") == "true")
		}
		if repo.Fail != nil || parts[5] != repo.Commit || r.URL.Query().Get("recursive") != "true" {
			return nil
		}
		return answerTree(repo)
	case r.Method == http.MethodGet || r.Method == http.MethodHead:
		repoType := "model"
		if len(parts) > 0 && parts[0] == "datasets" {
			repoType, parts = "dataset", parts[1:]
		}
		if len(parts) < 5 || parts[2] != "resolve" {
			return nil
		}
		key := repoType + "/" + parts[0] + "/" + parts[1]
		repo := h.repos[key]
		if repo == nil {
			return nil
		}
		if !repo.allows(r) {
			return answerError(private)
		}
		// Any revision: snapshot_download asks by the commit it resolved,
		// hf_hub_download (one file) by the revision it was given.
		path := strings.Join(parts[4:], "/")
		if _, ok := repo.Files[path]; repo.Fail != nil || !ok {
			return nil
		}
		if h.limited(key, repo, "resolvers") {
			return answerLimited(repo.Limit)
		}
		return h.answerFile(repo, path)
	}
	return nil
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
				s["blobId"] = repo.blobID(name)
				if repo.isLFS(name) {
					s["lfs"] = map[string]any{"sha256": SHA256(repo.Files[name]), "size": len(repo.Files[name]), "pointerSize": len(lfsPointer(repo.Files[name]))}
				}
			}
			siblings = append(siblings, s)
		}
		writeJSON(w, http.StatusOK, map[string]any{"id": repoID, "sha": repo.Commit, "siblings": siblings})
	}
}

// answerTree answers list_repo_tree (recursive): every file, with an lfs
// entry for the LFS ones.
func answerTree(repo *Repo) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		entries := []map[string]any{}
		for _, name := range slices.Sorted(maps.Keys(repo.Files)) {
			e := map[string]any{"type": "file", "path": name, "size": len(repo.Files[name]), "oid": repo.blobID(name)}
			if repo.isLFS(name) {
				e["lfs"] = map[string]any{"oid": SHA256(repo.Files[name]), "size": len(repo.Files[name]), "pointerSize": len(lfsPointer(repo.Files[name]))}
			}
			entries = append(entries, e)
		}
		writeJSON(w, http.StatusOK, entries)
	}
}

// answerFile answers HEAD with the metadata hf_hub_download checks (commit,
// ETag, size, and for an LFS file X-Linked-Etag and X-Linked-Size), and GET
// with the file too, paced to repo.Rate, held back by repo.Gate, or stalled
// after the headers.
func (h *Hub) answerFile(repo *Repo, path string) http.HandlerFunc {
	content := repo.Files[path]
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Repo-Commit", repo.Commit)
		w.Header().Set("ETag", strconv.Quote(repo.blobID(path)))
		if repo.isLFS(path) {
			w.Header().Set("X-Linked-Etag", strconv.Quote(SHA256(content)))
			w.Header().Set("X-Linked-Size", strconv.Itoa(len(content)))
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(len(content)))
		w.WriteHeader(http.StatusOK)
		switch {
		case r.Method == http.MethodHead:
		case repo.Stall:
			h.stall(w, r)
		case repo.Gate != nil:
			h.gated(w, r, content, repo.Gate)
		case repo.Rate > 0:
			h.pace(w, r, content, repo.Rate)
		default:
			_, _ = io.WriteString(w, content)
		}
	}
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
