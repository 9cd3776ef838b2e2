package script

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hfops/function-hf-download/hubtest"
)

// The tests here are of what keeps a download from going wrong: the lock,
// the space check, the watchdog, the Hub's rate limits, and the fallback
// without the helper.

// processesWith are the pids of the processes whose command line holds s.
func processesWith(t testing.TB, s string) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline")); err == nil && bytes.Contains(cmdline, []byte(s)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestRealHFExclusive: an old run of v1, its file held back by the Hub, and
// a new run of v2 in one directory: the new one waits for the old one's lock
// (and says so), plans only once it holds it, and both succeed in turn once
// the Hub lets the old one's file through; the directory ends with v2's files
// and marker.
func TestRealHFExclusive(t *testing.T) {
	realHF(t)
	hub := newHub(t)
	v1 := map[string]string{"big.bin": strings.Repeat("1", 1000)}
	v2 := map[string]string{"config.json": `{"model_type":"v2"}`, "model.safetensors": strings.Repeat("2", 1000)}
	gate := hubtest.NewGate()
	hub.Set("model", "org/m", hubtest.Repo{Commit: commitV1, Files: v1, Gate: gate})
	h, env := newRealHarness(t, testShell(t), hub)
	env = withEnv(env, map[string]string{EnvRepoID: "org/m"})
	oldLog := filepath.Join(h.root, "old-termination-log")
	old := h.start(withEnv(env, map[string]string{EnvRevision: "v1", EnvTerminationLog: oldLog}))
	bigGET := "GET /org/m/resolve/" + commitV1 + "/big.bin"
	waitFor(t, "the download of v1 under way", old, func() bool {
		reqs, _ := hub.Seen()
		return slices.Contains(reqs, bigGET)
	})
	hub.Set("model", "org/m", hubtest.Repo{Commit: commitV2, Files: v2})
	next := h.start(withEnv(env, map[string]string{EnvRevision: "v2"}))
	waiting := "hf-download: another download holds the lock on " + h.dir + "; waiting for it to end\n"
	waitFor(t, "the new run waiting for the lock", next, func() bool { return strings.Contains(next.out.String(), waiting) })
	gate.Open()

	if r := old.wait(); r.code != 0 {
		t.Fatalf("the old run: exit %d\n%s", r.code, r.out)
	}
	if r := next.wait(); r.code != 0 {
		t.Fatalf("the new run: exit %d\n%s", r.code, r.out)
	}
	reqs, _ := hub.Seen()
	if plan := slices.Index(reqs, "GET /api/models/org/m/revision/v2?blobs=true"); plan < slices.Index(reqs, bigGET) {
		t.Errorf("the new run planned (request %d) before the old one's download (%d): %q", plan, slices.Index(reqs, bigGET), reqs)
	}
	if diff := cmp.Diff(v2, tree(t, h.dir)); diff != "" {
		t.Errorf("the directory (-want +got):\n%s", diff)
	}
	if m := h.readMarker(); m.Revision != "v2" || m.Commit != commitV2 || !m.Verified {
		t.Errorf("marker %+v, want v2's", m)
	}
	data, err := os.ReadFile(oldLog)
	if err != nil || !strings.Contains(string(data), `"commit":"`+commitV1+`"`) {
		t.Errorf("the old run's summary %q, %v", data, err)
	}
}

