package hubtest

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// The tests here run the real hf (huggingface_hub 2.4.0 with hf_xet 1.8.0)
// against the Hub's Xet-backed files.

// xetRequests is what `hf download <repo>` asks the Hub for the repo at key
// (in h.repos) when it takes the Xet path, sorted: the revision and the tree
// (see listingRequests); one read token; the metadata and body of each file
// that is not Xet-backed (see plainRequests); and for each Xet file one
// reconstruction of it whole and a GET of each of its xorbs whole, never its
// resolve (and for an empty one nothing: hf_xet just creates it).
func xetRequests(h *testHub, key string) []string {
	api, want, resolve := listingRequests(key)
	want = append(want, api+"/xet-read-token/"+commit)
	for path, content := range h.repos[key].Files {
		f := h.repos[key].cas.files[path]
		if f == nil {
			want = append(want, plainRequests(resolve+path, content)...)
			continue
		}
		if f.size > 0 {
			want = append(want, fmt.Sprintf("GET /cas/v2/reconstructions/%s Range: bytes=0-%d", f.hash, f.size-1))
		}
		xorbs := map[*xorb]bool{}
		for _, t := range f.terms {
			if !xorbs[t.xorb] {
				xorbs[t.xorb] = true
				want = append(want, fmt.Sprintf("GET %s Range: bytes=0-%d", strings.TrimPrefix(h.xorbURL(key, t.xorb.hash), h.URL()), len(t.xorb.records)-1))
			}
		}
	}
	slices.Sort(want)
	return want
}

// httpRequests is what `hf download <repo>` asks the Hub for the repo at key
// when it does not take the Xet path, sorted: the revision and the tree, and
// the metadata and body of each file, Xet-backed or not (see plainRequests).
func httpRequests(h *testHub, key string) []string {
	_, want, resolve := listingRequests(key)
	for path, content := range h.repos[key].Files {
		want = append(want, plainRequests(resolve+path, content)...)
	}
	slices.Sort(want)
	return want
}

// listingRequests is how `hf download <repo>` lists the repo at key, whose
// commit is commit: its revision (main) and its tree; with "GET /api/..." of
// the repo, and the path of its files on resolve.
func listingRequests(key string) (api string, listing []string, resolve string) {
	repoType, repoID, _ := strings.Cut(key, "/")
	api, resolve = "GET /api/"+repoType+"s/"+repoID, "/"+repoID+"/resolve/"+commit+"/"
	if repoType == "dataset" {
		resolve = "/datasets" + resolve
	}
	return api, []string{api + "/revision/main", api + "/tree/" + commit + "?recursive=true&expand=false"}, resolve
}

// plainRequests is what hf asks of resolve for a file of content, at path:
// its metadata, and its body unless it is empty (http_get has nothing to
// fetch then).
func plainRequests(path, content string) []string {
	if content == "" {
		return []string{"HEAD " + path}
	}
	return []string{"HEAD " + path, "GET " + path}
}

