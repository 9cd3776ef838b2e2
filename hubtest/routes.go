package hubtest

import (
	"encoding/json"
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
		repo := h.repos[strings.TrimSuffix(parts[1], "s")+"/"+repoID]
		if repo == nil || (parts[4] != "revision" && parts[4] != "tree") {
			return nil
		}
		if !repo.allows(r) {
			return answerError(private)
		}
		if parts[4] == "revision" {
			if repo.Fail != nil {
				return answerError(*repo.Fail)
			}
			return answerRevision(repoID, repo)
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
		repo := h.repos[repoType+"/"+parts[0]+"/"+parts[1]]
		if repo == nil {
			return nil
		}
		if !repo.allows(r) {
			return answerError(private)
		}
		// Any revision: snapshot_download asks by the commit it resolved,
		// hf_hub_download (one file) by the revision it was given.
		content, ok := repo.Files[strings.Join(parts[4:], "/")]
		if repo.Fail != nil || !ok {
			return nil
		}
		return h.answerFile(repo, content)
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

// answerRevision answers repo_info: the commit, and the files as siblings.
func answerRevision(repoID string, repo *Repo) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		siblings := []map[string]string{}
		for _, name := range slices.Sorted(maps.Keys(repo.Files)) {
			siblings = append(siblings, map[string]string{"rfilename": name})
		}
		writeJSON(w, http.StatusOK, map[string]any{"id": repoID, "sha": repo.Commit, "siblings": siblings})
	}
}

// answerTree answers list_repo_tree (recursive): every file, as regular
// (non-LFS) files.
func answerTree(repo *Repo) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		entries := []map[string]any{}
		for _, name := range slices.Sorted(maps.Keys(repo.Files)) {
			entries = append(entries, map[string]any{
				"type": "file", "path": name, "size": len(repo.Files[name]), "oid": GitBlobID(repo.Files[name]),
			})
		}
		writeJSON(w, http.StatusOK, entries)
	}
}

// answerFile answers HEAD with the metadata hf_hub_download checks (commit,
// ETag, size), and GET with the file too, paced to repo.Rate.
func (h *Hub) answerFile(repo *Repo, content string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Repo-Commit", repo.Commit)
		w.Header().Set("ETag", strconv.Quote(GitBlobID(content)))
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(len(content)))
		w.WriteHeader(http.StatusOK)
		switch {
		case r.Method == http.MethodHead:
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
