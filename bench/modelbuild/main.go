// Command modelbuild measures the queue model (internal/model) on a
// spool: how long the start-up scan takes, the process's memory after it
// (RSS, and the peak), and how long a summary and qshape answers take.
//
//	go run ./bench/mkspool -dir /tmp/bench/spool -n 1000000
//	go run ./bench/modelbuild -dir /tmp/bench/spool
//
// bench/model.sh runs both for 100,000 and 1,000,000 messages.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"time"

	"sluice/internal/manage"
	"sluice/internal/model"
	"sluice/internal/queuesvc"
	"sluice/internal/spool"
)

func main() {
	dir := flag.String("dir", "", "queue directory (required)")
	workers := flag.Int("workers", 0, "scan readers (0: one per CPU)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the build to this file")
	memProfile := flag.String("memprofile", "", "write a heap profile after the build to this file")
	sumProfile := flag.String("sumprofile", "", "write a CPU profile of the summaries to this file")
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "modelbuild: -dir is required")
		os.Exit(2)
	}
	m := model.New(model.Config{Spool: spool.New(*dir), Workers: *workers})
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "modelbuild:", err)
			os.Exit(1)
		}
		pprof.StartCPUProfile(f)
	}
	start := time.Now()
	if err := m.Build(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "modelbuild:", err)
		os.Exit(1)
	}
	build := time.Since(start)
	if *cpuProfile != "" {
		pprof.StopCPUProfile()
	}
	if *memProfile != "" {
		f, err := os.Create(*memProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "modelbuild:", err)
			os.Exit(1)
		}
		runtime.GC()
		pprof.WriteHeapProfile(f)
		f.Close()
	}
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s := m.Summary()
	var msgs, rcpts int64
	for _, q := range s.Queues {
		msgs += q.Messages
		rcpts += q.Recipients
	}
	t0 := time.Now()
	const rounds = 20
	for i := 0; i < rounds; i++ {
		m.Summary()
	}
	sum := time.Since(t0) / rounds
	now := time.Now()
	t0 = time.Now()
	var rows int
	for i := 0; i < rounds; i++ {
		rows = len(m.QShape(model.QShapeOptions{Queues: []string{spool.Deferred}}, now).Rows)
	}
	qs := time.Since(t0) / rounds
	t0 = time.Now()
	for i := 0; i < rounds; i++ {
		m.QShape(model.QShapeOptions{Queues: []string{spool.Deferred}, Senders: true}, now)
	}
	qss := time.Since(t0) / rounds
	fmt.Printf("messages %d, pending recipients %d, qshape rows %d\n", msgs, rcpts, rows)
	fmt.Printf("build %s (%.0f messages/s)\n", build.Round(time.Millisecond), float64(msgs)/build.Seconds())
	fmt.Printf("memory: RSS %s, peak RSS %s, Go heap in use %d MB\n", status("VmRSS"), status("VmHWM"), ms.HeapInuse>>20)
	fmt.Printf("summary %s, qshape deferred %s, qshape -s deferred %s\n", sum, qs, qss)
	// The summary of every message through the service layer, as the
	// API and "sluice queue summary" ask for it, with its JSON.
	if *sumProfile != "" {
		f, err := os.Create(*sumProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "modelbuild:", err)
			os.Exit(1)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	svc := &queuesvc.Service{Model: m}
	sel, _ := queuesvc.ParseSelector("")
	for _, by := range manage.SummaryBy {
		t0 := time.Now()
		var groups, size int
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for i := 0; i < rounds; i++ {
			res, err := svc.Summary(context.Background(), sel, by)
			if err != nil {
				fmt.Fprintln(os.Stderr, "modelbuild:", err)
				os.Exit(1)
			}
			var n countWriter
			res.WriteJSON(&n)
			groups, size = len(res.Groups), int(n)
		}
		el := time.Since(t0) / rounds
		runtime.ReadMemStats(&after)
		fmt.Printf("summary --by %-6s %s (%d groups, %d bytes of JSON, %d KB allocated)\n", by, el, groups, size, (after.TotalAlloc-before.TotalAlloc)/rounds>>10)
		// What a client (sluice queue summary) spends reading it.
		res, _ := svc.Summary(context.Background(), sel, by)
		b, _ := json.Marshal(res)
		t1 := time.Now()
		for i := 0; i < rounds; i++ {
			var back queuesvc.SummaryResult
			if err := json.Unmarshal(b, &back); err != nil {
				fmt.Fprintln(os.Stderr, "modelbuild: decode:", err)
				os.Exit(1)
			}
		}
		dec := time.Since(t1) / rounds
		fmt.Printf("  a client decoding it: %s\n", dec)
	}
	for _, c := range s.Classes {
		fmt.Printf("  class %-20s %8d recipients %8d messages\n", c.Class, c.Recipients, c.Messages)
	}
}

// countWriter counts what is written to it.
type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) {
	*c += countWriter(len(p))
	return len(p), nil
}

// status returns a field of /proc/self/status ("VmRSS": "123456 kB").
func status(field string) string {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return "?"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}