// TestRealHFXet: hf downloads a model or dataset repo of Xet-backed files,
// beside plain and LFS ones, byte for byte, the Xet files from the CAS (one
// read token, one reconstruction each, each xorb once, a xorb that two terms
// share too; with telemetry on, one report each) and none by resolve; with
// HF_HUB_DISABLE_XET=1 it takes the plain path, resolve for every file, and
// never asks for a token.
func TestRealHFXet(t *testing.T) {
	realHF(t)
	mixed := map[string]string{
		"config.json":       `{"model_type":"tiny"}`,
		"model.safetensors": randomContent(300000, 10),
		"sub/tokenizer.bin": randomContent(70000, 11),
		"weights.bin":       randomContent(5000, 12),
		"empty-xet.bin":     "",
	}
	mixedXet, mixedLFS := []string{"model.safetensors", "sub/tokenizer.bin", "empty-xet.bin"}, []string{"weights.bin"}
	for _, tc := range []struct {
		name     string
		repoType string
		files    map[string]string
		xet, lfs []string
		env      []string
		want     func(h *testHub, key string) []string
		// telemetry turns hf_xet's telemetry on: a report of each Xet
		// file's transfer as it ends.
		telemetry bool
	}{
		{"plain, LFS and Xet files", "model", mixed, mixedXet, mixedLFS, nil, xetRequests, true},
		{"a dataset's", "dataset", mixed, mixedXet, mixedLFS, nil, xetRequests, false},
		{"four terms over three xorbs", "model", map[string]string{"four.bin": fourTerms, "config.json": "{}"}, []string{"four.bin"}, nil, nil, xetRequests, false},
		{"HF_HUB_DISABLE_XET=1", "model", mixed, mixedXet, mixedLFS, []string{"HF_HUB_DISABLE_XET=1"}, httpRequests, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHub(t)
			h.Set(tc.repoType, "org/xet", Repo{Commit: commit, Files: tc.files, Xet: tc.xet, LFS: tc.lfs})
			dir := filepath.Join(t.TempDir(), "out")
			var out bytes.Buffer
			cmd := hfCommand(t, h, "", dir, &out, "org/xet", "--repo-type", tc.repoType)
			cmd.Env = append(cmd.Env, tc.env...)
			want := tc.want(h, tc.repoType+"/org/xet")
			if tc.telemetry {
				// hf then waits for each report's answer up to the final
				// flush timeout, 2 s by default: a busy machine would lose
				// some.
				cmd.Env = append(cmd.Env, "HF_HUB_DISABLE_TELEMETRY=0", "HF_XET_TELEMETRY_FINAL_FLUSH_TIMEOUT="+hang.String())
				for range tc.xet {
					want = append(want, "POST /v1/telemetry")
				}
				slices.Sort(want)
			}
			if err := cmd.Run(); err != nil {
				t.Fatalf("hf: %v\n%s", err, out.String())
			}
			if diff := cmp.Diff(tc.files, downloaded(t, dir)); diff != "" {
				t.Errorf("files downloaded (-want +got):\n%s", diff)
			}
			got := h.SeenFor(tc.repoType, "org/xet")
			slices.Sort(got)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("requests (-want +got):\n%s\n%s", diff, out.String())
			}
			if _, unknown := h.Seen(); len(unknown) != 0 {
				t.Errorf("hf asked the Hub for %q", unknown)
			}
		})
	}
}

// TestRealHFXetSmallBlocks: with reconstruction blocks of 100 to 200 kB,
// hf_xet asks for a file of two xorbs block by block: reconstructions that
// start inside a chunk (so at an offset into the first), which together ask
// for every byte once, and xorb ranges that start past a xorb's first chunk;
// the file comes byte for byte.
func TestRealHFXetSmallBlocks(t *testing.T) {
	realHF(t)
	files := map[string]string{"big.bin": randomContent(xorbBytes+300000, 20)}
	h := newHub(t)
	h.Set("model", "org/blocks", Repo{Commit: commit, Files: files, Xet: []string{"big.bin"}})
	dir := filepath.Join(t.TempDir(), "out")
	var out bytes.Buffer
	cmd := hfCommand(t, h, "", dir, &out, "org/blocks")
	cmd.Env = append(cmd.Env, "HF_XET_RECONSTRUCTION_MIN_RECONSTRUCTION_FETCH_SIZE=100kb", "HF_XET_RECONSTRUCTION_MAX_RECONSTRUCTION_FETCH_SIZE=200kb")
	if err := cmd.Run(); err != nil {
		t.Fatalf("hf: %v\n%s", err, out.String())
	}
	if diff := cmp.Diff(files, downloaded(t, dir)); diff != "" {
		t.Errorf("files downloaded (-want +got):\n%s", diff)
	}

	f := h.repos["model/org/blocks"].cas.files["big.bin"]
	rangeOf := regexp.MustCompile(`^GET (/cas/v2/reconstructions/` + f.hash + `|/cas/xorbs/model/org/blocks/([0-9a-f]{64})) Range: bytes=(\d+)-(\d+)$`)
	type span struct{ start, end int }
	var queries []span
	xorbStarts := map[int]bool{}
	for _, line := range h.SeenFor("model", "org/blocks") {
		if !strings.Contains(line, " /cas/") {
			continue
		}
		m := rangeOf.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("a CAS request for another file or without a Range: %q", line)
			continue
		}
		start, _ := strconv.Atoi(m[3])
		end, _ := strconv.Atoi(m[4])
		if m[2] == "" {
			queries = append(queries, span{start, end})
		} else {
			xorbStarts[start] = true
		}
	}
	slices.SortFunc(queries, func(a, b span) int { return a.start - b.start })
	next, insideChunk := 0, 0
	for _, q := range queries {
		if q.start != next {
			t.Errorf("a query from byte %d, want the next from %d: %v", q.start, next, queries)
		}
		if q.start%xetChunkSize != 0 {
			insideChunk++
		}
		next = q.end + 1
	}
	if next != f.size || len(queries) < 2 || insideChunk == 0 {
		t.Errorf("queries %v: want blocks from 0 to %d, at least two, some inside a chunk", queries, f.size-1)
	}
	if len(xorbStarts) < 2 || xorbStarts[0] && len(xorbStarts) == 1 {
		t.Errorf("xorb ranges from %v, want some past the first chunk", slices.Sorted(maps.Keys(xorbStarts)))
	}
	if _, unknown := h.Seen(); len(unknown) != 0 {
		t.Errorf("hf asked the Hub for %q", unknown)
	}
}

