package script

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The helper's hash-ahead (hfdl.py hash) reads a file while hf writes it, so that the
// verification after hf need not read it again. Here the test is the writer: it writes
// hf's partial file as hf does (in order, out of order, or once more after the hasher read
// it), and finish must verify exactly what is on disk either way.
func TestHashAheadVerifiesWhatIsOnDisk(t *testing.T) {
	content := bigFile(3 << 20)
	sum := sha256.Sum256([]byte(content))
	etag := hex.EncodeToString(sum[:])
	half := len(content) / 2
	for _, tc := range []struct {
		name string
		// write writes the partial file at path; hashed waits until the hasher has
		// read it to its end and let it go.
		write    func(t *testing.T, path string, hashed func())
		wantLog  string
		wantFail string
	}{{
		name: "in order",
		write: func(t *testing.T, path string, hashed func()) {
			writeAt(t, path, content[:half], 0)
			writeAt(t, path, content[half:], int64(half))
			hashed()
		},
		wantLog: "verified 1 files against the Hub's hashes in",
	}, {
		// hf_xet may write a file's terms out of order: the hasher then reads a hole as
		// zeros, records nothing, and finish reads the file again.
		name: "out of order",
		write: func(t *testing.T, path string, hashed func()) {
			writeAt(t, path, content[half:], int64(half))
			hashed()
			writeAt(t, path, content[:half], 0)
		},
		wantLog: "(0 hashed as hf wrote them)",
	}, {
		name: "changed after it was hashed",
		write: func(t *testing.T, path string, hashed func()) {
			writeAt(t, path, content, 0)
			hashed()
			writeAt(t, path, "X", 7)
		},
		wantFail: "verification failed: model.safetensors has sha256 ",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			root, work := t.TempDir(), t.TempDir()
			plan := map[string]any{"files": map[string]any{"model.safetensors": map[string]any{"size": len(content), "algorithm": "sha256", "hash": etag}}}
			mustWrite(t, filepath.Join(work, "plan.json"), mustJSON(t, plan))
			partialDir := filepath.Join(root, ".cache", "huggingface", "download")
			mustMkdir(t, partialDir)
			partial := filepath.Join(partialDir, "aGFzaA."+etag+".0123abcd.incomplete")
			mustWrite(t, partial, "")

			hasher := helperCommand(t, root, "hash", work)
			var out strings.Builder
			hasher.Stdout, hasher.Stderr = &out, &out
			if err := hasher.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = hasher.Process.Kill(); _ = hasher.Wait() })
			pid := map[int]string{hasher.Process.Pid: "hash"}
			holds := func() bool { return len(openedBy(t, partial, pid)) == 1 }
			waitFor(t, "the hasher opening the partial file", nil, holds)
			tc.write(t, partial, func() {
				waitFor(t, "the hasher reading the partial file to its end", nil, func() bool { return !holds() })
			})
			if err := os.Rename(partial, filepath.Join(root, "model.safetensors")); err != nil {
				t.Fatal(err)
			}
			mustWrite(t, filepath.Join(work, "hf-ended"), "")
			if err := hasher.Wait(); err != nil {
				t.Fatalf("hasher: %v\n%s", err, out.String())
			}

			finish := helperCommand(t, root, "finish", work)
			got, err := finish.CombinedOutput()
			reason, _ := os.ReadFile(filepath.Join(work, "reason"))
			if tc.wantFail != "" {
				if err == nil || !strings.HasPrefix(string(reason), tc.wantFail) {
					t.Fatalf("finish: %v, reason %q, want it to fail with %q\n%s", err, reason, tc.wantFail, got)
				}
				return
			}
			if err != nil || !strings.Contains(string(got), tc.wantLog) {
				t.Fatalf("finish: %v, reason %q; want a log with %q:\n%s", err, reason, tc.wantLog, got)
			}
			if tc.name == "in order" && !strings.Contains(string(got), "(1 hashed as hf wrote them)") {
				t.Errorf("finish read the file again, though the hasher read it as it was written:\n%s", got)
			}
		})
	}
}

// helperCommand is hfdl.py's command cmd on the work directory, downloading into root.
func helperCommand(t testing.TB, root, cmd, work string) *exec.Cmd {
	t.Helper()
	site, err := filepath.Abs(filepath.Join("..", "bin", "hf-"+HubVersion))
	if err != nil {
		t.Fatal(err)
	}
	c := exec.Command(debianPython, helperPath(t), cmd, work)
	c.Env = []string{"PATH=/usr/bin:/bin", "PYTHONPATH=" + site, EnvLocalDir + "=" + root}
	return c
}

// writeAt writes s into the file at path at offset, as hf's writers do (no truncation).
func writeAt(t *testing.T, path, s string, offset int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte(s), offset); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}
