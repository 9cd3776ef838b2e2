package hubtest

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
)

// The tests here drive the Hub's Xet side with Go's client, as hf_xet would;
// realhf_xet_test.go drives it with the real hf and hf_xet.

// vectorFile is the file of /work/notes/xet-protocol.md §3.5 and §5.4:
// 200,000 bytes, i%251 at i; four chunks (3 of 64 KiB and 3392 bytes) in
// one xorb.
var vectorFile = func() string {
	b := make([]byte, 200000)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return string(b)
}()

const (
	vectorFileHash = "578ad91df570d182d65ab00aa60be96855233039de30ab0d325a9e86f68c235e"
	vectorXorbHash = "9e44ee0053e434067d6afb5dd77b6455de40062e578f6b944fd5ecac4f314832"
)

// randomContent is n bytes that no other seed gives, the same every run.
func randomContent(n int, seed byte) string {
	b := make([]byte, n)
	_, _ = rand.NewChaCha8([32]byte{seed}).Read(b) // never fails
	return string(b)
}

// xorbBytes is the content of a whole xorb.
const xorbBytes = xetXorbChunks * xetChunkSize

// fourTerms is a file of four terms over three xorbs, the first stored once
// and used twice: two xorbs' worth of content, the first again, and 100 KB.
var fourTerms = func() string {
	a, b := randomContent(xorbBytes, 1), randomContent(xorbBytes, 2)
	return a + b + a + randomContent(100000, 3)
}()

// TestXetStore: the CAS cuts a file into 64 KiB chunks, in xorbs of 128
// chunks whose records are 8-byte headers (scheme none) and the chunk's bytes,
// and hashes them as hf_xet does: the spec's vector file gives the spec's
// chunk, xorb and file hashes and serialized records; a file repeating a
// xorb's content stores that xorb once; two paths of one content are one file.
func TestXetStore(t *testing.T) {
	s := newCASStore(map[string]string{"v.bin": vectorFile, "again.bin": vectorFile, "four.bin": fourTerms}, []string{"v.bin", "again.bin", "four.bin"})
	v := s.files["v.bin"]
	x := s.xorbs[vectorXorbHash]
	if v == nil || x == nil {
		t.Fatalf("no file %s or xorb %s in the store", vectorFileHash, vectorXorbHash)
	}
	var chunks []string
	for i := range len(x.offsets) - 1 {
		chunks = append(chunks, chunkHash([]byte(x.records[x.offsets[i]+chunkHeaderSize:x.offsets[i+1]])).String())
	}
	got := map[string]any{
		"file hash":      v.hash,
		"size":           v.size,
		"terms":          len(v.terms),
		"chunk hashes":   chunks,
		"record offsets": x.offsets,
		"records sha256": fmt.Sprintf("%x", sha256.Sum256([]byte(x.records))),
		"first header":   fmt.Sprintf("% x", x.records[:chunkHeaderSize]),
		"last header":    fmt.Sprintf("% x", x.records[x.offsets[3]:x.offsets[3]+chunkHeaderSize]),
		"same content":   s.files["again.bin"] == v,
	}
	want := map[string]any{
		"file hash": vectorFileHash,
		"size":      200000,
		"terms":     1,
		"chunk hashes": []string{
			"9f92025c37b4803a3a65057b1a284756a9f9d5b00b5ea2eec3bb40711dd11a38",
			"9d82629f78440184fc52c54a3e6655a0ef630de3e8c0db5dd7c12007179a0ba7",
			"9856e45edc645eccd90a2011eae139e76207c172fe59fef5cac329a486e42cb8",
			"50038c53c073f028cc407927b2a27d3cf6efaab8d9a5dc463202e9371bcc6a11",
		},
		"record offsets": []int{0, 65544, 131088, 196632, 200032},
		"records sha256": "603e390ed80f5c2b01afaf3d13698421ff0950ebc3c4c6890d2d54810a4cffae",
		"first header":   "00 00 00 01 00 00 00 01",
		"last header":    "00 40 0d 00 00 40 0d 00",
		"same content":   true,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("the vector file (-want +got):\n%s", diff)
	}

	four := s.files["four.bin"]
	var terms []string
	for _, term := range four.terms {
		terms = append(terms, fmt.Sprintf("%s %d-%d", term.xorb.hash, term.start, term.end))
	}
	a, b, c := four.terms[0].xorb.hash, four.terms[1].xorb.hash, four.terms[3].xorb.hash
	if diff := cmp.Diff([]string{a + " 0-128", b + " 0-128", a + " 0-128", c + " 0-2"}, terms); diff != "" {
		t.Errorf("the terms of a file repeating a xorb (-want +got):\n%s", diff)
	}
	if len(s.xorbs) != 4 || a == b || b == c {
		t.Errorf("%d xorbs stored (%s, %s, %s), want the vector file's and 3 distinct ones", len(s.xorbs), a, b, c)
	}
}