// TestRealHFXetPrivate: hf downloads a private repo's Xet file again, once it
// has the repo's tree, by asking for a read token straight away (no
// revision, tree or metadata): without the repo's token the read-token
// endpoint refuses it and hf fails with its "not found ... private" error,
// asking the CAS nothing; with it, hf downloads the file from the CAS.
func TestRealHFXetPrivate(t *testing.T) {
	realHF(t)
	files := map[string]string{"config.json": `{"model_type":"tiny"}`, "model.safetensors": randomContent(100000, 30)}
	for _, tc := range []struct {
		name      string
		hfToken   string
		wantError string // in hf's output; none when hf downloads
	}{
		{"without token", "", "Error: Model 'org/priv' not found.\nIf the repo is private, make sure you are authenticated"},
		{"with token", token, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHub(t)
			h.Set("model", "org/priv", Repo{Commit: commit, Files: files, Xet: []string{"model.safetensors"}, Token: token})
			dir := filepath.Join(t.TempDir(), "out")
			var out bytes.Buffer
			if err := hfCommand(t, h, token, dir, &out, "org/priv", "--revision", commit).Run(); err != nil {
				t.Fatalf("the first download: %v\n%s", err, out.String())
			}
			if err := os.Remove(filepath.Join(dir, "model.safetensors")); err != nil {
				t.Fatal(err)
			}
			before := len(h.SeenFor("model", "org/priv"))

			out.Reset()
			err := hfCommand(t, h, tc.hfToken, dir, &out, "org/priv", "--revision", commit).Run()
			want := files
			f := h.repos["model/org/priv"].cas.files["model.safetensors"]
			wantRequests := []string{
				"GET /api/models/org/priv/xet-read-token/" + commit,
				fmt.Sprintf("GET /cas/v2/reconstructions/%s Range: bytes=0-%d", f.hash, f.size-1),
				fmt.Sprintf("GET /cas/xorbs/model/org/priv/%s Range: bytes=0-%d", f.terms[0].xorb.hash, len(f.terms[0].xorb.records)-1),
			}
			if tc.wantError != "" {
				var exit *exec.ExitError
				if !errors.As(err, &exit) {
					t.Errorf("hf: %v, want a non-zero exit", err)
				}
				if !strings.Contains(out.String(), tc.wantError) {
					t.Errorf("hf's output lacks %q", tc.wantError)
				}
				want = map[string]string{"config.json": files["config.json"]}
				wantRequests = wantRequests[:1]
			} else if err != nil {
				t.Errorf("hf: %v", err)
			}
			if diff := cmp.Diff(want, downloaded(t, dir)); diff != "" {
				t.Errorf("files (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(wantRequests, h.SeenFor("model", "org/priv")[before:]); diff != "" {
				t.Errorf("requests (-want +got):\n%s", diff)
			}
			if t.Failed() {
				t.Logf("hf's output:\n%s", out.String())
			}
			requests, _ := h.Seen()
			for _, s := range append(requests, out.String()) {
				if strings.Contains(s, token) {
					t.Errorf("the token shows in %q", s)
				}
			}
		})
	}
}