// TestLockWait: a run waits while another holds the directory's lock (here
// the test), saying so; TERM ends the wait at once; once the lock is
// released the run goes on.
func TestLockWait(t *testing.T) {
	h := newHarness(t)
	mustMkdir(t, h.dir)
	f, err := os.OpenFile(filepath.Join(h.dir, LockFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	waiting := "hf-download: another download holds the lock on " + h.dir + "; waiting for it to end\n"

	s := h.start(nil)
	waitFor(t, "the log line about the lock", s, func() bool { return strings.Contains(s.out.String(), waiting) })
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// The test holds the lock: only the TERM can end this run.
	r := s.wait()
	h.checkFailure(r, "stopped by SIGTERM")
	if len(r.calls) != 0 {
		t.Errorf("hf ran: %v", r.calls)
	}

	s = h.start(nil)
	waitFor(t, "the log line about the lock", s, func() bool { return strings.Contains(s.out.String(), waiting) })
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_UN); err != nil {
		t.Fatal(err)
	}
	if r := s.wait(); r.code != 0 || len(r.calls) != 1 {
		t.Errorf("after the lock was released: exit %d, hf calls %v\n%s", r.code, r.calls, r.out)
	}
}

// TestHFHoldsTheLock: hf holds the directory's lock itself, inherited from
// the script, and nothing else the script started does (the tee of its
// stderr, the watchdog), so that the script killed outright (SIGKILL: no trap
// runs) while hf still writes cannot let another download into the directory
// beside it, and the lock is free once hf is gone.
func TestHFHoldsTheLock(t *testing.T) {
	h := newHarness(t)
	s := h.start(map[string]string{"HFSTUB_MODE": "hang", EnvStallTimeout: "600"})
	hf := waitPidFile(t, h.record+".pid", s)
	// Until then a fork may hold a copy of the lock on its way to exec or
	// to closing it.
	waitFor(t, "tee and the watchdog's sleep (every 10 s)", s, func() bool {
		var tee, poll bool
		for _, cmdline := range runProcesses(t, s) {
			tee = tee || strings.HasPrefix(cmdline, "tee\x00")
			poll = poll || cmdline == "sleep\x0010\x00"
		}
		return tee && poll
	})
	path := filepath.Join(h.dir, LockFile)
	want := []int{s.cmd.Process.Pid, hf}
	slices.Sort(want)
	if diff := cmp.Diff(want, openedBy(t, path, runProcesses(t, s))); diff != "" {
		t.Errorf("the run's processes with %s open (-the script and hf +got):\n%s", LockFile, diff)
	}
	if err := s.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	// Wait reaps the script; hf, left running, still holds its output.
	waitFor(t, "the script's end", nil, func() bool { return errors.Is(s.cmd.Process.Signal(syscall.Signal(0)), os.ErrProcessDone) })
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	lock := func() error { return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) }
	if err := lock(); !errors.Is(err, syscall.EWOULDBLOCK) {
		t.Fatalf("the script killed, hf (pid %d) running: locking %s gives %v, want it held (%v): hf must hold the lock it inherits", hf, LockFile, err, syscall.EWOULDBLOCK)
	}
	if err := syscall.Kill(hf, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the lock free once hf is gone", nil, func() bool { return lock() == nil })
}

// runProcesses are the command lines, by pid, of the processes in run's
// process group.
func runProcesses(t testing.TB, run *started) map[int]string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	procs := map[int]string{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // gone
		}
		// pid (comm) state ppid pgrp ...: comm may hold anything but the last ')'.
		fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(fields) < 3 || fields[2] != strconv.Itoa(run.cmd.Process.Pid) {
			continue
		}
		if cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline")); err == nil {
			procs[pid] = string(cmdline)
		}
	}
	return procs
}

// openedBy are the pids, sorted, of those of procs that have path open.
func openedBy(t testing.TB, path string, procs map[int]string) []int {
	t.Helper()
	var pids []int
	for pid := range procs {
		fds := filepath.Join("/proc", strconv.Itoa(pid), "fd")
		entries, err := os.ReadDir(fds)
		if err != nil {
			continue // gone
		}
		for _, e := range entries {
			if target, err := os.Readlink(filepath.Join(fds, e.Name())); err == nil && target == path {
				pids = append(pids, pid)
				break
			}
		}
	}
	slices.Sort(pids)
	return pids
}

// smallVolume mounts a tmpfs of size bytes at dir (which it makes) until the
// test ends: a volume that a download can fill.
func smallVolume(t testing.TB, dir string, size int) {
	t.Helper()
	if os.Geteuid() != 0 {
		missingTool(t, "mounting a tmpfs needs root")
	}
	mustMkdir(t, dir)
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+strconv.Itoa(size)); err != nil {
		t.Fatalf("mounting a tmpfs at %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmounting %s: %v", dir, err)
		}
	})
}

