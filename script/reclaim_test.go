package script

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The reclaim program, run as a reclaim Job runs it (python3 -I -c Reclaim,
// the environment alone), with debianPython, against a directory tree made
// for each case: what it removes, what it must never touch, and what it
// reports.

type reclaimRun struct {
	code   int
	out    string
	report string
}

func reclaimCmd(t *testing.T, root, model string) (*exec.Cmd, string) {
	t.Helper()
	termlog := filepath.Join(t.TempDir(), "termination-log")
	cmd := exec.Command(debianPython, "-I", "-c", Reclaim)
	cmd.Env = []string{EnvReclaimRoot + "=" + root, EnvReclaimModel + "=" + model, EnvReclaimTermLog + "=" + termlog, "PATH=/usr/bin:/bin"}
	return cmd, termlog
}

func runReclaim(t *testing.T, root, model string) reclaimRun {
	t.Helper()
	cmd, termlog := reclaimCmd(t, root, model)
	out, err := cmd.CombinedOutput()
	r := reclaimRun{out: string(out)}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	report, _ := os.ReadFile(termlog)
	r.report = strings.TrimSpace(string(report))
	return r
}

// everything lists every path under root (symlinks with their targets), so a case
// can say exactly what is left.
func everything(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		switch {
		case rel == ".":
		case info.Mode()&os.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			out = append(out, rel+" -> "+target)
		case info.IsDir():
			out = append(out, rel+"/")
		default:
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
}

// aModel is what a download leaves: files, hf's cache, the marker and the lock.
func aModel(t *testing.T, dir string) {
	t.Helper()
	write(t, filepath.Join(dir, "config.json"), `{"model_type":"stub"}`)
	write(t, filepath.Join(dir, "weights", "model.safetensors"), strings.Repeat("x", 10000))
	write(t, filepath.Join(dir, ".cache", "huggingface", "download", "config.json.metadata"), "m")
	write(t, filepath.Join(dir, MarkerFile), "{}")
	write(t, filepath.Join(dir, LockFile), "")
}

func reported(t *testing.T, r reclaimRun) Reclaimed {
	t.Helper()
	var got Reclaimed
	d := json.NewDecoder(strings.NewReader(r.report))
	d.DisallowUnknownFields()
	if err := d.Decode(&got); err != nil {
		t.Fatalf("the report %q is no Reclaimed: %v (output %s)", r.report, err, r.out)
	}
	return got
}

func TestReclaim(t *testing.T) {
	outside := t.TempDir()
	write(t, filepath.Join(outside, "precious"), "keep me")

	cases := map[string]struct {
		model string
		setup func(t *testing.T, root string)
		// left is what must be under root afterwards.
		left []string
		// files is how many files the report says went; fails: the run
		// fails with a reason containing it.
		files int64
		fails string
	}{
		"an org/name model goes, its neighbours and its org stay": {
			model: "org/alpha",
			setup: func(t *testing.T, root string) {
				aModel(t, filepath.Join(root, "org", "alpha"))
				aModel(t, filepath.Join(root, "org", "beta"))
				aModel(t, filepath.Join(root, "org", "alpha-2"))
			},
			left:  append(append([]string{".hf-reclaim/", "org/"}, modelTree("org/alpha-2")...), modelTree("org/beta")...),
			files: 5,
		},
		"a model without an org": {
			model: "alpha",
			setup: func(t *testing.T, root string) { aModel(t, filepath.Join(root, "alpha")) },
			left:  []string{".hf-reclaim/"},
			files: 5,
		},
		"a directory that is not there frees nothing": {
			model: "org/alpha",
			setup: func(t *testing.T, root string) { aModel(t, filepath.Join(root, "org", "beta")) },
			left:  append([]string{".hf-reclaim/", "org/"}, modelTree("org/beta")...),
		},
		"symlinks inside are removed as links, their targets stay": {
			model: "org/alpha",
			setup: func(t *testing.T, root string) {
				aModel(t, filepath.Join(root, "org", "alpha"))
				symlink(t, outside, filepath.Join(root, "org", "alpha", "escape"))
				symlink(t, filepath.Join(outside, "precious"), filepath.Join(root, "org", "alpha", "weights", "file"))
			},
			left:  []string{".hf-reclaim/", "org/"},
			files: 5,
		},
		"an org that is a symlink is not followed": {
			model: "org/alpha",
			setup: func(t *testing.T, root string) {
				aModel(t, filepath.Join(outside, "alpha"))
				symlink(t, outside, filepath.Join(root, "org"))
			},
			left:  []string{"org -> " + outside},
			fails: "is a symlink or a file, not a directory: it is left as it is",
		},
		"a model path that is a symlink is not followed": {
			model: "org/alpha",
			setup: func(t *testing.T, root string) {
				aModel(t, filepath.Join(outside, "alpha"))
				symlink(t, filepath.Join(outside, "alpha"), filepath.Join(root, "org", "alpha"))
			},
			left:  []string{".hf-reclaim/", "org/", "org/alpha -> " + filepath.Join(outside, "alpha")},
			fails: "is a symlink or a file, not a directory: it is left as it is",
		},
		"a removal cut short is finished first": {
			model: "org/alpha",
			setup: func(t *testing.T, root string) {
				aModel(t, filepath.Join(root, ".hf-reclaim", parkedName("org/alpha")))
				aModel(t, filepath.Join(root, "org", "alpha"))
			},
			left:  []string{".hf-reclaim/", "org/"},
			files: 10,
		},
		"a check's staging directory left behind goes too, another model's stays": {
			model: "org/alpha",
			setup: func(t *testing.T, root string) {
				aModel(t, filepath.Join(root, "org", "alpha"))
				aModel(t, filepath.Join(root, ".hf-resync", stagingName(filepath.Join(root, "org", "alpha"))))
				aModel(t, filepath.Join(root, ".hf-resync", "0123456789abcdef0123456789abcdef"))
			},
			left:  append(append([]string{".hf-reclaim/", ".hf-resync/"}, modelTree(".hf-resync/0123456789abcdef0123456789abcdef")...), "org/"),
			files: 10,
		},
		"a name with ..":        {model: "../alpha", fails: "not a repo id under a mount", setup: anAlpha, left: modelTree("alpha")},
		"three parts":           {model: "a/b/c", fails: "not a repo id under a mount", setup: anAlpha, left: modelTree("alpha")},
		"a hidden part":         {model: ".hf-reclaim", fails: "not a repo id under a mount", setup: anAlpha, left: modelTree("alpha")},
		"an absolute path":      {model: "/etc", fails: "not a repo id under a mount", setup: anAlpha, left: modelTree("alpha")},
		"an empty name":         {model: "", fails: "not a repo id under a mount", setup: anAlpha, left: modelTree("alpha")},
		"an org with a newline": {model: "org\n/x", fails: "not a repo id under a mount", setup: anAlpha, left: modelTree("alpha")},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			if tc.setup != nil {
				tc.setup(t, root)
			}
			r := runReclaim(t, root, tc.model)
			if tc.fails != "" {
				if r.code != 1 || !strings.Contains(r.report, tc.fails) || strings.Contains(r.report, "\n") {
					t.Errorf("exit %d, report %q; want exit 1 and one line with %q (output %s)", r.code, r.report, tc.fails, r.out)
				}
			} else {
				if r.code != 0 {
					t.Fatalf("exit %d: %s", r.code, r.out)
				}
				got := reported(t, r)
				if got.Files != tc.files || (got.BytesFreed == 0) != (tc.files == 0) {
					t.Errorf("reported %+v, want %d files and bytes freed only when files went", got, tc.files)
				}
			}
			if diff := cmp.Diff(tc.left, everything(t, root)); diff != "" {
				t.Errorf("left under the mount (-want +got):\n%s", diff)
			}
			if got, err := os.ReadFile(filepath.Join(outside, "precious")); err != nil || string(got) != "keep me" {
				t.Fatalf("a file outside the model's directory was touched: %q, %v", got, err)
			}
		})
	}
}

