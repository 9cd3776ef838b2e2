package script

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hfops/function-hf-download/hubtest"
)

// The tests here run the real hf, with the helper, against the fake Hub:
// the directory ends as the exact, verified mirror of the plan, and the
// summary carries the model card.

const (
	commitV1 = "1111111111111111111111111111111111111111"
	commitV2 = "2222222222222222222222222222222222222222"
	// fakeCommit is what a repo's own .cache/huggingface/download/*.metadata
	// claims: it must never be the commit reported.
	fakeCommit = "badbadbadbadbadbadbadbadbadbadbadbadbad0"
)

// safetensors is a safetensors file: the 8-byte little-endian length of its
// JSON header, the header, then dataLen bytes of tensor data.
func safetensors(t testing.TB, header map[string]any, dataLen int) string {
	t.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	n := make([]byte, 8)
	binary.LittleEndian.PutUint64(n, uint64(len(h)))
	return string(n) + string(h) + strings.Repeat("\x00", dataLen)
}

// tree is every file under dir, by slash path, but for hf's .cache, the
// marker and the lock; a symlink shows as "-> target".
func tree(t testing.TB, dir string) map[string]string {
	t.Helper()
	got := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		switch {
		case rel == ".":
			return nil
		case rel == ".cache" && d.IsDir():
			return fs.SkipDir
		case rel == MarkerFile || rel == LockFile:
			return nil
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(path)
			got[rel] = "-> " + target
			return err
		case d.IsDir():
			got[rel+"/"] = ""
			return nil
		}
		data, err := os.ReadFile(path)
		got[rel] = string(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func totalBytes(files map[string]string) int64 {
	var n int64
	for _, c := range files {
		n += int64(len(c))
	}
	return n
}

// TestRealHFExactMirror: a download of v1, then of v2 with other globs, into
// one directory that also holds stray files, empty directories, symlinks to
// things outside it, and deeper down files named as those the top keeps: the
// directory ends holding exactly v2's planned files (and, at its top only,
// hf's .cache, the marker, the lock), every symlink removed but nothing
// outside touched, files and bytes counting the plan only, verified.
// v2 ships its own .cache/huggingface/download/*.metadata claiming another,
// newer commit: the commit reported is the Hub's.
func TestRealHFExactMirror(t *testing.T) {
	realHF(t)
	v1 := map[string]string{
		"config.json":          `{"model_type":"tiny","v":1}`,
		"model.safetensors":    strings.Repeat("1", 3000),
		"old/only-in-v1.txt":   "gone in v2",
		"tokenizer/vocab.json": `{"a":1}`,
		"extra.bin":            "excluded by v2's globs",
	}
	v2 := map[string]string{
		"config.json":          `{"model_type":"tiny","v":2}`,
		"model.safetensors":    strings.Repeat("2", 4000),
		"tokenizer/vocab.json": `{"a":1}`,
		"extra.bin":            "excluded by v2's globs",
		".cache/huggingface/download/weights/evil.bin.metadata": fakeCommit + "\netag\n9999999999.5\n",
	}
	want := map[string]string{
		"config.json":          v2["config.json"],
		"model.safetensors":    v2["model.safetensors"],
		"tokenizer/":           "",
		"tokenizer/vocab.json": v2["tokenizer/vocab.json"],
	}
	planned := map[string]string{".cache/huggingface/download/weights/evil.bin.metadata": v2[".cache/huggingface/download/weights/evil.bin.metadata"]}
	for k, v := range want {
		if !strings.HasSuffix(k, "/") {
			planned[k] = v
		}
	}
	for shName, sh := range realShells(t) {
		t.Run(shName, func(t *testing.T) {
			t.Parallel()
			hub := newHub(t)
			hub.Set("model", "org/m", hubtest.Repo{Commit: commitV1, Files: v1, LFS: []string{"model.safetensors"}})
			h, env := newRealHarness(t, sh, hub)
			env = withEnv(env, map[string]string{EnvRepoID: "org/m", EnvRevision: "v1"})
			r := h.run(env)
			if r.code != 0 {
				t.Fatalf("v1: exit %d\n%s", r.code, r.out)
			}
			if s, _ := h.readSummary(); s.Commit != commitV1 || s.Files != int64(len(v1)) || !s.Verified {
				t.Errorf("v1 summary %+v", s)
			}

			// Things a directory collects, and things outside it.
			outside := filepath.Join(h.root, "outside")
			mustMkdir(t, filepath.Join(outside, "dir"))
			mustWrite(t, filepath.Join(outside, "file"), "keep me")
			mustWrite(t, filepath.Join(outside, "dir", "inner"), "keep me too")
			mustWrite(t, filepath.Join(h.dir, "stray.txt"), "stray")
			mustMkdir(t, filepath.Join(h.dir, "empty", "deeper"))
			mustWrite(t, filepath.Join(h.dir, MarkerFile+".tmp.4242"), "{")
			// What the top keeps is kept by its path, not its name.
			mustMkdir(t, filepath.Join(h.dir, "tokenizer", ".cache"))
			mustWrite(t, filepath.Join(h.dir, "tokenizer", ".cache", "stale.bin"), "stray")
			mustWrite(t, filepath.Join(h.dir, "tokenizer", MarkerFile), "{}")
			mustWrite(t, filepath.Join(h.dir, "tokenizer", LockFile), "")
			for name, target := range map[string]string{"link-to-file": filepath.Join(outside, "file"), "link-to-dir": filepath.Join(outside, "dir"), "tokenizer/link": "../config.json"} {
				if err := os.Symlink(target, filepath.Join(h.dir, name)); err != nil {
					t.Fatal(err)
				}
			}

			hub.Set("model", "org/m", hubtest.Repo{Commit: commitV2, Files: v2, LFS: []string{"model.safetensors"}})
			start := time.Now()
			r = h.run(withEnv(env, map[string]string{EnvRevision: "v2", EnvInclude: "*.json\n*.safetensors\n.cache/*", EnvExclude: "*.bin"}))
			if r.code != 0 {
				t.Fatalf("v2: exit %d\n%s", r.code, r.out)
			}
			if diff := cmp.Diff(want, tree(t, h.dir)); diff != "" {
				t.Errorf("the directory after v2 (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(planned[".cache/huggingface/download/weights/evil.bin.metadata"], readOrEmpty(t, filepath.Join(h.dir, ".cache/huggingface/download/weights/evil.bin.metadata"))); diff != "" {
				t.Errorf("the repo's own file under .cache (-want +got):\n%s", diff)
			}
			if fi, err := os.Lstat(filepath.Join(h.dir, LockFile)); err != nil || !fi.Mode().IsRegular() {
				t.Errorf("the lock file after pruning: %v", err)
			}
			if diff := cmp.Diff(map[string]string{"dir/": "", "dir/inner": "keep me too", "file": "keep me"}, tree(t, outside)); diff != "" {
				t.Errorf("outside the directory (-want +got):\n%s", diff)
			}
			checkMarker(t, h, marker{
				RepoID: "org/m", RepoType: "model", Revision: "v2", Include: []string{"*.json", "*.safetensors", ".cache/*"}, Exclude: []string{"*.bin"},
				ContentHash: "hash-1", Commit: commitV2, Files: int64(len(planned)), Bytes: totalBytes(planned), Verified: true,
				Card: &Card{ModelType: "tiny"},
			}, start)
			s, _ := h.readSummary()
			s.Seconds = 0
			if diff := cmp.Diff(Summary{Commit: commitV2, Files: int64(len(planned)), Bytes: totalBytes(planned), Verified: true, Card: &Card{ModelType: "tiny"}}, s); diff != "" {
				t.Errorf("v2 summary (-want +got):\n%s", diff)
			}
			// hf downloaded at the plan's commit, never by the revision's name.
			reqs, unknown := hub.Seen()
			if len(unknown) != 0 {
				t.Errorf("unknown requests %q", unknown)
			}
			for _, req := range reqs {
				if strings.Contains(req, "/resolve/v2/") || strings.Contains(req, "/tree/v2") {
					t.Errorf("hf asked by the revision's name: %s", req)
				}
			}
			checkClean(t, h, r)
		})
	}
}

func readOrEmpty(t testing.TB, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return string(data)
}

// TestRealHFVerification: a file that is wrong on disk while hf's metadata
// says it is current (hf then trusts it and downloads nothing) fails the
// download with the file, its hash and the Hub's named, leaving neither the
// file nor hf's metadata of it nor a marker; the retry downloads that file
// only, and is verified. LFS files are checked by sha256, others by git blob
// sha1.
func TestRealHFVerification(t *testing.T) {
	realHF(t)
	files := map[string]string{
		"config.json":       `{"model_type":"tiny"}`,
		"model.safetensors": strings.Repeat("w", 5000),
	}
	for _, tc := range []struct {
		name, file, algorithm, want string
	}{
		{"LFS file", "model.safetensors", "sha256", hubtest.SHA256(files["model.safetensors"])},
		{"regular file", "config.json", "git-sha1", hubtest.GitBlobID(files["config.json"])},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			hub, h, env := downloadedOnce(t, "org/v", hubtest.Repo{Commit: commitV1, Files: files, LFS: []string{"model.safetensors"}})
			// Same size, other bytes, the old times: what hf's metadata
			// cannot tell from the file it wrote.
			path := filepath.Join(h.dir, tc.file)
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			bad := strings.Repeat("x", len(files[tc.file]))
			mustWrite(t, path, bad)
			if err := os.Chtimes(path, fi.ModTime(), fi.ModTime()); err != nil {
				t.Fatal(err)
			}
			got := hubtest.GitBlobID(bad)
			if tc.algorithm == "sha256" {
				got = hubtest.SHA256(bad)
			}
			before, _ := hub.Seen()
			env[EnvContentHash] = "hash-2" // not the marker's: download again
			r := h.run(env)
			h.checkFailure(r, FailedPrefix("org/v", "main")+"verification failed: "+tc.file+" has "+tc.algorithm+" "+got+", the Hub says "+tc.want)
			for _, p := range []string{path, filepath.Join(h.dir, ".cache", "huggingface", "download", tc.file+".metadata"), h.markerPath()} {
				if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("%s after the failed verification: %v", p, err)
				}
			}
			checkClean(t, h, r)

			mid, _ := hub.Seen()
			r = h.run(env)
			if r.code != 0 {
				t.Fatalf("retry: exit %d\n%s", r.code, r.out)
			}
			after, _ := hub.Seen()
			var bodies []string
			for _, req := range append(after[len(mid):], mid[len(before):]...) {
				if strings.HasPrefix(req, "GET /org/v/resolve/") {
					bodies = append(bodies, req)
				}
			}
			if diff := cmp.Diff([]string{"GET /org/v/resolve/" + commitV1 + "/" + tc.file}, bodies); diff != "" {
				t.Errorf("files downloaded by the two runs (-want +got):\n%s", diff)
			}
			if s, _ := h.readSummary(); !s.Verified || s.Files != 2 {
				t.Errorf("retry's summary %+v, want verified", s)
			}
			if diff := cmp.Diff(files, tree(t, h.dir)); diff != "" {
				t.Errorf("the directory after the retry (-want +got):\n%s", diff)
			}
		})
	}
}