// TestXetReconstruct: a query for a file's bytes [qs, qe) gives the terms
// over them, cut to whole chunks, the offset of qs in the first chunk, and
// for each xorb one fetch of its runs of chunks, merged where they overlap or
// touch, with the bytes of their records: the spec's two examples (§3.5) and
// the cases around them.
func TestXetReconstruct(t *testing.T) {
	s := newCASStore(map[string]string{"v.bin": vectorFile, "four.bin": fourTerms}, []string{"v.bin", "four.bin"})
	four := s.files["four.bin"]
	a, b, c := four.terms[0].xorb.hash, four.terms[1].xorb.hash, four.terms[3].xorb.hash
	const xorbRecords = xorbBytes + xetXorbChunks*chunkHeaderSize
	fetch := func(hash string, ranges ...xorbRange) []xorbFetch {
		return []xorbFetch{{URL: "url of " + hash, Ranges: ranges}}
	}
	vector := func(start, end, bytesStart, bytesEnd int) []xorbFetch {
		return fetch(vectorXorbHash, xorbRange{chunkRange{start, end}, byteRange{bytesStart, bytesEnd}})
	}
	term := func(hash string, n, start, end int) reconstructionTerm {
		return reconstructionTerm{Hash: hash, UnpackedLength: n, Range: chunkRange{start, end}}
	}
	for _, tc := range []struct {
		name   string
		file   *casFile
		qs, qe int
		want   reconstruction
	}{
		{"spec: whole file", s.files["v.bin"], 0, 200000, reconstruction{0, []reconstructionTerm{term(vectorXorbHash, 200000, 0, 4)}, map[string][]xorbFetch{vectorXorbHash: vector(0, 4, 0, 200031)}}},
		{"spec: bytes=70000-150000", s.files["v.bin"], 70000, 150001, reconstruction{4464, []reconstructionTerm{term(vectorXorbHash, 131072, 1, 3)}, map[string][]xorbFetch{vectorXorbHash: vector(1, 3, 65544, 196631)}}},
		{"one chunk, whole", s.files["v.bin"], 65536, 131072, reconstruction{0, []reconstructionTerm{term(vectorXorbHash, 65536, 1, 2)}, map[string][]xorbFetch{vectorXorbHash: vector(1, 2, 65544, 131087)}}},
		{"last byte", s.files["v.bin"], 199999, 200000, reconstruction{3391, []reconstructionTerm{term(vectorXorbHash, 3392, 3, 4)}, map[string][]xorbFetch{vectorXorbHash: vector(3, 4, 196632, 200031)}}},
		{"first byte", s.files["v.bin"], 0, 1, reconstruction{0, []reconstructionTerm{term(vectorXorbHash, 65536, 0, 1)}, map[string][]xorbFetch{vectorXorbHash: vector(0, 1, 0, 65543)}}},
		{"whole file of four terms", four, 0, len(fourTerms), reconstruction{0,
			[]reconstructionTerm{term(a, xorbBytes, 0, 128), term(b, xorbBytes, 0, 128), term(a, xorbBytes, 0, 128), term(c, 100000, 0, 2)},
			map[string][]xorbFetch{
				a: fetch(a, xorbRange{chunkRange{0, 128}, byteRange{0, xorbRecords - 1}}),
				b: fetch(b, xorbRange{chunkRange{0, 128}, byteRange{0, xorbRecords - 1}}),
				c: fetch(c, xorbRange{chunkRange{0, 2}, byteRange{0, 100000 + 2*chunkHeaderSize - 1}}),
			}}},
		{"across a xorb's end", four, xorbBytes - 10, xorbBytes + 10, reconstruction{xetChunkSize - 10,
			[]reconstructionTerm{term(a, xetChunkSize, 127, 128), term(b, xetChunkSize, 0, 1)},
			map[string][]xorbFetch{
				a: fetch(a, xorbRange{chunkRange{127, 128}, byteRange{127 * (xetChunkSize + chunkHeaderSize), xorbRecords - 1}}),
				b: fetch(b, xorbRange{chunkRange{0, 1}, byteRange{0, xetChunkSize + chunkHeaderSize - 1}}),
			}}},
		{"a xorb twice, runs apart", four, xorbBytes - 5, 3*xorbBytes + 70000, reconstruction{xetChunkSize - 5,
			[]reconstructionTerm{term(a, xetChunkSize, 127, 128), term(b, xorbBytes, 0, 128), term(a, xorbBytes, 0, 128), term(c, 100000, 0, 2)},
			map[string][]xorbFetch{
				a: fetch(a, xorbRange{chunkRange{0, 128}, byteRange{0, xorbRecords - 1}}),
				b: fetch(b, xorbRange{chunkRange{0, 128}, byteRange{0, xorbRecords - 1}}),
				c: fetch(c, xorbRange{chunkRange{0, 2}, byteRange{0, 100000 + 2*chunkHeaderSize - 1}}),
			}}},
		{"a xorb twice, runs touching", four, 100*xetChunkSize + 7, 2*xorbBytes + 100*xetChunkSize + 5, reconstruction{7,
			[]reconstructionTerm{term(a, 28*xetChunkSize, 100, 128), term(b, xorbBytes, 0, 128), term(a, 101*xetChunkSize, 0, 101)},
			map[string][]xorbFetch{
				a: fetch(a, xorbRange{chunkRange{0, 128}, byteRange{0, xorbRecords - 1}}),
				b: fetch(b, xorbRange{chunkRange{0, 128}, byteRange{0, xorbRecords - 1}}),
			}}},
		{"a xorb twice, runs apart in it", four, 100*xetChunkSize + 7, 2*xorbBytes + 90*xetChunkSize + 5, reconstruction{7,
			[]reconstructionTerm{term(a, 28*xetChunkSize, 100, 128), term(b, xorbBytes, 0, 128), term(a, 91*xetChunkSize, 0, 91)},
			map[string][]xorbFetch{
				a: fetch(a,
					xorbRange{chunkRange{0, 91}, byteRange{0, 91*(xetChunkSize+chunkHeaderSize) - 1}},
					xorbRange{chunkRange{100, 128}, byteRange{100 * (xetChunkSize + chunkHeaderSize), xorbRecords - 1}}),
				b: fetch(b, xorbRange{chunkRange{0, 128}, byteRange{0, xorbRecords - 1}}),
			}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.file.reconstruct(tc.qs, tc.qe, func(hash string) string { return "url of " + hash })
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("reconstruct(%d, %d) (-want +got):\n%s", tc.qs, tc.qe, diff)
			}
		})
	}
}

