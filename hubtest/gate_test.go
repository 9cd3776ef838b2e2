package hubtest

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestGate: a gated repo's metadata (HEAD) comes at once, and its file
// bodies only as far as the gate lets them; Open lets the rest through; a
// body still held ends when its client goes away.
func TestGate(t *testing.T) {
	h := newHub(t)
	g := NewGate()
	big := strings.Repeat("0123456789", 100)
	h.Set("model", "org/a", Repo{Commit: commit, Files: map[string]string{"big.bin": big}, Gate: g})
	if r := get(t, h, http.MethodHead, "/org/a/resolve/main/big.bin", ""); r.Status != http.StatusOK || r.Header["Content-Length"] != "1000" {
		t.Errorf("HEAD: %+v", r)
	}
	open := func(ctx context.Context, repo string) io.ReadCloser {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.URL()+"/"+repo+"/resolve/main/big.bin", http.NoBody)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("the headers did not come: %v", err)
		}
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: status %d", repo, resp.StatusCode)
		}
		return resp.Body
	}
	read := func(body io.Reader, n int) string {
		t.Helper()
		buf := make([]byte, n)
		if _, err := io.ReadFull(body, buf); err != nil {
			t.Fatalf("reading %d bytes: %v", n, err)
		}
		return string(buf)
	}

	a := open(t.Context(), "org/a")
	defer func() { _ = a.Close() }()
	g.Let(300)
	got := read(a, 300)
	g.Let(200)
	got += read(a, 200)
	g.Open()
	rest, err := io.ReadAll(a)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(big, got+string(rest)); diff != "" {
		t.Errorf("the body (-want +got):\n%s", diff)
	}

	// Another repo behind a closed gate: its body waits, then its client leaves.
	h.Set("model", "org/b", Repo{Commit: commit, Files: map[string]string{"big.bin": big}, Gate: NewGate()})
	ctx, cancel := context.WithCancel(t.Context())
	b := open(ctx, "org/b")
	cancel()
	if data, err := io.ReadAll(b); err == nil || len(data) != 0 {
		t.Errorf("read %q, %v; want nothing until the client gives up", data, err)
	}
	_ = b.Close()
	// An end the Hub must reach by itself; the deadline only ends a hang.
	for deadline := time.Now().Add(time.Minute); busy(h) != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the held body is still being answered a minute after its client went away")
		}
	}
}
