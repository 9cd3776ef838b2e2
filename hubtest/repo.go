package hubtest

import (
	"crypto/sha1" //nolint:gosec // git's object ids are SHA-1; nothing here is secured by it
	"fmt"
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

// GitBlobID is git's object id of a blob with content: what the Hub sends as
// a regular (non-LFS) file's oid and ETag.
func GitBlobID(content string) string {
	s := sha1.New() //nolint:gosec // see the import
	_, _ = fmt.Fprintf(s, "blob %d\x00%s", len(content), content)
	return fmt.Sprintf("%x", s.Sum(nil))
}
