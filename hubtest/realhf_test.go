package hubtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// The tests here run the real hf CLI (huggingface_hub 2.4.0, bin/hf at the
// repository root, which hack/hf.sh installs) against the Hub on loopback.
// hf reaches nothing else: its environment holds HF_ENDPOINT, no proxy
// settings, and the update checks and telemetry are off.

// hang is how long a test waits for hf, or for anything hf sets going, before
// it fails as hung: never a measure of speed, long enough for a busy machine.
const hang = 3 * time.Minute

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
// test's temporary directory. Its output goes to out. Still running after
// hang, it is killed and the test fails.
func hfCommand(t *testing.T, h *testHub, hfToken, dir string, out io.Writer, args ...string) *exec.Cmd {
	t.Helper()
	home := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), hang)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, realHF(t), append(append([]string{"download"}, args...), "--local-dir", dir)...)
	cmd.Cancel = func() error {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			t.Errorf("hf download %s still ran after %v: killed", strings.Join(args, " "), hang)
		}
		return cmd.Process.Kill()
	}
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
		// huggingface_hub 2 names the repo here too (1.x said "Repository not found.").
		{name: "one file without token", args: []string{"org/priv", "config.json"}, wantError: modelNotFound},
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

// TestRealHFRateLimited: hf downloading a large file at a low rate is still
// at it after a while (a second's worth of the body sent), the Hub sending the
// body and hf writing its incomplete file; Close returns while it runs, long
// before the body could end, and hf then fails without the file, having
// received some of it and no more than the rate allows. (hf reads bodies in
// 10 MiB chunks, constants.DOWNLOAD_CHUNK_SIZE, so its incomplete file stays
// empty here; TestRate checks the pace itself.)
func TestRealHFRateLimited(t *testing.T) {
	realHF(t)
	const rate = 64 << 10
	big := strings.Repeat("0123456789abcdef", 1<<20) // 16 MiB: over 4 minutes at the rate
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening on loopback: %v", err)
	}
	counted := &countingListener{Listener: l}
	h := newHubOn(t, counted)
	h.Set("model", "org/slow", Repo{Commit: commit, Files: map[string]string{"big.bin": big, "config.json": "{}"}, Rate: rate})
	dir := filepath.Join(t.TempDir(), "out")
	var out SyncBuffer
	cmd := hfCommand(t, h, "", dir, &out, "org/slow")
	began := time.Now() // before hf, so before the Hub began to pace the body
	done, waitErr := startHF(t, cmd)

	// The download is under way while hf runs, has asked for the body, the
	// Hub is sending it and hf has its incomplete file open.
	bodyRequest := "GET /org/slow/resolve/" + commit + "/big.bin"
	underWay := func() (bool, string) {
		select {
		case <-done:
			t.Fatalf("hf exited (%v) while the download should be under way\n%s", *waitErr, out.String())
		default:
		}
		requests := h.SeenFor("model", "org/slow")
		inc := incomplete(t, dir)
		return slices.Contains(requests, bodyRequest) && busy(h) == 1 && len(inc) == 1,
			fmt.Sprintf("hf asked for %q, %d requests in flight, incomplete files %q\n%s", requests, busy(h), inc, out.String())
	}
	waitUntil(t, "the download under way", underWay)
	// A while later, counted in what the Hub sent: a second's worth of the body.
	sent := counted.written.Load()
	waitUntil(t, "a second's worth of the body sent", func() (bool, string) {
		n := counted.written.Load()
		return n >= sent+rate, fmt.Sprintf("%d bytes sent", n-sent)
	})
	if ok, state := underWay(); !ok {
		t.Fatalf("a second's worth of the body later, the download is no longer under way: %s", state)
	}

	closed := make(chan struct{})
	go func() {
		h.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(hang):
		t.Fatalf("Close still waits %v after it was called while hf was downloading", hang)
	}
	elapsed := time.Since(began)
	// Nothing is sent once Close has returned.
	if n := counted.written.Load(); n >= int64(len(big)) {
		t.Errorf("Close returned once the Hub had sent %d bytes: it waited for the body", n)
	}
	select {
	case <-done:
		var exit *exec.ExitError
		if !errors.As(*waitErr, &exit) {
			t.Errorf("hf after Close: %v, want a non-zero exit\n%s", *waitErr, out.String())
		}
	case <-time.After(hang):
		t.Fatalf("hf still runs %v after Close\n%s", hang, out.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "big.bin")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("big.bin after the Hub closed: %v", err)
	}
	// httpcore's words, as hf prints them when a body ends early.
	m := regexp.MustCompile(`peer closed connection without sending complete message body \(received (\d+) bytes, expected (\d+)\)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("hf does not say the body ended early:\n%s", out.String())
	}
	// However slow the machine, the Hub cannot have sent more than the rate
	// allows since before hf started: slowness only makes it send less.
	most := min(counted.written.Load(), int64(elapsed.Seconds()*rate))
	if got, _ := strconv.ParseInt(m[1], 10, 64); got == 0 || got > most || m[2] != strconv.Itoa(len(big)) {
		t.Errorf("hf received %s of %s bytes before Close, want some and at most %d (sent, and %v at %d bytes a second)", m[1], m[2], most, elapsed, rate)
	}
}

// waitUntil polls cond until it holds, failing the test with what cond last
// described if it still does not after hang.
func waitUntil(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	for deadline := time.Now().Add(hang); ; time.Sleep(20 * time.Millisecond) {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s after %v: %s", what, hang, state)
		}
	}
}

// countingListener counts the bytes the Hub writes to the connections it
// accepted: a measure of how far a transfer got that a busy machine cannot
// skew.
type countingListener struct {
	net.Listener
	written atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, written: &l.written}, nil
}

type countingConn struct {
	net.Conn
	written *atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.written.Add(int64(n))
	return n, err
}

// incomplete is the files hf is downloading into dir: its .incomplete files
// under .cache.
func incomplete(t *testing.T, dir string) []string {
	t.Helper()
	var names []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // not made yet, or renamed while walking
		}
		if err == nil && !d.IsDir() && strings.HasSuffix(path, ".incomplete") {
			names = append(names, d.Name())
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// TestRealHFLFS: hf downloads an LFS file by the headers the Hub sends for it
// and keeps its sha256 (X-Linked-Etag) as the file's etag in its local-dir
// metadata; a regular file keeps its git blob id.
func TestRealHFLFS(t *testing.T) {
	realHF(t)
	h := newHub(t)
	h.Set("model", "org/lfs", Repo{Commit: commit, Files: files, LFS: []string{"weights/model.bin"}})
	dir := filepath.Join(t.TempDir(), "out")
	var out bytes.Buffer
	if err := hfCommand(t, h, "", dir, &out, "org/lfs").Run(); err != nil {
		t.Fatalf("hf: %v\n%s", err, out.String())
	}
	if diff := cmp.Diff(files, downloaded(t, dir)); diff != "" {
		t.Errorf("files downloaded (-want +got):\n%s", diff)
	}
	for name, etag := range map[string]string{"weights/model.bin": SHA256(files["weights/model.bin"]), "config.json": GitBlobID(files["config.json"])} {
		meta, err := os.ReadFile(filepath.Join(dir, ".cache", "huggingface", "download", name+".metadata"))
		if err != nil {
			t.Fatal(err)
		}
		if lines := strings.Split(string(meta), "\n"); len(lines) < 2 || lines[0] != commit || lines[1] != etag {
			t.Errorf("%s's metadata %q, want commit %s and etag %s", name, meta, commit, etag)
		}
	}
}

// TestRealHFRateLimit: hf retries a file the Hub rate-limits (429) after the
// reset time the Hub gives (its first HEAD without waiting, then with
// http_backoff's waits), and succeeds once the Hub serves it again; when the
// Hub never does, hf gives up after 5 retries with the Hub's reason.
func TestRealHFRateLimit(t *testing.T) {
	realHF(t)
	for _, tc := range []struct {
		name  string
		count int
		want  []string // in hf's output
	}{
		{"twice", 2, []string{"No local file found. Retrying..", "Rate limited. Waiting 1.0s before retry [Retry 1/5].", "Downloaded"}},
		{"always", -1, []string{"Rate limited. Waiting 1.0s before retry [Retry 5/5].", "429 Too Many Requests: you have reached your 'resolvers' rate limit.", "Retry after 0 seconds (0/100 requests remaining in current 60s window)."}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHub(t)
			h.Set("model", "org/rl", Repo{Commit: commit, Files: map[string]string{"config.json": files["config.json"]}, Limit: &RateLimit{Resource: "resolvers", Count: tc.count, Quota: 100, Window: 60}})
			dir := filepath.Join(t.TempDir(), "out")
			var out bytes.Buffer
			err := hfCommand(t, h, "", dir, &out, "org/rl").Run()
			if (err == nil) != (tc.count >= 0) {
				t.Errorf("hf: %v\n%s", err, out.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("hf's output lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}

// startHF starts cmd, an hf run, and returns a channel closed when it has exited and where its
// exit error is then; the test's end kills it if it still runs.
func startHF(t *testing.T, cmd *exec.Cmd) (done <-chan struct{}, waitErr *error) {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var err error
	go func() {
		err = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // fails when hf has exited: nothing to do
		<-exited
	})
	return exited, &err
}
