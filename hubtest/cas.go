package hubtest

import (
	"cmp"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The Hub's Xet CAS: how it stores Xet files, and its endpoints, as hf_xet
// 1.8.0 reads them (cas_client/remote_client.rs; cas_types for the JSON).

const (
	// xetChunkSize is the content of a chunk, the last of a file's maybe
	// less; hf_xet takes chunks of up to 128 KiB.
	xetChunkSize = 64 << 10
	// xetXorbChunks is the chunks a xorb holds, the last of a file's maybe
	// fewer: 8 MiB of content, so that a large file spans several xorbs
	// and hf_xet's download buffer (64 MB at the least) holds a whole one.
	xetXorbChunks = 128
	// chunkHeaderSize is the header of a chunk record in a xorb.
	chunkHeaderSize = 8
	// casTokenLifetime is how long a CAS token lasts: hf_xet asks for
	// another when less than 30 s are left, huggingface_hub when less than
	// 60.
	casTokenLifetime = time.Hour
)

// casStore is a repo's Xet files as the CAS stores them.
type casStore struct {
	files  map[string]*casFile // by path in the repo
	byHash map[string]*casFile // by file hash
	xorbs  map[string]*xorb    // by xorb hash
}

// casFile is a file as the CAS stores it.
type casFile struct {
	hash  string // the file hash
	size  int
	terms []casTerm // in file order
}

// casTerm is a term of a file: the chunks [start, end) of a xorb.
type casTerm struct {
	xorb       *xorb
	start, end int
}

// xorb is a xorb as the CAS serves it: the records of its chunks, in order,
// each an 8-byte header (version 0; the compressed length; compression
// scheme 0, none; the uncompressed length; both lengths 24-bit little-endian)
// and the chunk's bytes as they are. No footer: downloads never read it.
type xorb struct {
	hash    string
	records string
	// offsets[i] is where chunk i's record starts in records; the last is
	// len(records).
	offsets []int
}

// chunkSize is the content of chunk i.
func (x *xorb) chunkSize(i int) int { return x.offsets[i+1] - x.offsets[i] - chunkHeaderSize }

// contentSize is the content of chunks [start, end).
func (x *xorb) contentSize(start, end int) int {
	return x.offsets[end] - x.offsets[start] - (end-start)*chunkHeaderSize
}

// newCASStore stores the files named by xet; it panics when one is not in
// files.
func newCASStore(files map[string]string, xet []string) *casStore {
	s := &casStore{files: map[string]*casFile{}, byHash: map[string]*casFile{}, xorbs: map[string]*xorb{}}
	for _, path := range xet {
		content, ok := files[path]
		if !ok {
			panic("hubtest: Xet file " + path + " is not among the repo's files")
		}
		s.files[path] = s.add(content)
	}
	return s
}

// add stores content, its xorbs once each, and returns the file.
func (s *casStore) add(content string) *casFile {
	f := &casFile{size: len(content)}
	var chunks []merkleNode
	for off := 0; off < len(content); off += xetXorbChunks * xetChunkSize {
		x, xorbChunks := newXorb(content[off:min(len(content), off+xetXorbChunks*xetChunkSize)])
		if stored := s.xorbs[x.hash]; stored != nil {
			x = stored
		}
		s.xorbs[x.hash] = x
		f.terms = append(f.terms, casTerm{xorb: x, start: 0, end: len(xorbChunks)})
		chunks = append(chunks, xorbChunks...)
	}
	f.hash = fileHash(chunks).String()
	if stored := s.byHash[f.hash]; stored != nil {
		return stored
	}
	s.byHash[f.hash] = f
	return f
}

// newXorb is the xorb of content, cut into chunks, and its chunks' hashes.
func newXorb(content string) (*xorb, []merkleNode) {
	x := &xorb{}
	var records strings.Builder
	var chunks []merkleNode
	for off := 0; off < len(content); off += xetChunkSize {
		chunk := content[off:min(len(content), off+xetChunkSize)]
		x.offsets = append(x.offsets, records.Len())
		// Each length is the 3 bytes after a zero: version 0, scheme none.
		n := uint32(len(chunk)) //nolint:gosec // at most xetChunkSize
		var header [chunkHeaderSize]byte
		binary.LittleEndian.PutUint32(header[:], n<<8)
		binary.LittleEndian.PutUint32(header[4:], n<<8)
		records.Write(header[:])
		records.WriteString(chunk)
		chunks = append(chunks, merkleNode{chunkHash([]byte(chunk)), len(chunk)})
	}
	x.offsets = append(x.offsets, records.Len())
	x.records = records.String()
	x.hash = xorbHash(chunks).String()
	return x, chunks
}

// reconstruction is the CAS's answer to a reconstruction query
// (QueryReconstructionResponseV2).
type reconstruction struct {
	// OffsetIntoFirstRange is where the bytes asked for start in the first
	// term's first chunk.
	OffsetIntoFirstRange int                    `json:"offset_into_first_range"`
	Terms                []reconstructionTerm   `json:"terms"`
	Xorbs                map[string][]xorbFetch `json:"xorbs"` // by xorb hash
}

// reconstructionTerm is a term: chunks of a xorb and their whole content's
// length (the client cuts the first and last term to the bytes asked for).
type reconstructionTerm struct {
	Hash           string     `json:"hash"`
	UnpackedLength int        `json:"unpacked_length"`
	Range          chunkRange `json:"range"`
}

// chunkRange is chunks of a xorb: [Start, End).
type chunkRange struct {
	Start int `json:"start"`
	End   int `json:"end"`
}

// xorbFetch is where to fetch runs of a xorb's chunks: one GET of URL for
// each, with Range: bytes=<Bytes.Start>-<Bytes.End>.
type xorbFetch struct {
	URL    string      `json:"url"`
	Ranges []xorbRange `json:"ranges"`
}

// xorbRange is a run of a xorb's chunks and the bytes of their records.
type xorbRange struct {
	Chunks chunkRange `json:"chunks"`
	Bytes  byteRange  `json:"bytes"`
}

// byteRange is bytes [Start, End], End included, as in an HTTP Range.
type byteRange struct {
	Start int `json:"start"`
	End   int `json:"end"`
}

// reconstruct answers a query for the file's bytes [qs, qe), 0 <= qs < qe <=
// size, as hf_xet's reference server does (compute_reconstruction_ranges in
// cas_client/simulation/xorb_utils.rs): the terms over those bytes, less the
// whole chunks before qs and from qe on; where qs falls in the first term's
// first chunk; and for each xorb one fetch, of the terms' runs of chunks
// merged where they overlap or touch. xorbURL is the URL of a xorb by hash.
func (f *casFile) reconstruct(qs, qe int, xorbURL func(hash string) string) reconstruction {
	rec := reconstruction{Terms: []reconstructionTerm{}, Xorbs: map[string][]xorbFetch{}}
	runs := map[*xorb][]chunkRange{}
	firstChunk := 0 // where the first term's first chunk starts in the file
	at := 0         // where the term starts in the file
	for _, t := range f.terms {
		x, start, end := t.xorb, t.start, t.end
		n := x.contentSize(start, end)
		if at+n <= qs {
			at += n
			continue
		}
		if at >= qe {
			break
		}
		for ; at+x.chunkSize(start) <= qs; start++ {
			at += x.chunkSize(start)
			n -= x.chunkSize(start)
		}
		for ; at+n-x.chunkSize(end-1) >= qe; end-- {
			n -= x.chunkSize(end - 1)
		}
		if len(rec.Terms) == 0 {
			firstChunk = at
		}
		rec.Terms = append(rec.Terms, reconstructionTerm{Hash: x.hash, UnpackedLength: n, Range: chunkRange{start, end}})
		runs[x] = append(runs[x], chunkRange{start, end})
		at += n
	}
	rec.OffsetIntoFirstRange = qs - firstChunk
	for x, chunks := range runs {
		slices.SortFunc(chunks, func(a, b chunkRange) int { return cmp.Compare(a.Start, b.Start) })
		var ranges []xorbRange
		for _, c := range chunks {
			if last := len(ranges) - 1; last >= 0 && c.Start <= ranges[last].Chunks.End {
				ranges[last].Chunks.End = max(ranges[last].Chunks.End, c.End)
				continue
			}
			ranges = append(ranges, xorbRange{Chunks: c})
		}
		for i, r := range ranges {
			ranges[i].Bytes = byteRange{x.offsets[r.Chunks.Start], x.offsets[r.Chunks.End] - 1}
		}
		rec.Xorbs[x.hash] = []xorbFetch{{URL: xorbURL(x.hash), Ranges: ranges}}
	}
	return rec
}

// casToken is a CAS token the Hub issued.
type casToken struct {
	repo    string // the key of the repo, in Hub.repos, it reads
	expires time.Time
}

// xetTokenURL is the read-token endpoint of the repo at key (in h.repos) at
// commit: what resolve links to and huggingface_hub builds from a tree
// (utils/_xet.py).
func (h *Hub) xetTokenURL(key, commit string) string {
	repoType, repoID, _ := strings.Cut(key, "/")
	return h.url + "/api/" + repoType + "s/" + repoID + "/xet-read-token/" + commit
}

// answerXetToken issues a CAS token for the repo at key and answers with it,
// the CAS's URL and the token's expiry both ways the clients read them:
// huggingface_hub 2.4 the X-Xet-* headers (utils/_xet.py), hf_xet when it
// refreshes the token the JSON body (hub_client/types.rs). Called with mu
// held.
func (h *Hub) answerXetToken(key string) http.HandlerFunc {
	token := "xet_" + rand.Text()
	expires := time.Now().Add(casTokenLifetime)
	h.casTokens[token] = casToken{repo: key, expires: expires}
	casURL := h.url + "/cas"
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-Xet-Cas-Url", casURL)
		w.Header().Set("X-Xet-Access-Token", token)
		w.Header().Set("X-Xet-Token-Expiration", strconv.FormatInt(expires.Unix(), 10))
		writeJSON(w, http.StatusOK, map[string]any{"accessToken": token, "exp": expires.Unix(), "casUrl": casURL})
	}
}

