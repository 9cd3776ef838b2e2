package script

import (
	"errors"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/hfops/function-hf-download/hubtest"
)

// The tests here run a check (EnvResync) with the real hf against a fake Hub
// whose branch moves, as settings.resyncInterval has the function do.

const commitV3 = "3333333333333333333333333333333333333333"

// inode is the inode number of path.
func inode(t testing.TB, path string) uint64 {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// resyncFiles are a repo's files at two commits of its main branch: one file
// kept, one changed, one gone, one new.
var resyncFiles = [2]map[string]string{{
	"config.json":       `{"model_type":"tiny"}`,
	"model.safetensors": strings.Repeat("1", 4096),
	"old.txt":           "only in v1",
}, {
	"config.json":       `{"model_type":"tiny"}`,
	"model.safetensors": strings.Repeat("2", 8192),
	"sub/new.txt":       "new in v2",
}}

// resyncTree is the directory tree (tree) of the second commit.
func resyncTree() map[string]string {
	want := maps.Clone(resyncFiles[1])
	want["sub/"] = ""
	return want
}

// TestRealResync: a check of a complete download asks the Hub for the
// revision alone, and ends there while the revision names the commit on
// disk. Once the branch moved, it downloads only what changed, beside the
// model's directory, which stays whole at the old commit until the new one
// is complete and verified, and then names the new commit's files exactly,
// in one step; the unchanged file is the same file (a hard link, neither
// fetched nor read again), the lock the same lock, a reader holding an old file open reads it
// to its end, and nothing of the staging is left.
func TestRealResync(t *testing.T) {
	realHF(t)
	for shName, sh := range realShells(t) {
		t.Run(shName, func(t *testing.T) {
			t.Parallel()
			hub := newHub(t)
			// The weights are Xet files, as the Hub stores them now: hf_xet fetches the
			// changed one from the CAS.
			lfs := []string{"model.safetensors"}
			hub.Set("model", "org/name", hubtest.Repo{Commit: commitV1, Files: resyncFiles[0], LFS: lfs, Xet: lfs})
			h, env := newRealHarness(t, sh, hub)
			check := withEnv(env, map[string]string{EnvResync: "true"})
			if r := h.run(env); r.code != 0 {
				t.Fatalf("the download: exit %d\n%s", r.code, r.out)
			}

			before, _ := hub.Seen()
			r := h.run(check)
			if r.code != 0 || !strings.Contains(r.out, "org/name@main still names commit "+commitV1+": "+h.dir+" is current") {
				t.Fatalf("the check of an unmoved branch: exit %d\n%s", r.code, r.out)
			}
			after, _ := hub.Seen()
			if diff := cmp.Diff([]string{"GET /api/models/org/name/revision/main"}, after[len(before):]); diff != "" {
				t.Errorf("the check's requests (-want +got):\n%s", diff)
			}
			if s, ok := h.readSummary(); !ok || s.Commit != commitV1 || s.Files != 3 || !s.Verified {
				t.Errorf("the check's summary %+v (%v), want the marker's", s, ok)
			}
			if len(r.calls) != 0 {
				t.Errorf("hf ran: %v", r.calls)
			}

			config, lock := inode(t, filepath.Join(h.dir, "config.json")), inode(t, filepath.Join(h.dir, LockFile))
			reader, err := os.Open(filepath.Join(h.dir, "model.safetensors"))
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = reader.Close() }()
			gate := hubtest.NewGate()
			hub.Set("model", "org/name", hubtest.Repo{Commit: commitV2, Files: resyncFiles[1], LFS: lfs, Xet: lfs, Gate: gate})
			before, _ = hub.Seen()
			xorbs := countXorbGETs(hub, "org/name")
			run := h.start(check)
			waitFor(t, "hf_xet asking the CAS for the new weights", run, func() bool { return countXorbGETs(hub, "org/name") > xorbs })
			// Mid-download, the model's directory is the old commit, whole.
			if diff := cmp.Diff(resyncFiles[0], tree(t, h.dir)); diff != "" {
				t.Errorf("the directory while the new commit downloads (-want +got):\n%s", diff)
			}
			if m := h.readMarker(); m.Commit != commitV1 {
				t.Errorf("the marker while the new commit downloads says %q", m.Commit)
			}
			gate.Open()
			moved := run.wait()
			if moved.code != 0 {
				t.Fatalf("the check of a moved branch: exit %d\n%s", moved.code, moved.out)
			}
			// The unchanged file is verified by what the first run recorded, not read again.
			if !strings.Contains(moved.out, "hf-download: 1 of them unchanged since an earlier run verified them: not read again") {
				t.Errorf("the check read the unchanged file again:\n%s", moved.out)
			}
			if diff := cmp.Diff(resyncTree(), tree(t, h.dir)); diff != "" {
				t.Errorf("the directory after the switch (-want +got):\n%s", diff)
			}
			if m := h.readMarker(); m.Commit != commitV2 || m.Files != 3 || !m.Verified {
				t.Errorf("marker %+v, want v2's", m)
			}
			if s, ok := h.readSummary(); !ok || s.Commit != commitV2 || s.Files != 3 || s.Bytes != int64(len(`{"model_type":"tiny"}`)+8192+9) {
				t.Errorf("summary %+v (%v), want v2's", s, ok)
			}
			if got := inode(t, filepath.Join(h.dir, "config.json")); got != config {
				t.Errorf("config.json is a new file (inode %d, was %d): the unchanged file was fetched again", got, config)
			}
			if got := inode(t, filepath.Join(h.dir, LockFile)); got != lock {
				t.Errorf("the lock is a new file (inode %d, was %d)", got, lock)
			}
			reqs, unknown := hub.Seen()
			for _, req := range reqs[len(before):] {
				if strings.HasPrefix(req, "GET /org/name/resolve/") && !strings.HasSuffix(req, "/model.safetensors") && !strings.HasSuffix(req, "/new.txt") {
					t.Errorf("the check fetched an unchanged file: %s", req)
				}
			}
			if len(unknown) != 0 {
				t.Errorf("hf asked the fake Hub for %q", unknown)
			}
			old, err := io.ReadAll(reader)
			if err != nil || string(old) != resyncFiles[0]["model.safetensors"] {
				t.Errorf("the reader of the old weights read %d bytes (%v), want the old file whole", len(old), err)
			}
			staging := filepath.Join(h.root, "models", ".hf-resync")
			if entries, err := os.ReadDir(staging); err != nil || len(entries) != 0 {
				t.Errorf("%s holds %v (%v), want nothing", staging, entries, err)
			}
			checkClean(t, h, r)
		})
	}
}