// TestRealHFNotEnoughSpace: on a volume too small for the plan (a tmpfs),
// the download fails before any file is asked for, with both numbers and the
// PVC (or the directory). What the space is compared with is what is still to
// fetch: files already there (a re-run) count nothing; when files the plan
// drops (an older revision's) would make the room, they are pruned first.
// The partial files of a killed hf, which no run resumes, are removed first.
func TestRealHFNotEnoughSpace(t *testing.T) {
	realHF(t)
	const mib = 1 << 20
	big := strings.Repeat("x", 12_000_000)
	for _, tc := range []struct {
		name    string
		volume  int
		size    int
		pvc     string
		partial int               // bytes of a partial file of big that a killed hf left
		first   map[string]string // the files of a first download, of v1
		want    string            // {dir} is the local dir, {free} what hf's .cache left free
	}{
		{name: "PVC named", volume: mib, size: 2_000_000, pvc: "llama-pvc", want: "needs 2.0 MB, 1.0 MB free on PVC llama-pvc"},
		{name: "no PVC", volume: mib, size: 2_000_000, want: "needs 2.0 MB, 1.0 MB free on {dir}"},
		{name: "fits", volume: mib, size: 500_000, pvc: "llama-pvc"},
		{name: "already there", volume: mib, size: 700_000, pvc: "llama-pvc", first: map[string]string{"model.safetensors": big[:700_000]}},
		{name: "older revision pruned first", volume: mib, size: 600_000, first: map[string]string{"old.safetensors": big[:700_000]}},
		{name: "older revision not enough", volume: mib, size: 1_100_000, first: map[string]string{"old.safetensors": big[:100_000]}, want: "needs 1.1 MB, {free} free on {dir}"},
		{name: "a killed run's partial file", volume: 16 * mib, size: len(big), partial: 10_000_000},
		{name: "not enough", volume: 8 * mib, size: len(big), pvc: "p", want: "needs 12.0 MB, 8.4 MB free on PVC p"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			hub := newHub(t)
			content := big[:tc.size]
			hub.Set("model", "org/big", hubtest.Repo{Commit: commitV1, Files: map[string]string{"model.safetensors": content}, LFS: []string{"model.safetensors"}})
			h, env := newRealHarness(t, testShell(t), hub)
			smallVolume(t, filepath.Join(h.root, "models"), tc.volume)
			env = withEnv(env, map[string]string{EnvRepoID: "org/big", EnvPVC: tc.pvc})
			if tc.pvc == "" {
				delete(env, EnvPVC)
			}
			if tc.first != nil {
				hub.Set("model", "org/big", hubtest.Repo{Commit: commitV2, Files: tc.first, LFS: []string{"old.safetensors", "model.safetensors"}})
				if r := h.run(withEnv(env, map[string]string{EnvRevision: "v1"})); r.code != 0 {
					t.Fatalf("first run: exit %d\n%s", r.code, r.out)
				}
				hub.Set("model", "org/big", hubtest.Repo{Commit: commitV1, Files: map[string]string{"model.safetensors": content}, LFS: []string{"model.safetensors"}})
			}
			partial := ""
			if tc.partial > 0 {
				// hf's name for it: _local_folder.py's incomplete_path, with
				// the process's own part (_download_to_tmp_and_move).
				meta := sha1.Sum([]byte("model.safetensors.metadata"))
				dl := filepath.Join(h.dir, ".cache", "huggingface", "download")
				mustMkdir(t, dl)
				partial = filepath.Join(dl, base64.URLEncoding.EncodeToString(meta[:])+"."+hubtest.SHA256(content)+".1a2b3c4d.incomplete")
				mustWrite(t, partial, content[:tc.partial])
			}
			before, _ := hub.Seen()
			r := h.run(env)
			reqs, _ := hub.Seen()
			if partial != "" {
				if _, err := os.Stat(partial); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("the killed run's partial file: %v", err)
				}
			}
			if tc.want == "" {
				if s, _ := h.readSummary(); r.code != 0 || !s.Verified || s.Bytes != int64(tc.size) {
					t.Errorf("exit %d, summary %+v\n%s", r.code, s, r.out)
				}
				if diff := cmp.Diff(map[string]string{"model.safetensors": content}, tree(t, h.dir)); diff != "" {
					t.Errorf("the directory (-want +got):\n%s", diff)
				}
				return
			}
			want := FailedPrefix("org/big", "main") + strings.ReplaceAll(tc.want, "{dir}", h.dir)
			if before, after, ok := strings.Cut(want, "{free}"); ok {
				re := regexp.MustCompile("^" + regexp.QuoteMeta(before) + `9[0-9][0-9]\.[0-9] kB` + regexp.QuoteMeta(after) + "$")
				got, _ := h.readTermLog()
				if !re.MatchString(strings.TrimSuffix(got, "\n")) || r.code != 1 {
					t.Errorf("exit %d, reason %q, want one like %s\n%s", r.code, got, re, r.out)
				}
			} else {
				h.checkFailure(r, want)
			}
			for _, req := range reqs[len(before):] {
				if strings.Contains(req, "/resolve/") {
					t.Errorf("a file was asked for: %s", req)
				}
			}
			checkClean(t, h, r)
		})
	}
}

