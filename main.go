// Package main implements a Composition Function that downloads Hugging Face
// models onto a PersistentVolumeClaim with one Kubernetes Job per model.
package main

import (
	"runtime/debug"
	"strconv"
	"time"

	"github.com/alecthomas/kong"

	function "github.com/crossplane/function-sdk-go"
)

// CLI of this Function.
type CLI struct {
	Debug bool `help:"Emit debug logs in addition to info logs." short:"d"`

	Network            string `default:"tcp"   help:"Network on which to listen for gRPC connections."`
	Address            string `default:":9443" help:"Address at which to listen for gRPC connections."`
	TLSCertsDir        string `env:"TLS_SERVER_CERTS_DIR" help:"Directory containing server certs (tls.key, tls.crt) and the CA used to verify client certificates (ca.crt)."`
	Insecure           bool   `help:"Run without mTLS credentials. If you supply this flag --tls-certs-dir will be ignored."`
	MaxRecvMessageSize int    `default:"${maxRecvMB}" help:"Maximum size of received messages in MB (a request carries the observed Jobs: about 3.5 KB a model)."`
	MetricsAddress     string `default:":8080" help:"Address at which to serve Prometheus metrics; empty disables them."`
	GCPercent          int    `default:"100"   help:"Go's GOGC: how much the heap may grow between collections, in percent of what is live. 30 trades about 40% more CPU for 15% less resident memory (docs/performance.md)."`

	// Crossplane v2.4 and later watch what a function requires (the Secret, the PVC, the
	// namespace's Jobs, the peers) and call again as soon as it changes; older versions
	// only call again at the response's TTL. So these are the fallback there, and may be
	// raised to poll less.
	TTLWaiting     time.Duration `default:"${ttlWaiting}"     name:"ttl-waiting"     help:"How soon Crossplane is asked to call again while a model waits for a Secret, a PVC or a queue slot. Crossplane v2.4 and later call at once when those change."`
	TTLDownloading time.Duration `default:"${ttlDownloading}" name:"ttl-downloading" help:"How soon Crossplane is asked to call again while a download runs, to follow its progress. Crossplane with realtime compositions calls at once when a Job changes."`

	Version kong.VersionFlag `help:"Print the version and the default download image, then exit."`
}

// Run this Function.
func (c *CLI) Run() error {
	debug.SetGCPercent(c.GCPercent)
	log, err := function.NewLogger(c.Debug)
	if err != nil {
		return err
	}
	log.Info("Starting", "version", version, "default-image", defaultImage())

	return function.Serve(&Function{log: log, ttlWaiting: c.TTLWaiting, ttlDownloading: c.TTLDownloading},
		function.Listen(c.Network, c.Address),
		function.MTLSCertificates(c.TLSCertsDir),
		function.Insecure(c.Insecure),
		function.MaxRecvMessageSize(c.MaxRecvMessageSize*1024*1024),
		function.WithMetricsServer(c.MetricsAddress))
}

// defaultMaxRecvMB: the largest ModelDownload's request (maxModels
// in limits_test.go) with room to spare.
const defaultMaxRecvMB = 16

func main() {
	ctx := kong.Parse(&CLI{}, kong.Description("Downloads Hugging Face models onto Kubernetes storage: one Job per model of a ModelDownload."),
		kong.Vars{"maxRecvMB": strconv.Itoa(defaultMaxRecvMB), "version": version + " (default image " + defaultImage() + ")",
			"ttlWaiting": ttlWaiting.String(), "ttlDownloading": ttlDownloading.String()})
	ctx.FatalIfErrorf(ctx.Run())
}