// xetToken is a CAS token for the model repoID, asked for with the
// Authorization header auth (none when empty), as huggingface_hub asks.
func xetToken(t *testing.T, h *testHub, repoID, auth string) string {
	t.Helper()
	r := get(t, h, http.MethodGet, "/api/models/"+repoID+"/xet-read-token/"+commit, auth)
	if r.Status != http.StatusOK || r.Header["X-Xet-Access-Token"] == "" {
		t.Fatalf("no CAS token for %s: %+v", repoID, r)
	}
	return r.Header["X-Xet-Access-Token"]
}

// xetRead reads the bytes of file hash that rng asks for from h's CAS with
// the CAS token, as hf_xet does (file_reconstruction): the reconstruction,
// then a GET of each xorb range, then the terms' chunks in order, less the
// offset into the first and cut to n bytes. It fails the test where hf_xet
// would fail the download.
func xetRead(t *testing.T, h *testHub, token, hash, rng string, n int) string {
	t.Helper()
	r := send(t, h, http.MethodGet, "/cas/v2/reconstructions/"+hash, "Bearer "+token, rng)
	var rec reconstruction
	if r.Status != http.StatusOK || json.Unmarshal([]byte(r.Body), &rec) != nil {
		t.Fatalf("reconstruction of %s, %s: %+v", hash, rng, r)
	}
	chunks := map[string]map[int]string{} // by xorb hash, by index
	for xorbHash, fetches := range rec.Xorbs {
		chunks[xorbHash] = map[int]string{}
		for _, f := range fetches {
			path, ok := strings.CutPrefix(f.URL, h.URL())
			if !ok {
				t.Fatalf("xorb %s at %s, not on the Hub", xorbHash, f.URL)
			}
			for _, xr := range f.Ranges {
				rng := fmt.Sprintf("bytes=%d-%d", xr.Bytes.Start, xr.Bytes.End)
				body := send(t, h, http.MethodGet, path, "", rng)
				if body.Status != http.StatusPartialContent {
					t.Fatalf("GET %s %s: %+v", path, rng, body.Status)
				}
				records := parseRecords(t, body.Body)
				if len(records) != xr.Chunks.End-xr.Chunks.Start {
					t.Fatalf("GET %s %s: %d chunks, want %v", path, rng, len(records), xr.Chunks)
				}
				for i, c := range records {
					chunks[xorbHash][xr.Chunks.Start+i] = c
				}
			}
		}
	}
	var out strings.Builder
	for i, term := range rec.Terms {
		var data strings.Builder
		for c := term.Range.Start; c < term.Range.End; c++ {
			chunk, ok := chunks[term.Hash][c]
			if !ok {
				t.Fatalf("term %d: no fetch gave chunk %d of xorb %s", i, c, term.Hash)
			}
			data.WriteString(chunk)
		}
		if data.Len() != term.UnpackedLength {
			t.Fatalf("term %d: %d bytes, unpacked_length %d", i, data.Len(), term.UnpackedLength)
		}
		if i == 0 {
			out.WriteString(data.String()[rec.OffsetIntoFirstRange:])
		} else {
			out.WriteString(data.String())
		}
	}
	if out.Len() < n {
		t.Fatalf("%d bytes reconstructed, want %d", out.Len(), n)
	}
	return out.String()[:n]
}

