package script

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"sync"
	"testing"

	"github.com/hfops/function-hf-download/hubtest"
)

// The download path's throughput, from the fake Hub on loopback: the script with the real
// hf over the plain HTTP path (LFS files) and over the Xet path (the same bytes,
// Xet-backed), against a raw HTTP copy of those bytes by Go's client, for one 1 GiB file and
// for 8 shards of 128 MiB. docs/performance.md has the figures and the command:
//
//	make hf && go test -C script -run '^$' -bench RealHFThroughput -benchtime 3x -timeout 60m .

// verifiedIn is the verification pass's seconds, from the helper's log line.
var verifiedIn = regexp.MustCompile(`verified \d+ files against the Hub's hashes in ([0-9.]+) s \(\d+ hashed as hf wrote them\)`)

func BenchmarkRealHFThroughput(b *testing.B) {
	realHF(b)
	hub := newHub(b)
	for _, shape := range []struct {
		name         string
		shards, size int
	}{{"1x1GiB", 1, 1 << 30}, {"8x128MiB", 8, 128 << 20}} {
		files, shards := hubtest.Shards(shape.shards, shape.size)
		var size int64
		for _, content := range files {
			size += int64(len(content))
		}
		lfs, xet := "org/lfs-"+shape.name, "org/xet-"+shape.name
		hub.Set("model", lfs, hubtest.Repo{Commit: commitV1, Files: files, LFS: shards})
		hub.Set("model", xet, hubtest.Repo{Commit: commitV1, Files: files, Xet: shards})

		b.Run(shape.name+"/raw", func(b *testing.B) {
			b.SetBytes(size)
			dir := b.TempDir()
			for range b.N {
				rawCopy(b, hub.URL()+"/"+lfs+"/resolve/"+commitV1+"/", files, dir)
			}
		})
		for _, path := range []struct {
			name, repo string
			env        map[string]string
			hfAlone    bool
		}{
			{name: "http/hf-alone", repo: lfs, hfAlone: true},
			{name: "http", repo: lfs},
			{name: "xet/hf-alone", repo: xet, hfAlone: true},
			{name: "xet", repo: xet},
			{name: "xet-high-performance", repo: xet, env: map[string]string{"HF_XET_HIGH_PERFORMANCE": "1"}},
		} {
			b.Run(shape.name+"/"+path.name, func(b *testing.B) {
				b.SetBytes(size)
				h, env := newRealHarness(b, testShell(b), hub)
				env = withEnv(env, withEnv(path.env, map[string]string{EnvRepoID: path.repo}))
				var verifying float64
				for range b.N {
					b.StopTimer()
					if err := os.RemoveAll(filepath.Join(h.root, "models")); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
					if path.hfAlone {
						hfAlone(b, h, env, path.repo)
						continue
					}
					r := h.run(env)
					if r.code != 0 {
						b.Fatalf("exit %d\n%s", r.code, r.out)
					}
					m := verifiedIn.FindStringSubmatch(r.out)
					if m == nil {
						b.Fatalf("no verification time in the log:\n%s", r.out)
					}
					s, _ := strconv.ParseFloat(m[1], 64)
					verifying += s
				}
				if !path.hfAlone {
					b.ReportMetric(100*verifying*1e9/float64(b.Elapsed().Nanoseconds()), "verify-after-hf-%")
					b.ReportMetric(fullVerification(b, h.dir, files)/(float64(size)/(1<<30)), "full-verify-s/GiB")
				}
				checkShards(b, h.dir, files)
			})
		}
	}
}

// hfAlone runs hf download as the script does, without the script: no plan, no
// verification, nothing around it.
func hfAlone(b *testing.B, h *harness, env map[string]string, repo string) {
	b.Helper()
	cmd := exec.Command(filepath.Join(h.stubs, "hf"), "download", repo, "--revision", commitV1, "--local-dir", h.dir, "--max-workers", "8")
	cmd.Env = []string{"PATH=" + h.stubs + ":" + h.tools, "HOME=" + filepath.Join(h.root, "home")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("hf download: %v\n%s", err, out)
	}
}

// fullVerification is the seconds the helper's verification takes to read every file of
// the download in dir again, as it did before it hashed files while hf wrote them.
func fullVerification(b *testing.B, dir string, files map[string]string) float64 {
	b.Helper()
	plan := map[string]any{}
	for name, content := range files {
		if filepath.Ext(name) == ".safetensors" {
			plan[name] = map[string]any{"size": len(content), "algorithm": "sha256", "hash": hubtest.SHA256(content)}
		} else {
			plan[name] = map[string]any{"size": len(content), "algorithm": "git-sha1", "hash": hubtest.GitBlobID(content)}
		}
	}
	work := b.TempDir()
	mustWrite(b, filepath.Join(work, "plan.json"), mustJSON(b, map[string]any{"files": plan}))
	out, err := helperCommand(b, dir, "finish", work).CombinedOutput()
	m := verifiedIn.FindStringSubmatch(string(out))
	if err != nil || m == nil {
		b.Fatalf("finish: %v\n%s", err, out)
	}
	s, _ := strconv.ParseFloat(m[1], 64)
	return s
}

// rawCopy GETs each of files from base into dir, 8 at a time (as hf does), by Go's HTTP
// client straight to disk.
func rawCopy(b *testing.B, base string, files map[string]string, dir string) {
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	var wg sync.WaitGroup
	errs := make(chan error, len(names))
	slots := make(chan struct{}, 8)
	for _, name := range names {
		wg.Go(func() {
			slots <- struct{}{}
			defer func() { <-slots }()
			errs <- getTo(base+name, filepath.Join(dir, name))
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
}

func getTo(url, path string) error {
	resp, err := http.Get(url) //nolint:noctx // the benchmark's own loopback Hub
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// checkShards fails b unless dir holds files byte for byte.
func checkShards(b *testing.B, dir string, files map[string]string) {
	b.Helper()
	for name, content := range files {
		if got, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(got) != content {
			b.Errorf("%s: %d bytes (%v), want the Hub's %d", name, len(got), err, len(content))
		}
	}
}