// anAlpha is a model at the mount's top, which a refused name must leave.
func anAlpha(t *testing.T, root string) { aModel(t, filepath.Join(root, "alpha")) }

// modelTree is what aModel leaves at dir, as everything lists it.
func modelTree(dir string) []string {
	var out []string
	for _, p := range []string{"/", "/.cache/", "/.cache/huggingface/", "/.cache/huggingface/download/",
		"/.cache/huggingface/download/config.json.metadata", "/.hf-download-complete.json", "/.hf-download.lock",
		"/config.json", "/weights/", "/weights/model.safetensors"} {
		out = append(out, dir+p)
	}
	return out
}

// parkedName is where the program moves a model's directory before removing
// it: .hf-reclaim/ and the first 32 hex digits of the name's sha256.
func parkedName(model string) string {
	out, err := exec.Command(debianPython, "-I", "-c", "import hashlib,sys; print(hashlib.sha256(sys.argv[1].encode()).hexdigest()[:32])", model).Output()
	if err != nil {
		panic(err)
	}
	return strings.TrimSpace(string(out))
}

// TestReclaimWaitsForTheDownloadLock: while a download holds the lock, the
// directory stays whole; the removal goes on once the lock is released.
func TestReclaimWaitsForTheDownloadLock(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "org", "alpha")
	aModel(t, dir)
	lock, err := os.OpenFile(filepath.Join(dir, LockFile), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	cmd, termlog := reclaimCmd(t, root, "org/alpha")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewReader(stdout)
	line, err := lines.ReadString('\n')
	if err != nil || !strings.Contains(line, "a download holds the lock on "+dir+"; waiting for it to end") {
		t.Fatalf("first line %q, %v; want the wait for the lock", line, err)
	}
	if diff := cmp.Diff(append([]string{".hf-reclaim/", "org/"}, modelTree("org/alpha")...), everything(t, root)); diff != "" {
		t.Fatalf("the directory changed while a download held the lock (-want +got):\n%s", diff)
	}
	if err := lock.Close(); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(lines)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("%v: %s", err, rest)
	}
	report, _ := os.ReadFile(termlog)
	if got := reported(t, reclaimRun{report: strings.TrimSpace(string(report))}); got.Files != 5 {
		t.Errorf("reported %+v, want 5 files", got)
	}
	if diff := cmp.Diff([]string{".hf-reclaim/", "org/"}, everything(t, root)); diff != "" {
		t.Errorf("left (-want +got):\n%s", diff)
	}
}