// stallDeadline ends a run whose hf stalls, with a stall timeout of a second
// or two: the watchdog has stopped hf long before, whatever the load, and one
// that never fires fails the test in a minute rather than at hangDeadline.
const stallDeadline = time.Minute

// TestRealHFStall: a Hub that sends a file's headers and then nothing until
// the test opens its gate: the watchdog stops hf after the stall timeout
// (hf's own read timeout is far longer), the download fails as stalled,
// leaving no hf running and no marker. The retry, the gate open and the stall
// timeout the default (600 s, which only a hang reaches), completes.
func TestRealHFStall(t *testing.T) {
	realHF(t)
	files := map[string]string{"config.json": `{"model_type":"s"}`, "model.safetensors": strings.Repeat("s", 3000)}
	for shName, sh := range realShells(t) {
		t.Run(shName, func(t *testing.T) {
			t.Parallel()
			hub := newHub(t)
			gate := hubtest.NewGate()
			hub.Set("model", "org/s", hubtest.Repo{Commit: commitV1, Files: files, Gate: gate})
			h, env := newRealHarness(t, sh, hub)
			env = withEnv(env, map[string]string{EnvRepoID: "org/s"})
			h.deadline = stallDeadline
			r := h.run(withEnv(env, map[string]string{EnvStallTimeout: "2"}))
			h.checkFailure(r, FailedPrefix("org/s", "main")+"stalled: no progress for 2 s")
			if pids := processesWith(t, h.root); len(pids) != 0 {
				t.Errorf("processes still at %s: %v", h.root, pids)
			}
			if _, err := os.Stat(h.markerPath()); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("marker after a stall: %v", err)
			}
			checkClean(t, h, r)

			gate.Open()
			h.deadline = hangDeadline
			retryCompletes(t, h, env, 2)
		})
	}
}

// retryCompletes runs the script again with env: it must complete, verified, with files files.
func retryCompletes(t testing.TB, h *harness, env map[string]string, files int64) {
	t.Helper()
	if r := h.run(env); r.code != 0 {
		t.Fatalf("the retry: exit %d\n%s", r.code, r.out)
	}
	if s, _ := h.readSummary(); !s.Verified || s.Files != files {
		t.Errorf("the retry's summary %+v, want %d files, verified", s, files)
	}
}

// TestStallStopsHF: hf that hangs without writing a byte is stopped by the
// watchdog after the stall timeout, and the run fails as stalled.
func TestStallStopsHF(t *testing.T) {
	h := newHarness(t)
	h.deadline = stallDeadline
	r := h.run(map[string]string{"HFSTUB_MODE": "hang", EnvStallTimeout: "1"})
	h.checkFailure(r, FailedPrefix("org/name", "main")+"stalled: no progress for 1 s")
	b, err := os.ReadFile(h.record + ".pid")
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("hf (pid %d) still runs: kill -0 says %v", pid, err)
	}
	assertNoFile(t, MarkerFile, h.dir)
}

// TestRealHFRateLimit: the Hub's 429s are retried after the reset time it
// gives, by the plan and by hf; when they outlast the retries, the reason
// says so with the Hub's reset time.
func TestRealHFRateLimit(t *testing.T) {
	realHF(t)
	for _, tc := range []struct {
		name  string
		limit hubtest.RateLimit
		want  string // the reason; "" is a success
		log   string // in the log
	}{{
		name:  "plan limited twice",
		limit: hubtest.RateLimit{Resource: "api", Count: 2},
		log:   "hf-download: rate limited by the Hub (HTTP 429); retrying in 1 s [retry 2/5]\n",
	}, {
		name:  "plan limited",
		limit: hubtest.RateLimit{Resource: "api", Count: -1, Reset: 0},
		want:  "rate limited by the Hub (HTTP 429) after 5 retries; the Hub's limit resets in 0 s",
		log:   "hf-download: rate limited by the Hub (HTTP 429); retrying in 1 s [retry 5/5]\n",
	}, {
		name:  "files limited",
		limit: hubtest.RateLimit{Resource: "resolvers", Count: -1, Reset: 0, Quota: 100, Window: 60},
		want:  "rate limited by the Hub (HTTP 429) after hf's retries; the Hub's limit resets in 0 s",
		log:   "Rate limited. Waiting 1.0s before retry [Retry 5/5].",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			hub := newHub(t)
			limit := tc.limit
			hub.Set("model", "org/rl", hubtest.Repo{Commit: commitV1, Files: map[string]string{"config.json": "{}"}, Limit: &limit})
			h, env := newRealHarness(t, testShell(t), hub)
			r := h.run(withEnv(env, map[string]string{EnvRepoID: "org/rl"}))
			if tc.want == "" {
				if r.code != 0 {
					t.Errorf("exit %d\n%s", r.code, r.out)
				}
			} else {
				h.checkFailure(r, FailedPrefix("org/rl", "main")+tc.want)
			}
			if !strings.Contains(r.out, tc.log) {
				t.Errorf("the log lacks %q:\n%s", tc.log, r.out)
			}
			checkClean(t, h, r)
		})
	}
}