// casRepo is the key of the repo (in h.repos) that r's CAS token reads, or ""
// when r carries none the Hub issued, or one expired. Called with mu held.
func (h *Hub) casRepo(r *http.Request) string {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	t, issued := h.casTokens[token]
	if !ok || !issued || time.Now().After(t.expires) {
		return ""
	}
	return t.repo
}

// routeCAS returns the answer to r, a request to the CAS split into parts,
// and the key of the repo it is for; ok is false when r is for no CAS
// endpoint. Called with mu held.
func (h *Hub) routeCAS(r *http.Request, parts []string) (answer http.HandlerFunc, repo string, ok bool) {
	switch {
	case r.Method == http.MethodPost && len(parts) == 2 && parts[0] == "v1" && parts[1] == "telemetry":
		// At the root of the CAS's host, whatever the path of its URL
		// (cas_client/telemetry/mod.rs); best effort, so never refused.
		return answerTelemetry, h.casRepo(r), true
	case r.Method == http.MethodGet && len(parts) == 4 && parts[0] == "cas" && parts[1] == "v2" && parts[2] == "reconstructions":
		key := h.casRepo(r)
		if key == "" {
			return answerCASUnauthorized, "", true
		}
		repo := h.repos[key]
		if repo == nil || repo.Fail != nil || repo.cas.byHash[parts[3]] == nil {
			// hf_xet then asks v1, which the CAS does not serve: unknown.
			return answerCASNotFound, key, true
		}
		return h.answerReconstruction(key, repo.cas.byHash[parts[3]]), key, true
	case r.Method == http.MethodGet && len(parts) == 6 && parts[0] == "cas" && parts[1] == "xorbs" && (parts[2] == "model" || parts[2] == "dataset"):
		key := parts[2] + "/" + parts[3] + "/" + parts[4]
		repo := h.repos[key]
		if repo == nil || repo.Fail != nil || repo.cas.xorbs[parts[5]] == nil {
			return nil, key, true
		}
		return h.answerXorb(repo, repo.cas.xorbs[parts[5]]), key, true
	}
	return nil, "", false
}

