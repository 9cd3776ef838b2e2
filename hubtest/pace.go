package hubtest

import (
	"io"
	"net/http"
	"time"
)

// pace writes body to w at rate bytes per second: in chunks of about a tenth
// of a second's worth (at most 64 KiB, at least a byte), each flushed to the
// client no sooner than the rate allows, so that by any time t after the
// headers at most rate*t bytes have gone. It stops as soon as the client goes
// away (r's context ends, or a write fails) or the Hub is closed.
func (h *Hub) pace(w http.ResponseWriter, r *http.Request, body string, rate int) {
	rc := http.NewResponseController(w)
	if rc.Flush() != nil { // the headers, now
		return
	}
	chunk := max(1, min(rate/10, 64<<10))
	start := time.Now()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for off := 0; off < len(body); {
		n := min(chunk, len(body)-off)
		due := start.Add(time.Duration(float64(off+n) / float64(rate) * float64(time.Second)))
		if wait := time.Until(due); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-r.Context().Done():
				return
			case <-h.stop:
				return
			}
		}
		if _, err := io.WriteString(w, body[off:off+n]); err != nil {
			return
		}
		if rc.Flush() != nil {
			return
		}
		off += n
	}
}

// stall sends the headers and then nothing, until the client goes away or
// the Hub is closed.
func (h *Hub) stall(w http.ResponseWriter, r *http.Request) {
	if http.NewResponseController(w).Flush() != nil {
		return
	}
	select {
	case <-r.Context().Done():
	case <-h.stop:
	}
}