// TestRealHFXetGate: a gated repo's Xet file comes as far as the gate lets
// its xorb through: hf has asked the CAS for the xorb and waits, the request
// in flight and its incomplete file open, while the Hub sends what the gate
// lets by; once the gate opens, the file comes whole.
func TestRealHFXetGate(t *testing.T) {
	realHF(t)
	files := map[string]string{"model.safetensors": randomContent(300000, 40)}
	g := NewGate()
	h := newHub(t)
	h.Set("model", "org/gated", Repo{Commit: commit, Files: files, Xet: []string{"model.safetensors"}, Gate: g})
	x := h.repos["model/org/gated"].cas.files["model.safetensors"].terms[0].xorb
	dir := filepath.Join(t.TempDir(), "out")
	var out SyncBuffer
	cmd := hfCommand(t, h, "", dir, &out, "org/gated")
	done, waitErr := startHF(t, cmd)

	xorbGET := fmt.Sprintf("GET /cas/xorbs/model/org/gated/%s Range: bytes=0-%d", x.hash, len(x.records)-1)
	held := func(sent int64) func() (bool, string) {
		return func() (bool, string) {
			select {
			case <-done:
				t.Fatalf("hf exited (%v) while the gate held its file\n%s", *waitErr, out.String())
			default:
			}
			requests, inc := h.SeenFor("model", "org/gated"), incomplete(t, dir)
			g.mu.Lock()
			left := g.left
			g.mu.Unlock()
			return slices.Contains(requests, xorbGET) && busy(h) == 1 && len(inc) == 1 && left == 0,
				fmt.Sprintf("hf asked for %q, %d requests in flight, incomplete files %q, %d of %d bytes let through not sent\n%s", requests, busy(h), inc, left, sent, out.String())
		}
	}
	waitUntil(t, "hf waiting at the closed gate", held(0))
	g.Let(int64(len(x.records)) / 2)
	waitUntil(t, "hf waiting at the gate with half the xorb sent", held(int64(len(x.records))/2))
	g.Open()
	select {
	case <-done:
	case <-time.After(hang):
		t.Fatalf("hf still runs %v after the gate opened\n%s", hang, out.String())
	}
	if *waitErr != nil {
		t.Fatalf("hf: %v\n%s", *waitErr, out.String())
	}
	if diff := cmp.Diff(files, downloaded(t, dir)); diff != "" {
		t.Errorf("files downloaded (-want +got):\n%s", diff)
	}
}

// TestRealHFXetOneFile: hf downloads one Xet file of a model or dataset by
// its metadata: resolve's HEAD gives its Xet hash and links to the read
// token, which hf fetches, then the file from the CAS, never its body from
// resolve; it keeps the sha256 (X-Linked-Etag) as the file's etag.
func TestRealHFXetOneFile(t *testing.T) {
	realHF(t)
	files := map[string]string{"config.json": "{}", "model.safetensors": randomContent(150000, 50)}
	for _, repoType := range []string{"model", "dataset"} {
		t.Run(repoType, func(t *testing.T) {
			t.Parallel()
			h := newHub(t)
			h.Set(repoType, "org/xet", Repo{Commit: commit, Files: files, Xet: []string{"model.safetensors"}})
			dir := filepath.Join(t.TempDir(), "out")
			var out bytes.Buffer
			if err := hfCommand(t, h, "", dir, &out, "org/xet", "model.safetensors", "--repo-type", repoType).Run(); err != nil {
				t.Fatalf("hf: %v\n%s", err, out.String())
			}
			if diff := cmp.Diff(map[string]string{"model.safetensors": files["model.safetensors"]}, downloaded(t, dir)); diff != "" {
				t.Errorf("files downloaded (-want +got):\n%s", diff)
			}
			api, _, resolve := listingRequests(repoType + "/org/xet")
			f := h.repos[repoType+"/org/xet"].cas.files["model.safetensors"]
			want := []string{
				"HEAD " + strings.Replace(resolve, commit, "main", 1) + "model.safetensors",
				api + "/xet-read-token/" + commit,
				fmt.Sprintf("GET /cas/v2/reconstructions/%s Range: bytes=0-%d", f.hash, f.size-1),
				fmt.Sprintf("GET /cas/xorbs/%s/org/xet/%s Range: bytes=0-%d", repoType, f.terms[0].xorb.hash, len(f.terms[0].xorb.records)-1),
			}
			if diff := cmp.Diff(want, h.SeenFor(repoType, "org/xet")); diff != "" {
				t.Errorf("requests (-want +got):\n%s\n%s", diff, out.String())
			}
			meta, err := os.ReadFile(filepath.Join(dir, ".cache", "huggingface", "download", "model.safetensors.metadata"))
			if err != nil {
				t.Fatal(err)
			}
			if lines := strings.Split(string(meta), "\n"); len(lines) < 2 || lines[0] != commit || lines[1] != SHA256(files["model.safetensors"]) {
				t.Errorf("the file's metadata %q, want commit %s and etag %s", meta, commit, SHA256(files["model.safetensors"]))
			}
		})
	}
}