// TestWithoutHelper: without the helper, or a python3 that imports
// huggingface_hub (an image whose hf has a Python of its own), the script
// says so and downloads as hf alone does: the revision as given, counts of
// what the directory holds, the commit of hf's metadata, not verified, no
// card.
func TestWithoutHelper(t *testing.T) {
	const alone = "; downloading as hf alone does: no plan, no space check, no pruning, no verification, no model card\n"
	for _, tc := range []struct {
		name  string
		setup func(h *harness) map[string]string
		warn  string
	}{
		{"huggingface_hub not importable", func(*harness) map[string]string { return nil },
			"hf-download: warning: python3 cannot import huggingface_hub (hf has a Python of its own?)" + alone},
		{"no helper", func(h *harness) map[string]string {
			return map[string]string{EnvHelper: filepath.Join(h.root, "nope.py")}
		}, "hf-download: warning: the helper {root}/nope.py is missing" + alone},
		{"no python3", func(h *harness) map[string]string {
			mustRemove(t, filepath.Join(h.stubs, "python3"))
			return nil
		}, "hf-download: warning: python3 is missing" + alone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			r := h.run(tc.setup(h))
			if r.code != 0 {
				t.Fatalf("exit %d\n%s", r.code, r.out)
			}
			if warn := strings.ReplaceAll(tc.warn, "{root}", h.root); !strings.Contains(r.out, warn) {
				t.Errorf("the log lacks %q:\n%s", warn, r.out)
			}
			s, _ := h.readSummary()
			s.Seconds = 0
			if diff := cmp.Diff(Summary{Commit: commitA, Files: int64(len(stubFiles)), Bytes: stubBytes()}, s); diff != "" {
				t.Errorf("summary (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(wantArgs("org/name", "main", h.dir), r.calls[len(r.calls)-1].Args); diff != "" {
				t.Errorf("hf's argv (-want +got):\n%s", diff)
			}
		})
	}
}

// TestRealHFTermDuringPlan: a TERM while the helper plans (here waiting out
// the Hub's rate limit, an hour) stops it, and the run, leaving no helper
// running and no temporary files.
func TestRealHFTermDuringPlan(t *testing.T) {
	realHF(t)
	hub := newHub(t)
	hub.Set("model", "org/x", hubtest.Repo{Commit: commitV1, Files: map[string]string{"config.json": "{}"}, Limit: &hubtest.RateLimit{Resource: "api", Count: -1, Reset: 3600}})
	h, env := newRealHarness(t, testShell(t), hub)
	s := h.start(withEnv(env, map[string]string{EnvRepoID: "org/x"}))
	waitFor(t, "the wait for the rate limit", s, func() bool {
		return strings.Contains(s.out.String(), "hf-download: rate limited by the Hub (HTTP 429); retrying in 3601 s [retry 1/5]\n")
	})
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	r := s.wait()
	h.checkFailure(r, "stopped by SIGTERM before the download of org/x@main finished")
	if pids := processesWith(t, filepath.Join(h.root, "tmp")); len(pids) != 0 {
		t.Errorf("processes still in TMPDIR: %v", pids)
	}
	checkClean(t, h, r)
}

// TestWithoutFlock: an image without flock still downloads, with a warning
// that nothing keeps another download out.
func TestWithoutFlock(t *testing.T) {
	h := newHarness(t)
	mustRemove(t, filepath.Join(h.tools, "flock"))
	r := h.run(nil)
	if r.code != 0 || len(r.calls) != 1 {
		t.Fatalf("exit %d, hf calls %v\n%s", r.code, r.calls, r.out)
	}
	if want := "hf-download: warning: flock is missing; nothing keeps another download out of " + h.dir + "\n"; !strings.Contains(r.out, want) {
		t.Errorf("the log lacks %q:\n%s", want, r.out)
	}
}