// parseRecords is the chunks of records, a xorb body, failing the test where
// hf_xet's parser fails (xorb_chunk_format.rs).
func parseRecords(t *testing.T, records string) []string {
	t.Helper()
	var chunks []string
	for len(records) > 0 {
		if len(records) < chunkHeaderSize {
			t.Fatalf("%d bytes left, less than a header", len(records))
		}
		h := records[:chunkHeaderSize]
		compressed := int(h[1]) | int(h[2])<<8 | int(h[3])<<16
		uncompressed := int(h[5]) | int(h[6])<<8 | int(h[7])<<16
		if h[0] != 0 || h[4] != 0 || compressed != uncompressed || uncompressed > 128<<10 || len(records) < chunkHeaderSize+compressed {
			t.Fatalf("bad chunk header % x (%d bytes left)", h, len(records))
		}
		chunks = append(chunks, records[chunkHeaderSize:chunkHeaderSize+compressed])
		records = records[chunkHeaderSize+compressed:]
	}
	return chunks
}

// TestXetRead: whatever range a client asks of a Xet file, what the CAS
// answers rebuilds exactly those bytes, across xorbs and through a xorb used
// twice.
func TestXetRead(t *testing.T) {
	h := newHub(t)
	h.Set("model", "org/x", Repo{Commit: commit, Files: map[string]string{"four.bin": fourTerms, "v.bin": vectorFile}, Xet: []string{"four.bin", "v.bin"}})
	token := xetToken(t, h, "org/x", "")
	fourHash := h.repos["model/org/x"].cas.files["four.bin"].hash
	size := len(fourTerms)
	for _, tc := range []struct {
		name   string
		hash   string
		rng    string
		qs, qe int
	}{
		{"vector file, whole", vectorFileHash, "bytes=0-199999", 0, 200000},
		{"vector file, spec's part", vectorFileHash, "bytes=70000-150000", 70000, 150001},
		{"no Range", fourHash, "", 0, size},
		{"whole", fourHash, "bytes=0-" + strconv.Itoa(size-1), 0, size},
		{"past the end", fourHash, "bytes=5-" + strconv.Itoa(size+100), 5, size},
		{"open", fourHash, "bytes=16777300-", 16777300, size},
		{"suffix", fourHash, "bytes=-5", size - 5, size},
		{"across a xorb's end", fourHash, "bytes=8388000-8389000", 8388000, 8389001},
		{"a xorb twice", fourHash, "bytes=6553607-23330820", 6553607, 23330821},
		{"one byte", fourHash, "bytes=25165823-25165823", 25165823, 25165824},
	} {
		t.Run(tc.name, func(t *testing.T) {
			content := vectorFile
			if tc.hash == fourHash {
				content = fourTerms
			}
			if got := xetRead(t, h, token, tc.hash, tc.rng, tc.qe-tc.qs); got != content[tc.qs:tc.qe] {
				t.Errorf("%s of %s: %d bytes that differ from the file's [%d, %d)", tc.rng, tc.hash, len(got), tc.qs, tc.qe)
			}
		})
	}
}