func answerTelemetry(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	w.WriteHeader(http.StatusNoContent)
}

// answerCASUnauthorized answers a request without a valid CAS token; hf_xet
// fails the download on it (it refreshes tokens by their expiry only).
func answerCASUnauthorized(w http.ResponseWriter, _ *http.Request) {
	http.Error(w, "missing, unknown or expired CAS token", http.StatusUnauthorized)
}

func answerCASNotFound(w http.ResponseWriter, _ *http.Request) {
	http.Error(w, "no such file in the repo's CAS", http.StatusNotFound)
}

// xorbURL is where the CAS serves the xorb hash of the repo at key (in
// h.repos); the repo in it tells which gate, pace or stall its bodies get.
func (h *Hub) xorbURL(key, hash string) string {
	repoType, repoID, _ := strings.Cut(key, "/")
	org, name, _ := strings.Cut(repoID, "/")
	return h.url + "/cas/xorbs/" + repoType + "/" + url.PathEscape(org) + "/" + url.PathEscape(name) + "/" + hash
}

// answerReconstruction answers a query for the bytes of f that r's Range
// asks for (hf_xet always sends one): 416 past the end, as hf_xet expects.
func (h *Hub) answerReconstruction(key string, f *casFile) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start, end, ok := parseRange(r.Header.Get("Range"), f.size)
		if !ok {
			answerUnsatisfiable(w, f.size)
			return
		}
		writeJSON(w, http.StatusOK, f.reconstruct(start, end, func(hash string) string { return h.xorbURL(key, hash) }))
	}
}