// TestRealResyncFailureKeepsTheModel: a check that fails (the Hub refuses
// it, or the new commit's download is stopped) leaves the model's directory
// as it was, marker and all, and no staging directory; the next check finds
// the branch moved again and switches.
func TestRealResyncFailureKeepsTheModel(t *testing.T) {
	realHF(t)
	hub := newHub(t)
	lfs := []string{"model.safetensors"}
	hub.Set("model", "org/name", hubtest.Repo{Commit: commitV1, Files: resyncFiles[0], LFS: lfs})
	h, env := newRealHarness(t, testShell(t), hub)
	check := withEnv(env, map[string]string{EnvResync: "true"})
	if r := h.run(env); r.code != 0 {
		t.Fatalf("the download: exit %d\n%s", r.code, r.out)
	}
	staging := filepath.Join(h.root, "models", ".hf-resync")
	kept := func(what string) {
		t.Helper()
		if diff := cmp.Diff(resyncFiles[0], tree(t, h.dir)); diff != "" {
			t.Errorf("the directory after %s (-want +got):\n%s", what, diff)
		}
		if m := h.readMarker(); m.Commit != commitV1 || m.Files != 3 {
			t.Errorf("the marker after %s: %+v", what, m)
		}
		if entries, err := os.ReadDir(staging); err != nil && !errors.Is(err, fs.ErrNotExist) || len(entries) != 0 {
			t.Errorf("%s holds %v (%v) after %s, want nothing", staging, entries, err, what)
		}
	}

	hub.Set("model", "org/name", hubtest.Repo{Fail: &hubtest.Error{Status: 500, Message: "Internal Error"}})
	r := h.run(check)
	h.checkFailure(r, "download of org/name@main failed: Server error '500 Internal Server Error' for url '"+hub.URL()+"/api/models/org/name/revision/main'")
	kept("a refused check")

	gate := hubtest.NewGate()
	hub.Set("model", "org/name", hubtest.Repo{Commit: commitV2, Files: resyncFiles[1], LFS: lfs, Gate: gate})
	run := h.start(check)
	waitFor(t, "the new weights requested", run, func() bool {
		reqs, _ := hub.Seen()
		return slices.Contains(reqs, "GET /org/name/resolve/"+commitV2+"/model.safetensors")
	})
	// The kubelet stops a replaced Job's pod with TERM.
	if err := run.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	h.checkFailure(run.wait(), "stopped by SIGTERM before the download of org/name@main finished")
	kept("a check stopped mid-download")

	hub.Set("model", "org/name", hubtest.Repo{Commit: commitV3, Files: resyncFiles[1], LFS: lfs})
	if r := h.run(check); r.code != 0 {
		t.Fatalf("the next check: exit %d\n%s", r.code, r.out)
	}
	if diff := cmp.Diff(resyncTree(), tree(t, h.dir)); diff != "" {
		t.Errorf("the directory after the next check (-want +got):\n%s", diff)
	}
	if m := h.readMarker(); m.Commit != commitV3 {
		t.Errorf("the marker after the next check says %q", m.Commit)
	}
}