// TestRealHFModelCard: the summary and the marker carry what config.json,
// the safetensors headers (or the index's total) and README.md's front
// matter say, bounded and sanitized; a run that stops at the marker reports
// the same; what cannot be read is left out and fails nothing.
func TestRealHFModelCard(t *testing.T) {
	realHF(t)
	weights := safetensors(t, map[string]any{
		"__metadata__": map[string]string{"format": "pt"},
		"a":            map[string]any{"dtype": "F32", "shape": []int{2, 3}, "data_offsets": []int{0, 24}},
		"b":            map[string]any{"dtype": "F32", "shape": []int{4}, "data_offsets": []int{24, 40}},
	}, 40)
	shard := func(n int) string {
		return safetensors(t, map[string]any{"w": map[string]any{"dtype": "BF16", "shape": []int{n, 10}, "data_offsets": []int{0, 20 * n}}}, 20*n)
	}
	hostile := strings.Repeat(`"\`, 40) + "\x01é\n<&>"
	for _, tc := range []struct {
		name  string
		files map[string]string
		lfs   []string
		want  *Card
	}{{
		name: "llama-like",
		files: map[string]string{
			"config.json":       `{"architectures":["LlamaForCausalLM"],"model_type":"llama","torch_dtype":"bfloat16","max_position_embeddings":131072}`,
			"model.safetensors": weights,
			"README.md":         "---\nlanguage: en\nlicense: llama3.2\ntags: [a]\n---\n# Llama\n",
		},
		lfs:  []string{"model.safetensors"},
		want: &Card{Architecture: "LlamaForCausalLM", ModelType: "llama", Dtype: "bfloat16", ContextLength: 131072, Parameters: 10, License: "llama3.2"},
	}, {
		name: "text_config, dtype and n_positions, shards by the index",
		files: map[string]string{
			"config.json":                       `{"architectures":["LlavaForConditionalGeneration"],"model_type":"llava","dtype":"float16","text_config":{"n_positions":4096}}`,
			"model.safetensors.index.json":      `{"metadata":{"total_size":600},"weight_map":{"w1":"model-00001-of-00002.safetensors","w2":"model-00002-of-00002.safetensors"}}`,
			"model-00001-of-00002.safetensors":  shard(3),
			"model-00002-of-00002.safetensors":  shard(7),
			"consolidated.safetensors":          shard(100), // not in the index: not counted
			"README.md":                         "---\r\nlicense:\r\n  - apache-2.0\r\n---\r\n",
			"original/consolidated.safetensors": shard(1000),
		},
		want: &Card{Architecture: "LlavaForConditionalGeneration", ModelType: "llava", Dtype: "float16", ContextLength: 4096, Parameters: 100, License: "apache-2.0"},
	}, {
		name: "the index's total",
		files: map[string]string{
			"config.json":                  `{"model_type":"x","max_seq_len":2048,"max_position_embeddings":"big"}`,
			"model.safetensors.index.json": `{"metadata":{"total_parameters":8030261248},"weight_map":{}}`,
		},
		want: &Card{ModelType: "x", ContextLength: 2048, Parameters: 8030261248},
	}, {
		name: "hostile strings",
		files: map[string]string{
			"config.json": `{"architectures":[` + mustJSON(t, hostile) + `],"model_type":` + mustJSON(t, hostile) + `,"torch_dtype":` + mustJSON(t, hostile) + `,"seq_length":9223372036854775807}`,
			"README.md":   "---\nlicense: " + mustJSON(t, hostile) + "\n---\n",
		},
		want: &Card{Architecture: hostile[:64], ModelType: hostile[:64], Dtype: hostile[:64], ContextLength: 1<<63 - 1, License: hostile[:64]},
	}, {
		name: "nothing readable",
		files: map[string]string{
			"config.json":       `{"architectures":`,
			"model.safetensors": "\xff\xff\xff\xff\xff\xff\xff\xff{}",
			"README.md":         "no front matter\nlicense: mit\n",
		},
	}, {
		name:  "no model files",
		files: map[string]string{"data.csv": "a,b\n"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			hub := newHub(t)
			hub.Set("model", "org/c", hubtest.Repo{Commit: commitV1, Files: tc.files, LFS: tc.lfs})
			h, env := newRealHarness(t, testShell(t), hub)
			env = withEnv(env, map[string]string{EnvRepoID: "org/c"})
			r := h.run(env)
			if r.code != 0 {
				t.Fatalf("exit %d\n%s", r.code, r.out)
			}
			want := Summary{Commit: commitV1, Files: int64(len(tc.files)), Bytes: totalBytes(tc.files), Verified: true, Card: tc.want}
			data, err := os.ReadFile(h.termLog())
			if err != nil {
				t.Fatal(err)
			}
			if len(data) >= 4096 {
				t.Errorf("the summary is %d bytes, over a termination message", len(data))
			}
			s, _ := h.readSummary()
			s.Seconds = 0
			if diff := cmp.Diff(want, s); diff != "" {
				t.Errorf("summary (-want +got):\n%s", diff)
			}
			if m := h.readMarker(); !m.Verified || !cmp.Equal(m.Card, tc.want) {
				t.Errorf("marker verified %v, card %+v; want %+v", m.Verified, m.Card, tc.want)
			}
			if r := h.run(env); r.code != 0 || len(r.calls) != 0 {
				t.Fatalf("second run: exit %d, want a stop at the marker\n%s", r.code, r.out)
			}
			if s, _ := h.readSummary(); !cmp.Equal(want, s) {
				t.Errorf("the summary at the marker %+v, want %+v", s, want)
			}
		})
	}
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// TestSummaryFitsTerminationMessage: the largest summary the script can
// write, and the largest Go writes of it again (escaping <, > and & to six
// bytes each), stay within the 4096 bytes of a termination message.
func TestSummaryFitsTerminationMessage(t *testing.T) {
	long := strings.Repeat("<", 64)
	s := Summary{
		Commit: strings.Repeat("f", 40), Files: 1<<63 - 1, Bytes: 1<<63 - 1, Seconds: 1<<63 - 1, Verified: true,
		Card: &Card{Architecture: long, ModelType: long, Dtype: long, ContextLength: 1<<63 - 1, Parameters: 1<<63 - 1, License: long},
	}
	data, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) >= 4096 {
		t.Errorf("the largest summary is %d bytes", len(data))
	}
	if !strings.Contains(Files["hfdl.py"], "CARD_STRING_MAX = 64\n") {
		t.Error("hfdl.py does not cut card strings at 64 bytes")
	}
}

// TestRealHFEmptyPlan: globs that select no file fail the download before hf
// runs, rather than prune the directory empty; its files stay.
func TestRealHFEmptyPlan(t *testing.T) {
	realHF(t)
	files := map[string]string{"config.json": `{"model_type":"e"}`, "model.safetensors": "w"}
	_, h, env := downloadedOnce(t, "org/e", hubtest.Repo{Commit: commitV1, Files: files})
	r := h.run(withEnv(env, map[string]string{EnvInclude: "*.gguf"}))
	h.checkFailure(r, FailedPrefix("org/e", "main")+"no file to download at commit "+commitV1+" (the include and exclude globs select none)")
	if diff := cmp.Diff(files, tree(t, h.dir)); diff != "" {
		t.Errorf("the directory (-want +got):\n%s", diff)
	}
	checkClean(t, h, r)
}

// TestRealHFForce: HFDL_FORCE downloads every planned file again, past the
// marker, and the result is verified.
func TestRealHFForce(t *testing.T) {
	realHF(t)
	files := map[string]string{"config.json": `{"model_type":"f"}`, "model.safetensors": strings.Repeat("f", 2000)}
	hub, h, env := downloadedOnce(t, "org/f", hubtest.Repo{Commit: commitV1, Files: files, LFS: []string{"model.safetensors"}})
	before, _ := hub.Seen()
	if r := h.run(withEnv(env, map[string]string{EnvForce: "true"})); r.code != 0 {
		t.Fatalf("forced: exit %d\n%s", r.code, r.out)
	}
	after, _ := hub.Seen()
	var bodies []string
	for _, req := range after[len(before):] {
		if strings.HasPrefix(req, "GET /org/f/resolve/") {
			bodies = append(bodies, req)
		}
	}
	slices.Sort(bodies)
	if diff := cmp.Diff([]string{"GET /org/f/resolve/" + commitV1 + "/config.json", "GET /org/f/resolve/" + commitV1 + "/model.safetensors"}, bodies); diff != "" {
		t.Errorf("files downloaded again (-want +got):\n%s", diff)
	}
	if s, _ := h.readSummary(); !s.Verified || s.Commit != commitV1 || s.Files != 2 {
		t.Errorf("summary %+v", s)
	}
}

// TestRealHFPrivateRepo: the plan reads a private repo with HF_TOKEN, as hf
// does (huggingface_hub reads it itself); the token shows nowhere.
func TestRealHFPrivateRepo(t *testing.T) {
	realHF(t)
	files := map[string]string{"config.json": `{"model_type":"p"}`}
	hub := newHub(t)
	hub.Set("model", "org/p", hubtest.Repo{Commit: commitV1, Files: files, Token: realHFToken})
	h, env := newRealHarness(t, testShell(t), hub)
	r := h.run(withEnv(env, map[string]string{EnvRepoID: "org/p"}))
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.out)
	}
	if s, _ := h.readSummary(); !s.Verified || s.Commit != commitV1 {
		t.Errorf("summary %+v", s)
	}
	reqs, _ := hub.Seen()
	if !slices.Contains(reqs, "GET /api/models/org/p/revision/main?blobs=true") {
		t.Errorf("no plan request among %q", reqs)
	}
	checkClean(t, h, r)
}

// downloadedOnce serves repo as repoID on a new fake Hub and downloads it once
// with the real hf, which must succeed: the start of a test of what a second
// run does.
func downloadedOnce(t testing.TB, repoID string, repo hubtest.Repo) (*hubtest.Hub, *harness, map[string]string) {
	t.Helper()
	hub := newHub(t)
	hub.Set("model", repoID, repo)
	h, env := newRealHarness(t, testShell(t), hub)
	env = withEnv(env, map[string]string{EnvRepoID: repoID})
	if r := h.run(env); r.code != 0 {
		t.Fatalf("download: exit %d\n%s", r.code, r.out)
	}
	return hub, h, env
}