// answerXorb answers with the bytes of x's records that r's Range asks for,
// exactly (hf_xet parses chunk records to the end of the body), as repo
// sends bodies (see sendBody).
func (h *Hub) answerXorb(repo *Repo, x *xorb) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start, end, ok := parseRange(r.Header.Get("Range"), len(x.records))
		if !ok {
			answerUnsatisfiable(w, len(x.records))
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(end-start))
		status := http.StatusOK
		if r.Header.Get("Range") != "" {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, end-1, len(x.records)))
			status = http.StatusPartialContent
		}
		w.WriteHeader(status)
		h.sendBody(w, r, repo, x.records[start:end])
	}
}

func answerUnsatisfiable(w http.ResponseWriter, size int) {
	w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", size))
	http.Error(w, "range not satisfiable", http.StatusRequestedRangeNotSatisfiable)
}

// parseRange is the bytes [start, end) of a body of size bytes that a Range
// header asks for: all without one; else one range, bytes=a-b (b included,
// cut to the body), bytes=a- or bytes=-n (the last n). ok is false for a
// range that starts past the end, none at all (an empty body), several
// ranges or another form: the CAS answers those 416.
func parseRange(header string, size int) (start, end int, ok bool) {
	if header == "" {
		return 0, size, size > 0
	}
	spec, isBytes := strings.CutPrefix(header, "bytes=")
	first, last, found := strings.Cut(spec, "-")
	if !isBytes || !found {
		return 0, 0, false
	}
	if first == "" {
		n, err := strconv.Atoi(last)
		if err != nil || n <= 0 {
			return 0, 0, false
		}
		return max(0, size-n), size, size > 0
	}
	start, err := strconv.Atoi(first)
	if err != nil || start < 0 {
		return 0, 0, false
	}
	end = size
	if last != "" {
		b, err := strconv.Atoi(last)
		if err != nil || b < start {
			return 0, 0, false
		}
		end = min(b+1, size)
	}
	return start, end, start < size
}

// XetTraffic is what a log of requests (Seen, SeenFor) shows of the Xet path: read-token
// calls, reconstructions and xorb GETs at the CAS, and GETs of resolve, which hf sends for a
// Xet-backed file only when it does not take that path.
type XetTraffic struct {
	Tokens, Reconstructions, Xorbs, Resolves int
}

// CountXet counts the Xet traffic in requests; Resolves counts the GETs of resolve of file
// (a path in its repo) alone.
func CountXet(requests []string, file string) XetTraffic {
	var c XetTraffic
	for _, r := range requests {
		switch {
		case strings.Contains(r, "/xet-read-token/"):
			c.Tokens++
		case strings.HasPrefix(r, "GET /cas/v2/reconstructions/"):
			c.Reconstructions++
		case strings.HasPrefix(r, "GET /cas/xorbs/"):
			c.Xorbs++
		case file != "" && strings.HasPrefix(r, "GET /") && strings.Contains(r, "/resolve/") && strings.HasSuffix(r, "/"+file):
			c.Resolves++
		}
	}
	return c
}