// TestSwapWithoutExchange: where the file system cannot exchange two paths
// in one step, swap renames twice, and the model's directory ends as the new
// one all the same, the old one removed. hfdl.py's exchange is replaced, as
// an NFS mount would answer it.
func TestSwapWithoutExchange(t *testing.T) {
	hub, err := filepath.Abs(filepath.Join("..", "bin", "hf-"+HubVersion))
	if err != nil {
		t.Fatal(err)
	}
	realHF(t)
	for _, tc := range []struct{ name, exchange, says string }{
		{name: "exchange", says: "in one step (RENAME_EXCHANGE)"},
		{name: "two renames", exchange: "hfdl.exchange = lambda a, b: False\n", says: "by two renames"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			live := filepath.Join(root, "models", "org", "name")
			staging := filepath.Join(root, "models", ".hf-resync", "x")
			for dir, content := range map[string]string{live: "old", staging: "new"} {
				mustMkdir(t, dir)
				mustWrite(t, filepath.Join(dir, "a.txt"), content)
			}
			code := "import sys\nsys.path.insert(0, sys.argv[1])\nimport hfdl\n" + tc.exchange + "sys.argv[1:] = sys.argv[2:]\nsys.exit(hfdl.main())\n"
			cmd := exec.Command(debianPython, "-c", code, filepath.Dir(helperPath(t)), "swap", t.TempDir())
			cmd.Env = []string{"HFDL_LOCAL_DIR=" + staging, "HFDL_LIVE_DIR=" + live, "PYTHONPATH=" + hub, "PYTHONDONTWRITEBYTECODE=1"}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("swap: %v\n%s", err, out)
			}
			if got, err := os.ReadFile(filepath.Join(live, "a.txt")); err != nil || string(got) != "new" || !strings.Contains(string(out), tc.says) {
				t.Errorf("the model's a.txt after the swap: %q, %v; want it switched %s:\n%s", got, err, tc.says, out)
			}
			if entries, _ := os.ReadDir(filepath.Dir(staging)); len(entries) != 0 {
				t.Errorf("left beside the staging directory: %v\n%s", entries, out)
			}
		})
	}
}