// TestXetRoutes: a Xet file is an LFS file with its Xet hash, in the tree and
// on resolve, which links to the repo's read-token endpoint and still serves
// the file; the read-token endpoint answers as the repo's other endpoints do
// to the unauthorized, for a failing repo, past a rate limit; the CAS serves
// what the Hub stores only to a CAS token it issued for the repo, whole
// Ranges only, and takes telemetry; what no route answers is recorded as
// unknown.
func TestXetRoutes(t *testing.T) {
	h := newHub(t)
	xetFiles := map[string]string{"config.json": `{"model_type":"tiny"}`, "w.bin": vectorFile}
	h.Set("model", "org/xet", Repo{Commit: commit, Files: xetFiles, Xet: []string{"w.bin"}})
	h.Set("dataset", "org/xet", Repo{Commit: commit, Files: xetFiles, Xet: []string{"w.bin"}})
	h.Set("model", "org/priv", Repo{Commit: commit, Files: xetFiles, Xet: []string{"w.bin"}, Token: token})
	h.Set("model", "org/other", Repo{Commit: commit, Files: map[string]string{"o.bin": "other"}, Xet: []string{"o.bin"}})
	h.Set("model", "org/fail", Repo{Fail: &Error{Status: 403, Code: "GatedRepo", Message: "Access to model org/fail is restricted."}})
	h.Set("model", "org/rl", Repo{Commit: commit, Files: xetFiles, Xet: []string{"w.bin"}, Limit: &RateLimit{Resource: "api", Count: 1, Reset: 7, Quota: 500, Window: 300}})
	casToken := xetToken(t, h, "org/xet", "")
	otherToken := xetToken(t, h, "org/other", "")

	pointer := lfsPointer(SHA256(vectorFile), len(vectorFile))
	lfs := `"lfs":{"oid":"` + SHA256(vectorFile) + `","pointerSize":` + strconv.Itoa(len(pointer)) + `,"size":200000}`
	tree := `[{"oid":"` + GitBlobID(xetFiles["config.json"]) + `","path":"config.json","size":21,"type":"file"},` +
		`{` + lfs + `,"oid":"` + GitBlobID(pointer) + `","path":"w.bin","size":200000,"type":"file","xetHash":"` + vectorFileHash + `"}]`
	file := func(repoType string, withBody bool) reply {
		r := reply{Status: 200, Header: map[string]string{
			"Content-Type":   "application/octet-stream",
			"Content-Length": "200000",
			"ETag":           `"` + GitBlobID(pointer) + `"`,
			"X-Linked-Etag":  `"` + SHA256(vectorFile) + `"`,
			"X-Linked-Size":  "200000",
			"X-Repo-Commit":  commit,
			"X-Xet-Hash":     vectorFileHash,
			"Link":           "<" + h.URL() + "/api/" + repoType + "s/org/xet/xet-read-token/" + commit + `>; rel="xet-auth"`,
		}}
		if withBody {
			r.Body = vectorFile
		}
		return r
	}
	jsonReply := func(status int, body string) reply {
		return reply{status, map[string]string{"Content-Type": "application/json; charset=utf-8", "Content-Length": strconv.Itoa(len(body))}, body}
	}
	errorReply := func(e Error) reply {
		r := jsonReply(e.Status, `{"error":"`+e.Message+`"}`)
		r.Header["X-Error-Message"], r.Header["X-Error-Code"] = e.Message, e.Code
		return r
	}
	textReply := func(status int, body string, header ...string) reply {
		r := reply{status, map[string]string{"Content-Type": "text/plain; charset=utf-8", "Content-Length": strconv.Itoa(len(body) + 1)}, body + "\n"}
		for i := 0; i < len(header); i += 2 {
			r.Header[header[i]] = header[i+1]
		}
		return r
	}
	xorbPath := "/cas/xorbs/model/org/xet/" + vectorXorbHash
	xorbURL := h.URL() + xorbPath
	records := h.repos["model/org/xet"].cas.xorbs[vectorXorbHash].records
	reconstruction := func(body string) reply { return jsonReply(200, strings.ReplaceAll(body, "U", xorbURL)) }
	partial := func(start, end int) reply {
		return reply{206, map[string]string{
			"Content-Type": "application/octet-stream", "Content-Length": strconv.Itoa(end - start + 1),
			"Content-Range": fmt.Sprintf("bytes %d-%d/200032", start, end),
		}, records[start : end+1]}
	}
	notFound := textReply(404, "404 page not found")
	limited := jsonReply(429, `{"error":"You have been rate-limited; you can retry this action in 7 seconds."}`)
	limited.Header["RateLimit"], limited.Header["RateLimit-Policy"] = `"api";r=0;t=7`, `"fixed window";"api";q=500;w=300`

	for _, tc := range []struct {
		name                    string
		method, path, auth, rng string
		want                    reply
		unknown                 bool
	}{
		{name: "tree", path: "/api/models/org/xet/tree/" + commit + "?recursive=true&expand=false", want: jsonReply(200, tree)},
		{name: "file metadata", method: http.MethodHead, path: "/org/xet/resolve/main/w.bin", want: file("model", false)},
		{name: "file", path: "/org/xet/resolve/" + commit + "/w.bin", want: file("model", true)},
		{name: "dataset file metadata", method: http.MethodHead, path: "/datasets/org/xet/resolve/main/w.bin", want: file("dataset", false)},
		{name: "read token at another revision", path: "/api/models/org/xet/xet-read-token/main", want: notFound, unknown: true},
		{name: "private read token without token", path: "/api/models/org/priv/xet-read-token/" + commit, want: errorReply(private)},
		{name: "private read token, other token", path: "/api/models/org/priv/xet-read-token/" + commit, auth: "Bearer hf_other", want: errorReply(private)},
		{name: "failing repo's read token", path: "/api/models/org/fail/xet-read-token/" + commit, want: errorReply(Error{403, "GatedRepo", "Access to model org/fail is restricted."})},
		{name: "rate-limited read token", path: "/api/models/org/rl/xet-read-token/" + commit, want: limited},

		{name: "spec: whole file", path: "/cas/v2/reconstructions/" + vectorFileHash, auth: "Bearer " + casToken, rng: "bytes=0-199999", want: reconstruction(
			`{"offset_into_first_range":0,"terms":[{"hash":"` + vectorXorbHash + `","unpacked_length":200000,"range":{"start":0,"end":4}}],` +
				`"xorbs":{"` + vectorXorbHash + `":[{"url":"U","ranges":[{"chunks":{"start":0,"end":4},"bytes":{"start":0,"end":200031}}]}]}}`)},
		{name: "spec: part", path: "/cas/v2/reconstructions/" + vectorFileHash, auth: "Bearer " + casToken, rng: "bytes=70000-150000", want: reconstruction(
			`{"offset_into_first_range":4464,"terms":[{"hash":"` + vectorXorbHash + `","unpacked_length":131072,"range":{"start":1,"end":3}}],` +
				`"xorbs":{"` + vectorXorbHash + `":[{"url":"U","ranges":[{"chunks":{"start":1,"end":3},"bytes":{"start":65544,"end":196631}}]}]}}`)},
		{name: "reconstruction past the end", path: "/cas/v2/reconstructions/" + vectorFileHash, auth: "Bearer " + casToken, rng: "bytes=200000-200010", want: textReply(416, "range not satisfiable", "Content-Range", "bytes */200000")},
		{name: "reconstruction of several ranges", path: "/cas/v2/reconstructions/" + vectorFileHash, auth: "Bearer " + casToken, rng: "bytes=0-1,5-6", want: textReply(416, "range not satisfiable", "Content-Range", "bytes */200000")},
		{name: "reconstruction without token", path: "/cas/v2/reconstructions/" + vectorFileHash, rng: "bytes=0-199999", want: textReply(401, "missing, unknown or expired CAS token")},
		{name: "reconstruction with the Hub token", path: "/cas/v2/reconstructions/" + vectorFileHash, auth: "Bearer " + token, rng: "bytes=0-199999", want: textReply(401, "missing, unknown or expired CAS token")},
		{name: "reconstruction with another repo's token", path: "/cas/v2/reconstructions/" + vectorFileHash, auth: "Bearer " + otherToken, rng: "bytes=0-199999", want: textReply(404, "no such file in the repo's CAS")},
		{name: "reconstruction of an unknown file", path: "/cas/v2/reconstructions/" + strings.Repeat("ab", 32), auth: "Bearer " + casToken, rng: "bytes=0-1", want: textReply(404, "no such file in the repo's CAS")},
		{name: "v1 reconstruction", path: "/cas/v1/reconstructions/" + vectorFileHash, auth: "Bearer " + casToken, rng: "bytes=0-199999", want: notFound, unknown: true},
		{name: "xorb range", path: xorbPath, rng: "bytes=0-200031", want: partial(0, 200031)},
		{name: "xorb inner range", path: xorbPath, rng: "bytes=65544-196631", want: partial(65544, 196631)},
		{name: "xorb range cut at the end", path: xorbPath, rng: "bytes=196632-300000", want: partial(196632, 200031)},
		{name: "whole xorb", path: xorbPath, want: reply{200, map[string]string{"Content-Type": "application/octet-stream", "Content-Length": "200032"}, records}},
		{name: "xorb past the end", path: xorbPath, rng: "bytes=200032-", want: textReply(416, "range not satisfiable", "Content-Range", "bytes */200032")},
		{name: "xorb of another repo", path: "/cas/xorbs/model/org/other/" + vectorXorbHash, rng: "bytes=0-1", want: notFound, unknown: true},
		{name: "telemetry", method: http.MethodPost, path: "/v1/telemetry", auth: "Bearer " + casToken, want: reply{204, map[string]string{}, ""}},
		{name: "telemetry under the CAS's path", method: http.MethodPost, path: "/cas/v1/telemetry", want: notFound, unknown: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			method := tc.method
			if method == "" {
				method = http.MethodGet
			}
			_, unknownBefore := h.Seen()
			if diff := cmp.Diff(tc.want, send(t, h, method, tc.path, tc.auth, tc.rng)); diff != "" {
				t.Errorf("%s %s (-want +got):\n%s", method, tc.path, diff)
			}
			_, unknown := h.Seen()
			if got := len(unknown) > len(unknownBefore); got != tc.unknown {
				t.Errorf("recorded as unknown: %v, want %v", got, tc.unknown)
			}
		})
	}
}

