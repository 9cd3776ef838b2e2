//go:build ignore

// benchtable turns the output of the benchmarks in bench_test.go into the
// table of docs/performance.md: the median of each benchmark's runs, the
// ratio of each RunFunction figure to the protobuf floor of the same request
// and response, measured in the same run, and the cost per model.
//
//	go test -run '^$' -bench 'RunFunction|Floor$|GRPC|ResponseSize' -benchmem -count 5 . | tee bench.txt
//	go run docs/benchtable.go < bench.txt
package main

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

var line = regexp.MustCompile(`^Benchmark(\S+?)(-\d+)?\s+\d+\s+([\d.]+) ns/op(?:.*?\s([\d.]+) B/op\s+([\d.]+) allocs/op)?`)

type runs struct{ ns, bytes, allocs []float64 }

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func main() {
	all := map[string]*runs{}
	var order []string
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		text := sc.Text()
		if strings.HasPrefix(text, "cpu:") || strings.HasPrefix(text, "goos:") {
			fmt.Println("<!--", text, "-->")
		}
		m := line.FindStringSubmatch(text)
		if m == nil {
			continue
		}
		r := all[m[1]]
		if r == nil {
			r = &runs{}
			all[m[1]] = r
			order = append(order, m[1])
		}
		f := func(s string) float64 { v, _ := strconv.ParseFloat(s, 64); return v }
		r.ns = append(r.ns, f(m[3]))
		if m[4] != "" {
			r.bytes = append(r.bytes, f(m[4]))
			r.allocs = append(r.allocs, f(m[5]))
		}
	}

	fmt.Println("| state | models | RunFunction µs | floor µs | time ratio | RunFunction allocs | floor allocs | alloc ratio | RunFunction KB | µs per model | allocs per model |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, state := range []string{"first", "steady"} {
		for _, n := range []int{1, 10, 100, 1000} {
			key := fmt.Sprintf("state=%s/models=%d", state, n)
			fn, fl := all["RunFunction/"+key], all["Floor/"+key]
			if fn == nil || fl == nil {
				continue
			}
			fns, fls := median(fn.ns), median(fl.ns)
			fna, fla := median(fn.allocs), median(fl.allocs)
			fmt.Printf("| %s | %d | %.1f | %.1f | %.3f | %.0f | %.0f | %.3f | %.0f | %.2f | %.1f |\n",
				state, n, fns/1e3, fls/1e3, fns/fls, fna, fla, fna/fla, median(fn.bytes)/1024, fns/1e3/float64(n), fna/float64(n))
		}
	}

	fmt.Println()
	fmt.Println("| gRPC round trip | µs per call | calls per second | allocs per call (client and server) |")
	fmt.Println("|---|---:|---:|---:|")
	for _, k := range order {
		if !strings.HasPrefix(k, "GRPC/") {
			continue
		}
		r := all[k]
		ns := median(r.ns)
		fmt.Printf("| %s | %.1f | %.0f | %.0f |\n", strings.TrimPrefix(k, "GRPC/"), ns/1e3, 1e9/ns, median(r.allocs))
	}

	fmt.Println()
	fmt.Println("| size check | µs | allocs |")
	fmt.Println("|---|---:|---:|")
	for _, k := range order {
		if strings.HasPrefix(k, "ResponseSize/") {
			r := all[k]
			fmt.Printf("| %s | %.1f | %.0f |\n", strings.TrimPrefix(k, "ResponseSize/"), median(r.ns)/1e3, median(r.allocs))
		}
	}
}
