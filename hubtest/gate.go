package hubtest

import (
	"io"
	"net/http"
	"sync"
)

// Gate holds back the file bodies of the repos that share it, on resolve and,
// for Xet files, on the CAS's xorbs: each GET sends its headers at once and
// its body only as far as the test lets it, so that the test, not the
// machine's speed, decides when a download progresses. A xorb body is chunk
// records, 8 bytes of header for each 64 KiB chunk, and the gate counts them
// all. Make one with NewGate; it lets nothing through until Let or Open.
type Gate struct {
	mu sync.Mutex
	// left is how many more bytes the bodies may send, all of them together;
	// negative once open.
	left int64
	// more is closed, and replaced, whenever left grows.
	more chan struct{}
}

// NewGate is a closed gate: bodies behind it send nothing yet.
func NewGate() *Gate { return &Gate{more: make(chan struct{})} }

// Let lets n more bytes through, shared by the bodies behind the gate in the
// order they ask.
func (g *Gate) Let(n int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.left >= 0 {
		g.left += n
		g.wake()
	}
}

// Open lets everything through, now and from then on.
func (g *Gate) Open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.left = -1
	g.wake()
}

// wake tells the bodies waiting that left grew. Called with mu held.
func (g *Gate) wake() {
	close(g.more)
	g.more = make(chan struct{})
}

// take takes up to n bytes: how many it may send now, and, when none, a
// channel closed once more may.
func (g *Gate) take(n int) (int, <-chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.left < 0:
		return n, nil
	case g.left == 0:
		return 0, g.more
	}
	n = int(min(int64(n), g.left))
	g.left -= int64(n)
	return n, nil
}

// gated writes body to w as g lets it, each part flushed to the client at
// once. It stops as soon as the client goes away or the Hub is closed.
func (h *Hub) gated(w http.ResponseWriter, r *http.Request, body string, g *Gate) {
	rc := http.NewResponseController(w)
	if rc.Flush() != nil { // the headers, now
		return
	}
	for off := 0; off < len(body); {
		n, more := g.take(min(len(body)-off, 64<<10))
		if n == 0 {
			select {
			case <-more:
				continue
			case <-r.Context().Done():
			case <-h.stop:
			}
			return
		}
		if _, err := io.WriteString(w, body[off:off+n]); err != nil || rc.Flush() != nil {
			return
		}
		off += n
	}
}