// TestXetToken: the read-token endpoint issues a CAS token an hour long, both
// ways its clients read it (headers for huggingface_hub, JSON for hf_xet),
// with the CAS on the Hub's listener; each call a new one; a private repo's
// only to its token. The tokens show nowhere in the request log, even put in
// a path.
func TestXetToken(t *testing.T) {
	h := newHub(t)
	h.Set("model", "org/priv", Repo{Commit: commit, Files: map[string]string{"w.bin": vectorFile}, Xet: []string{"w.bin"}, Token: token})
	before := time.Now().Unix()
	r := get(t, h, http.MethodGet, "/api/models/org/priv/xet-read-token/"+commit, "Bearer "+token)
	after := time.Now().Unix()
	var body struct {
		AccessToken string `json:"accessToken"`
		Exp         int64  `json:"exp"`
		CasURL      string `json:"casUrl"`
	}
	if r.Status != http.StatusOK || json.Unmarshal([]byte(r.Body), &body) != nil {
		t.Fatalf("read token: %+v", r)
	}
	exp, err := strconv.ParseInt(r.Header["X-Xet-Token-Expiration"], 10, 64)
	if err != nil || exp < before+3600 || exp > after+3600 {
		t.Errorf("the token expires at %q, want an hour after %d to %d", r.Header["X-Xet-Token-Expiration"], before, after)
	}
	if diff := cmp.Diff([]string{r.Header["X-Xet-Access-Token"], r.Header["X-Xet-Cas-Url"], strconv.FormatInt(exp, 10)}, []string{body.AccessToken, body.CasURL, strconv.FormatInt(body.Exp, 10)}); diff != "" {
		t.Errorf("the body says other than the headers (-headers +body):\n%s", diff)
	}
	if body.CasURL != h.URL()+"/cas" || body.AccessToken == "" || body.AccessToken == token {
		t.Errorf("CAS %q, token %q", body.CasURL, body.AccessToken)
	}
	second := xetToken(t, h, "org/priv", "Bearer "+token)
	if second == body.AccessToken {
		t.Error("a second call gave the same token")
	}
	if r := send(t, h, http.MethodGet, "/cas/v2/reconstructions/"+vectorFileHash, "Bearer "+body.AccessToken, "bytes=0-1"); r.Status != http.StatusOK {
		t.Errorf("reconstruction with the first token: %+v", r)
	}
	get(t, h, http.MethodGet, "/cas/v2/reconstructions/"+second+"?t="+body.AccessToken, "")
	requests, _ := h.Seen()
	for _, line := range requests {
		if strings.Contains(line, body.AccessToken) || strings.Contains(line, second) || strings.Contains(line, token) {
			t.Errorf("a token shows in %q", line)
		}
	}
	if want := "GET /cas/v2/reconstructions/<redacted>?t=<redacted>"; requests[len(requests)-1] != want {
		t.Errorf("the last request logged %q, want %q", requests[len(requests)-1], want)
	}
}

