package hubtest

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The tests here run the real hf CLI (huggingface_hub 1.28.0, bin/hf at the
// repository root, which hack/hf.sh installs) against the Hub on loopback.
// hf reaches nothing else: its environment holds HF_ENDPOINT, no proxy
// settings, and the update checks and telemetry are off.

// realHF returns the path of bin/hf, running hack/hf.sh first when it is
// missing.
func realHF(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	hf := filepath.Join(root, "bin", "hf")
	if fi, err := os.Stat(hf); err == nil && fi.Mode()&0o111 != 0 {
		return hf
	}
	cmd := exec.Command("bash", filepath.Join(root, "hack", "hf.sh"))
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("bash hack/hf.sh: %v\n%s", err, out)
	}
	if fi, err := os.Stat(hf); err != nil || fi.Mode()&0o111 == 0 {
		t.Fatalf("hack/hf.sh left no executable %s (%v)", hf, err)
	}
	return hf
}

// hfCommand is `hf download <args> --local-dir dir` against h, with HF_TOKEN
// set to hfToken unless it is empty, and its HOME, HF_HOME and dir in the
// test's temporary directory. Its output goes to out.
func hfCommand(t *testing.T, h *Hub, hfToken, dir string, out io.Writer, args ...string) *exec.Cmd {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command(realHF(t), append(append([]string{"download"}, args...), "--local-dir", dir)...)
	cmd.Env = []string{
		"PATH=/usr/bin:/bin",
		"HOME=" + home,
		"HF_HOME=" + filepath.Join(home, "hf-home"),
		"HF_ENDPOINT=" + h.URL(),
		"HF_HUB_DISABLE_TELEMETRY=1",
		"HF_HUB_DISABLE_UPDATE_CHECK=1",
	}
	if hfToken != "" {
		cmd.Env = append(cmd.Env, "HF_TOKEN="+hfToken)
	}
	cmd.Stdout, cmd.Stderr = out, out
	return cmd
}

// downloaded is the files in dir, by path, but for hf's metadata in .cache.
func downloaded(t *testing.T, dir string) map[string]string {
	t.Helper()
	got := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && path == dir {
			return fs.SkipAll
		}
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == ".cache" {
				return fs.SkipDir
			}
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		got[filepath.ToSlash(rel)] = string(data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestRealHFPrivateRepo: hf downloads a private repo with its token as
// HF_TOKEN, and without it, or with another, fails with its own "not found
// ... private ... authenticated" error and leaves no file; whichever endpoint
// it asks first (the revision for a branch, the tree for a commit, the file's
// metadata for one file). The token shows nowhere in what hf prints or the
// Hub logs.
func TestRealHFPrivateRepo(t *testing.T) {
	realHF(t)
	const (
		modelNotFound   = "Error: Model 'org/priv' not found.\nIf the repo is private, make sure you are authenticated and your token has the required permissions."
		datasetNotFound = "Error: Dataset 'org/priv-data' not found.\nIf the repo is private, make sure you are authenticated and your token has the required permissions."
		repoNotFound    = "Error: Repository not found.\nIf the repo is private, make sure you are authenticated and your token has the required permissions."
	)
	data := map[string]string{"train/part-0.csv": "a,b\n1,2\n"}
	for _, tc := range []struct {
		name      string
		args      []string
		hfToken   string
		want      map[string]string // the files that land; none means hf fails
		wantError string
	}{
		{name: "branch without token", args: []string{"org/priv"}, wantError: modelNotFound},
		{name: "branch, other token", args: []string{"org/priv"}, hfToken: "hf_NotTheRepoToken0000000000000000000", wantError: modelNotFound},
		{name: "branch with token", args: []string{"org/priv"}, hfToken: token, want: files},
		{name: "commit without token", args: []string{"org/priv", "--revision", commit}, wantError: modelNotFound},
		{name: "commit with token", args: []string{"org/priv", "--revision", commit}, hfToken: token, want: files},
		{name: "one file without token", args: []string{"org/priv", "config.json"}, wantError: repoNotFound},
		{name: "one file with token", args: []string{"org/priv", "config.json"}, hfToken: token, want: map[string]string{"config.json": files["config.json"]}},
		{name: "dataset without token", args: []string{"org/priv-data", "--repo-type", "dataset"}, wantError: datasetNotFound},
		{name: "dataset with token", args: []string{"org/priv-data", "--repo-type", "dataset"}, hfToken: token, want: data},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHub(t)
			h.Set("model", "org/priv", Repo{Commit: commit, Files: files, Token: token})
			h.Set("dataset", "org/priv-data", Repo{Commit: commit, Files: data, Token: token})
			dir := filepath.Join(t.TempDir(), "out")
			var out bytes.Buffer
			err := hfCommand(t, h, tc.hfToken, dir, &out, tc.args...).Run()

			if tc.want == nil {
				var exit *exec.ExitError
				if !errors.As(err, &exit) {
					t.Fatalf("hf: %v, want a non-zero exit\n%s", err, out.String())
				}
				if !strings.Contains(out.String(), tc.wantError) {
					t.Errorf("hf's output lacks %q:\n%s", tc.wantError, out.String())
				}
			} else if err != nil {
				t.Fatalf("hf: %v\n%s", err, out.String())
			}
			want := tc.want
			if want == nil {
				want = map[string]string{}
			}
			if diff := cmp.Diff(want, downloaded(t, dir)); diff != "" {
				t.Errorf("files downloaded (-want +got):\n%s", diff)
			}
			requests, unknown := h.Seen()
			if len(unknown) != 0 {
				t.Errorf("hf asked the Hub for %q", unknown)
			}
			for _, s := range append(requests, out.String()) {
				if strings.Contains(s, token) {
					t.Errorf("the token shows in %q", s)
				}
			}
		})
	}
}