// TestReclaimWaitsForARunningDownload: the reclaim program and download.sh
// share the lock. While a download runs (hf hangs, holding the lock it
// inherits from the script), the reclaim waits and the directory stays;
// once the download is stopped as a deleted Job's is (TERM to the script),
// the reclaim removes the directory.
func TestReclaimWaitsForARunningDownload(t *testing.T) {
	h := newHarness(t)
	s := h.start(map[string]string{"HFSTUB_MODE": "hang", EnvStallTimeout: "600"})
	waitPidFile(t, h.record+".pid", s)
	cmd, termlog := reclaimCmd(t, filepath.Join(h.root, "models"), "org/name")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.Contains(line, "a download holds the lock on "+h.dir) {
		t.Fatalf("first line %q, %v; want the wait for the download's lock", line, err)
	}
	if _, err := os.Stat(filepath.Join(h.dir, LockFile)); err != nil {
		t.Fatalf("the directory changed while the download ran: %v", err)
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	h.checkFailure(s.wait(), "stopped by SIGTERM before the download of org/name@main finished")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("the reclaim, once the download stopped: %v", err)
	}
	report, _ := os.ReadFile(termlog)
	reported(t, reclaimRun{report: strings.TrimSpace(string(report))})
	if _, err := os.Lstat(h.dir); !os.IsNotExist(err) {
		t.Errorf("%s is still there: %v", h.dir, err)
	}
}

// stagingName is where a check of the model directory dir stages a new
// commit, under .hf-resync/: the first 32 hex digits of the path's sha256
// (hfdl.py's staging_dir).
func stagingName(dir string) string {
	sum := sha256.Sum256([]byte(dir))
	return hex.EncodeToString(sum[:])[:32]
}