// TestXetSeenFor: a repo's requests include the CAS's for its Xet files,
// with their Ranges: reconstructions by the token the Hub issued for the
// repo, xorbs by their URL; not its neighbour's, though it holds the same
// file (same hashes), nor a request with no valid token.
func TestXetSeenFor(t *testing.T) {
	h := newHub(t)
	repo := Repo{Commit: commit, Files: map[string]string{"w.bin": vectorFile}, Xet: []string{"w.bin"}}
	h.Set("model", "org/a", repo)
	h.Set("model", "org/b", repo)
	for _, id := range []string{"org/a", "org/b"} {
		tok := xetToken(t, h, id, "")
		xetRead(t, h, tok, vectorFileHash, "bytes=70000-150000", 80001)
		send(t, h, http.MethodPost, "/v1/telemetry", "Bearer "+tok, "")
	}
	send(t, h, http.MethodGet, "/cas/v2/reconstructions/"+vectorFileHash, "", "bytes=0-1")
	want := func(id string) []string {
		return []string{
			"GET /api/models/" + id + "/xet-read-token/" + commit,
			"GET /cas/v2/reconstructions/" + vectorFileHash + " Range: bytes=70000-150000",
			"GET /cas/xorbs/model/" + id + "/" + vectorXorbHash + " Range: bytes=65544-196631",
			"POST /v1/telemetry",
		}
	}
	for _, id := range []string{"org/a", "org/b"} {
		if diff := cmp.Diff(want(id), h.SeenFor("model", id)); diff != "" {
			t.Errorf("SeenFor(model, %s) (-want +got):\n%s", id, diff)
		}
	}
	if requests, _ := h.Seen(); len(requests) != 9 {
		t.Errorf("%d requests logged, want 9: %q", len(requests), requests)
	}
}

