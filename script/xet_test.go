package script

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/hfops/function-hf-download/hubtest"
)

// The tests here run the script with the real hf (huggingface_hub with hf_xet, from the lock)
// against files the fake Hub stores with Xet, as the Hub stores large files now: hf_xet fetches
// them from the CAS (a read token, a reconstruction, xorb ranges), never from resolve.

// xetMiB is a Xet file's content per xorb in hubtest (128 chunks of 64 KiB).
const xetMiB = 1 << 20

// xetFiles is a model whose weights are Xet-backed, n MiB of them (n/8 xorbs, rounded up), beside
// a plain config.
func xetFiles(n int) map[string]string {
	return map[string]string{"config.json": `{"model_type":"x"}`, "model.safetensors": bigFile(n * xetMiB)}
}

// TestRealHFXetDownload: a model whose weights are Xet-backed (three xorbs) downloads
// byte-exact and verified, under dash and busybox; the Hub's log shows the Xet path (a read
// token, a reconstruction, each xorb) and no resolve of the weights.
func TestRealHFXetDownload(t *testing.T) {
	realHF(t)
	files := xetFiles(20)
	for shName, sh := range realShells(t) {
		t.Run(shName, func(t *testing.T) {
			t.Parallel()
			hub := newHub(t)
			hub.Set("model", "org/x", hubtest.Repo{Commit: commitV1, Files: files, Xet: []string{"model.safetensors"}})
			h, env := newRealHarness(t, sh, hub)
			r := h.run(withEnv(env, map[string]string{EnvRepoID: "org/x"}))
			if r.code != 0 {
				t.Fatalf("exit %d\n%s", r.code, r.out)
			}
			checkClean(t, h, r)
			for name, content := range files {
				if b, err := os.ReadFile(filepath.Join(h.dir, name)); err != nil || string(b) != content {
					t.Errorf("%s: %d bytes (%v), want the Hub's %d", name, len(b), err, len(content))
				}
			}
			if s, _ := h.readSummary(); !s.Verified || s.Files != 2 || s.Commit != commitV1 {
				t.Errorf("summary %+v, want 2 files of %s, verified", s, commitV1)
			}
			want := hubtest.XetTraffic{Tokens: 1, Reconstructions: 1, Xorbs: 3}
			if got := hubtest.CountXet(hub.SeenFor("model", "org/x"), "model.safetensors"); got != want {
				t.Errorf("the Hub saw %+v, want %+v:\n%s", got, want, strings.Join(hub.SeenFor("model", "org/x"), "\n"))
			}
		})
	}
}

// TestRealHFXetStall: the CAS sends a xorb's headers and then nothing until the test opens
// its gate: the watchdog stops hf (hf_xet's own read timeout is 300 s), the download fails as
// stalled, with no marker, no partial file and no hf left. The retry, the gate open,
// completes.
func TestRealHFXetStall(t *testing.T) {
	hub, gate, h, env := gatedXetHarness(t, "org/xs", 1)
	h.deadline = stallDeadline
	r := h.run(withEnv(env, map[string]string{EnvStallTimeout: "2"}))
	h.checkFailure(r, FailedPrefix("org/xs", "main")+"stalled: no progress for 2 s")
	if pids := processesWith(t, h.root); len(pids) != 0 {
		t.Errorf("processes still at %s: %v", h.root, pids)
	}
	if countXorbGETs(hub, "org/xs") == 0 {
		t.Errorf("hf never asked the CAS for the xorb: the stall was not on the Xet path\n%s", strings.Join(hub.SeenFor("model", "org/xs"), "\n"))
	}
	assertNoFile(t, MarkerFile, h.dir)
	checkClean(t, h, r)

	gate.Open()
	h.deadline = hangDeadline
	retryCompletes(t, h, env, 2)
}

// gatedXetHarness is a harness downloading the model id, whose weights (n MiB) are
// Xet-backed, from a Hub whose CAS holds xorb bodies at gate.
func gatedXetHarness(t testing.TB, id string, n int) (*hubtest.Hub, *hubtest.Gate, *harness, map[string]string) {
	t.Helper()
	realHF(t)
	hub := newHub(t)
	gate := hubtest.NewGate()
	hub.Set("model", id, hubtest.Repo{Commit: commitV1, Files: xetFiles(n), Xet: []string{"model.safetensors"}, Gate: gate})
	h, env := newRealHarness(t, testShell(t), hub)
	return hub, gate, h, withEnv(env, map[string]string{EnvRepoID: id})
}

// countXorbGETs counts the xorb GETs the Hub saw for the model repo id.
func countXorbGETs(hub *hubtest.Hub, id string) int {
	return hubtest.CountXet(hub.SeenFor("model", id), "").Xorbs
}

