package hubtest

import (
	"crypto/sha1" //nolint:gosec // git's object ids are SHA-1; nothing here is secured by it
	"crypto/subtle"
	"fmt"
	"net/http"
)

// Repo is a repo as the Hub serves it.
type Repo struct {
	// Fail, when set, is how the repo's revision endpoint answers; its tree
	// and files are then not served.
	Fail *Error
	// Commit is the commit every revision names; Files are its files, by
	// path, with their content.
	Commit string
	Files  map[string]string
	// Token, when set, makes the repo private: a request that does not carry
	// "Authorization: Bearer <Token>" is answered on each of the repo's
	// endpoints as the real Hub answers an unauthenticated request for a
	// private repo: 401, X-Error-Code RepoNotFound, "Invalid username or
	// password.". hf then fails with its "not found ... If the repo is
	// private, make sure you are authenticated" error. The Hub never logs or
	// returns the token.
	Token string
	// Rate, when positive, is the pace of file bodies (GET resolve) in bytes
	// per second; 0 is no limit. A paced body goes out in small chunks and
	// stops as soon as the client goes away or the Hub is closed.
	Rate int
}

// Error is one failing answer: the HTTP status, the X-Error-Code header (none
// when empty) and the message, sent as the X-Error-Message header and as the
// body {"error": Message}. huggingface_hub's hf_raise_for_status
// (utils/_http.py) makes of the code and status a GatedRepoError,
// RepositoryNotFoundError, RevisionNotFoundError or plain HfHubHTTPError.
type Error struct {
	Status  int
	Code    string
	Message string
}

// private is how the Hub answers a request for a private repo without the
// repo's token: 401 with X-Error-Code RepoNotFound, as the real Hub does for
// private (and missing) repos when the request is not authenticated, and the
// message it gives then (huggingface_hub's errors.py shows it in
// RepositoryNotFoundError's example). hf_raise_for_status (utils/_http.py)
// makes of it a RepositoryNotFoundError, which the CLI reports as "<Type>
// '<repo>' not found. If the repo is private, make sure you are authenticated
// ..." (cli/_errors.py). snapshot_download and hf_hub_download raise it
// rather than fall back to local files, unless the local dir already holds
// them.
var private = Error{Status: http.StatusUnauthorized, Code: "RepoNotFound", Message: "Invalid username or password."}

// GitBlobID is git's object id of a blob with content: what the Hub sends as
// a regular (non-LFS) file's oid and ETag.
func GitBlobID(content string) string {
	s := sha1.New() //nolint:gosec // see the import
	_, _ = fmt.Fprintf(s, "blob %d\x00%s", len(content), content)
	return fmt.Sprintf("%x", s.Sum(nil))
}

// allows reports whether r may read the repo: always for a public one, and
// for a private one when r carries its token.
func (repo *Repo) allows(r *http.Request) bool {
	if repo.Token == "" {
		return true
	}
	return subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte("Bearer "+repo.Token)) == 1
}