// TestXetBodies: a Xet repo's xorb bodies go as its file bodies do, held
// back by its gate, paced to its rate, or stalled, while the read token and
// the reconstruction come at once; the bubble's fake clock shows exactly when.
func TestXetBodies(t *testing.T) {
	const content = "0123456789" // one chunk: an 18-byte xorb
	records := "\x00\x0a\x00\x00\x00\x0a\x00\x00" + content
	for _, tc := range []struct {
		name string
		repo Repo
		// read reads the xorb body, as the repo's gate (none when nil)
		// lets it, in a client context that ends after an hour.
		read     func(t *testing.T, body io.Reader, g *Gate) string
		wantBody string
		wantTook time.Duration
	}{
		{"gated", Repo{Gate: NewGate()}, func(t *testing.T, body io.Reader, g *Gate) string {
			g.Let(5)
			first := make([]byte, 5)
			if _, err := io.ReadFull(body, first); err != nil {
				t.Fatalf("reading what the gate let through: %v", err)
			}
			g.Open()
			rest, err := io.ReadAll(body)
			if err != nil {
				t.Fatalf("reading the rest: %v", err)
			}
			return string(first) + string(rest)
		}, records, 0},
		{"paced", Repo{Rate: 6}, func(t *testing.T, body io.Reader, _ *Gate) string {
			data, err := io.ReadAll(body)
			if err != nil {
				t.Fatalf("reading the body: %v", err)
			}
			return string(data)
		}, records, 3 * time.Second},
		{"stalled", Repo{Stall: true}, func(t *testing.T, body io.Reader, _ *Gate) string {
			data, err := io.ReadAll(body)
			if err == nil {
				t.Error("the stalled body ended")
			}
			return string(data)
		}, "", time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h, _ := pipeHub(t)
				repo := tc.repo
				repo.Commit, repo.Files, repo.Xet = commit, map[string]string{"w.bin": content}, []string{"w.bin"}
				h.Set("model", "org/x", repo)
				start := time.Now()
				tok := xetToken(t, h, "org/x", "")
				r := send(t, h, http.MethodGet, "/cas/v2/reconstructions/"+h.repos["model/org/x"].cas.files["w.bin"].hash, "Bearer "+tok, "bytes=0-9")
				if r.Status != http.StatusOK {
					t.Fatalf("reconstruction: %+v", r)
				}
				if took := time.Since(start); took != 0 {
					t.Errorf("the read token and the reconstruction took %v", took)
				}
				ctx, cancel := context.WithTimeout(t.Context(), time.Hour)
				defer cancel()
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.URL()+"/cas/xorbs/model/org/x/"+h.repos["model/org/x"].cas.files["w.bin"].terms[0].xorb.hash, http.NoBody)
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Range", "bytes=0-17")
				resp, err := h.client.Do(req)
				if err != nil {
					t.Fatalf("the xorb's headers did not come: %v", err)
				}
				defer func() { _ = resp.Body.Close() }()
				if resp.StatusCode != http.StatusPartialContent {
					t.Errorf("xorb: status %d", resp.StatusCode)
				}
				if got := tc.read(t, resp.Body, repo.Gate); got != tc.wantBody {
					t.Errorf("the xorb body %q, want %q", got, tc.wantBody)
				}
				if took := time.Since(start); took != tc.wantTook {
					t.Errorf("the xorb body ended after %v, want %v", took, tc.wantTook)
				}
				synctest.Wait()
				if n := busy(h); n != 0 {
					t.Errorf("%d requests still answered", n)
				}
			})
		})
	}
}

// TestXetSetPanics: Set refuses a Xet file the repo does not have.
func TestXetSetPanics(t *testing.T) {
	h := newHub(t)
	defer func() {
		if recover() == nil {
			t.Error("Set did not panic")
		}
	}()
	h.Set("model", "org/x", Repo{Commit: commit, Files: map[string]string{"a": "a"}, Xet: []string{"b"}})
}
