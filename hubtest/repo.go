package hubtest

import (
	"crypto/sha1" //nolint:gosec // git's object ids are SHA-1; nothing here is secured by it
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
)

// Repo is a repo as the Hub serves it.
type Repo struct {
	// Fail, when set, is how the repo's revision and xet-read-token
	// endpoints answer; its tree and files are then not served, nor its Xet
	// files by the CAS.
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
	// Rate, when positive, is the pace of file bodies (GET resolve, and a
	// Xet file's xorb GETs) in bytes per second, each body on its own; 0 is
	// no limit. A paced body goes out in small chunks and stops as soon as
	// the client goes away or the Hub is closed.
	Rate int
	// LFS names the files (paths in Files) stored with Git LFS, as the Hub
	// stores weights: the tree and the revision's siblings (with ?blobs=true)
	// give them an lfs entry (sha256, size, pointer size) and the blob id of
	// their pointer file, and resolve answers with X-Linked-Etag (the sha256)
	// and X-Linked-Size, which hf prefers to ETag and Content-Length.
	LFS []string
	// Xet names the files (paths in Files) stored with Xet, as the Hub
	// stores large files now. A Xet file is an LFS file too, whether LFS
	// names it or not, and carries its Xet hash besides: the tree gives it
	// as xetHash, resolve as X-Xet-Hash with a Link (rel="xet-auth") to the
	// repo's xet-read-token endpoint. hf with hf_xet then takes the Xet path:
	// a CAS token, then the file's reconstruction and xorb ranges from the
	// Hub's CAS; GET resolve still serves the file, for hf without hf_xet or
	// with HF_HUB_DISABLE_XET=1. The CAS stores a file in chunks of 64 KiB,
	// uncompressed, packed in order into xorbs of 128 chunks (8 MiB), one
	// term each, the same xorb stored once; its hashes are Xet's own.
	Xet []string
	// Stall, when set, makes file bodies (GET resolve, and xorb GETs) stop
	// after their headers: nothing more is sent until the client goes away
	// or the Hub is closed, what a stalled transfer looks like to hf.
	Stall bool
	// Gate, when set, holds back file bodies (GET resolve, and xorb GETs,
	// whose bytes are chunk records: 8 bytes of header a 64 KiB chunk) until
	// the test lets them through (see [Gate]); Rate is then not applied.
	// Repos may share a gate, and Set keeps it shared: it does not copy it.
	Gate *Gate
	// Limit, when set, rate-limits the repo: its first Limit.Count requests
	// on Limit.Resource's endpoints are answered 429 (see [RateLimit]).
	Limit *RateLimit

	// cas is the Xet files as the CAS stores them; Set makes it.
	cas *casStore
	// ids is each file's ids, as Set computes them once: a request then
	// costs the same for a GiB file as for a small one.
	ids map[string]fileIDs
}

// fileIDs is what the Hub says to identify a file.
type fileIDs struct {
	// blobID is the git blob id of the file as the Hub gives it: of its LFS
	// pointer for an LFS file, of its content otherwise.
	blobID string
	// sha256 is the hex sha256 of an LFS file's content, and pointerSize
	// the size of its LFS pointer; both empty for another file.
	sha256      string
	pointerSize int
}

// identify computes ids of every file.
func (repo *Repo) identify() {
	repo.ids = make(map[string]fileIDs, len(repo.Files))
	for path, content := range repo.Files {
		if !repo.isLFS(path) {
			repo.ids[path] = fileIDs{blobID: GitBlobID(content)}
			continue
		}
		sum := SHA256(content)
		pointer := lfsPointer(sum, len(content))
		repo.ids[path] = fileIDs{blobID: GitBlobID(pointer), sha256: sum, pointerSize: len(pointer)}
	}
}

// RateLimit is how the Hub rate-limits a repo's requests: with 429 Too Many
// Requests and the IETF draft headers the Hub sends, "RateLimit:
// "<Resource>";r=0;t=<Reset>" and "RateLimit-Policy: "fixed
// window";"<Resource>";q=<Quota>;w=<Window>". huggingface_hub
// (utils/_http.py) retries such an answer after t+1 seconds, up to 5 times,
// for the requests it retries (file metadata and bodies), and then fails with
// "429 Too Many Requests: you have reached your '<Resource>' rate limit".
//
// The CAS is never rate-limited: hf_xet waits seconds to minutes between its
// own retries and reads no rate-limit header.
type RateLimit struct {
	// Resource is "api" (the /api endpoints: revision, tree and
	// xet-read-token) or "resolvers" (the files: resolve, HEAD and GET).
	Resource string
	// Count is how many of those requests are answered 429 before the Hub
	// serves them again; a negative Count limits them all.
	Count int
	// Reset is the seconds until the limit resets, the t= of RateLimit.
	Reset int
	// Quota and Window are RateLimit-Policy's q= and w=.
	Quota, Window int
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

// lfsPointer is the Git LFS pointer file that git stores for content.
func lfsPointer(sha256 string, size int) string {
	return fmt.Sprintf("version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n", sha256, size)
}

// SHA256 is the hex sha256 of content: what the Hub sends as an LFS file's
// oid and X-Linked-Etag.
func SHA256(content string) string {
	return fmt.Sprintf("%x", sha256.Sum256([]byte(content)))
}

// isLFS reports whether the file at path is stored with LFS: named by LFS, or
// by Xet.
func (repo *Repo) isLFS(path string) bool {
	return slices.Contains(repo.LFS, path) || repo.cas.files[path] != nil
}

// allows reports whether r may read the repo: always for a public one, and
// for a private one when r carries its token.
func (repo *Repo) allows(r *http.Request) bool {
	if repo.Token == "" {
		return true
	}
	return subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte("Bearer "+repo.Token)) == 1
}

// Shards is a model of n weight files of size bytes each, named as the Hub
// names shards, whose content neither repeats nor compresses (so that a Xet
// file is every xorb of its own, and a transfer moves every byte), beside a
// config; and the shards' names. A fixed seed makes it the same bytes in every
// run.
func Shards(n, size int) (files map[string]string, shards []string) {
	files = map[string]string{"config.json": `{"model_type":"llama"}`}
	r := rand.NewChaCha8([32]byte{'s', 'h', 'a', 'r', 'd', 's'})
	buf := make([]byte, 1<<20)
	for i := range n {
		var b strings.Builder
		b.Grow(size)
		for b.Len() < size {
			_, _ = r.Read(buf)
			b.Write(buf[:min(len(buf), size-b.Len())])
		}
		name := fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, n)
		files[name] = b.String()
		shards = append(shards, name)
	}
	return files, shards
}