// TestRealHFXetTermThenRetry: a TERM while hf_xet waits for a xorb (the kubelet stopping
// the pod) ends the run at once, failed, with no marker and no hf left; hf_xet cannot resume
// the partial file it leaves, and the next run, the Hub answering, removes it and completes.
func TestRealHFXetTermThenRetry(t *testing.T) {
	hub, gate, h, env := gatedXetHarness(t, "org/xt", 9)
	s := h.start(env)
	waitFor(t, "hf_xet asking the CAS for a xorb", s, func() bool { return countXorbGETs(hub, "org/xt") > 0 })
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	r := s.wait()
	h.checkFailure(r, "stopped by SIGTERM before the download of org/xt@main finished")
	if pids := processesWith(t, h.root); len(pids) != 0 {
		t.Errorf("processes still at %s: %v", h.root, pids)
	}
	assertNoFile(t, MarkerFile, h.dir)

	gate.Open()
	retryCompletes(t, h, env, 2)
	want := xetFiles(9)["model.safetensors"]
	if b, err := os.ReadFile(filepath.Join(h.dir, "model.safetensors")); err != nil || string(b) != want {
		t.Errorf("the weights after the retry: %d bytes (%v), want the Hub's %d", len(b), err, len(want))
	}
	partials, err := filepath.Glob(filepath.Join(h.dir, ".cache", "huggingface", "download", "*.incomplete"))
	if err != nil {
		t.Fatal(err)
	}
	if len(partials) != 0 {
		t.Errorf("partial files left after the retry: %v", partials)
	}
}

// TestRealHFXetProgress: progress is reported while hf_xet downloads: two Xet-backed files of
// one xorb each, one file at a time (hf's --max-workers 1); the test lets the CAS send one
// xorb, and a report shows that file's bytes before the rest is let through (which xorb of a
// file comes first is hf_xet's choice, which file first hf's: one xorb a file leaves neither
// to chance). The last report says the whole model, and bytes never go down.
func TestRealHFXetProgress(t *testing.T) {
	realHF(t)
	hub := newHub(t)
	gate := hubtest.NewGate()
	weights := bigFile(16 * xetMiB)
	files := map[string]string{"config.json": `{"model_type":"x"}`, "a.safetensors": weights[:8*xetMiB], "b.safetensors": weights[8*xetMiB:]}
	var total int64
	for _, c := range files {
		total += int64(len(c))
	}
	hub.Set("model", "org/xp", hubtest.Repo{Commit: commitV1, Files: files, Xet: []string{"a.safetensors", "b.safetensors"}, Gate: gate})
	api := newFakeAPI(t, "127.0.0.1")
	h, env := newRealHarness(t, testShell(t), hub)
	env = withEnv(withEnv(env, progressEnv(t, h, api)), map[string]string{EnvRepoID: "org/xp", EnvMaxWorkers: "1"})
	s := h.start(env)
	waitFor(t, "the first report", s, func() bool { return len(api.taken()) >= 1 })
	// The config's body and one xorb's records (8 MiB, and 8 bytes of header a 64 KiB chunk),
	// in whichever order hf asks for them.
	gate.Let(int64(len(files["config.json"])) + 8*xetMiB + 128*8)
	waitFor(t, "a report of one file's bytes", s, func() bool {
		reps := api.taken()
		return reps[len(reps)-1].Progress.Bytes >= 8*xetMiB
	})
	gate.Open()
	r := s.wait()
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.out)
	}
	checkClean(t, h, r)
	reps := api.taken()
	if last := reps[len(reps)-1].Progress; last.Bytes != total || last.Files != int64(len(files)) {
		t.Errorf("last report %+v, want all %d bytes and %d files", last, total, len(files))
	}
	for i := 1; i < len(reps); i++ {
		if reps[i].Progress.Bytes < reps[i-1].Progress.Bytes {
			t.Errorf("report %d: bytes went down from %d to %d", i, reps[i-1].Progress.Bytes, reps[i].Progress.Bytes)
		}
	}
}

// TestRealHFXetHighPerformance: HF_XET_HIGH_PERFORMANCE, what settings.enableHFTransfer sets
// on the Job, reaches hf_xet through the script: with the CAS holding every xorb back, hf_xet
// asks for more xorbs at once than the 4 it starts with by default (16 in high performance
// mode).
func TestRealHFXetHighPerformance(t *testing.T) {
	hub, gate, h, env := gatedXetHarness(t, "org/xh", 8*8)
	s := h.start(withEnv(env, map[string]string{"HF_XET_HIGH_PERFORMANCE": "1"}))
	waitFor(t, "more than 4 xorbs asked for at once", s, func() bool { return countXorbGETs(hub, "org/xh") > 4 })
	gate.Open()
	if r := s.wait(); r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.out)
	}
	if s, _ := h.readSummary(); !s.Verified {
		t.Errorf("summary %+v, want verified", s)
	}
	if _, err := os.Stat(filepath.Join(h.dir, MarkerFile)); errors.Is(err, fs.ErrNotExist) {
		t.Error("no marker after the download")
	}
}
