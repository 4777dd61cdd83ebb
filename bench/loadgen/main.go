// Command loadgen drives one operation against a sidecar (over gRPC) or a backend (with its Go
// driver) and prints one JSON line of results. It is the benchmarks' native load generator: its
// own cost per request is small next to a Python client's, so the figures show the server's.
//
//	loadgen -op grpc-get -target 127.0.0.1:34904 -store redis -concurrency 16 -seconds 3
//	loadgen -op redis-get -target 127.0.0.1:6379 -rate 500 -seconds 3
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"
)

// call makes one request; the load loop times it.
type call func(ctx context.Context) error

type result struct {
	Op          string  `json:"op"`
	Concurrency int     `json:"concurrency"`
	Rate        float64 `json:"rate"`
	Requests    int     `json:"requests"`
	Errors      int     `json:"errors"`
	Seconds     float64 `json:"seconds"`
	P50Ms       float64 `json:"p50_ms"`
	P90Ms       float64 `json:"p90_ms"`
	P99Ms       float64 `json:"p99_ms"`
}

func main() {
	op := flag.String("op", "grpc-get", "grpc-get, grpc-save, grpc-nextid-weak, grpc-nextid-strong, redis-get, redis-save, pg-get, pg-save")
	target := flag.String("target", "127.0.0.1:34904", "gRPC address, redis HOST:PORT or PostgreSQL DSN")
	store := flag.String("store", "redis", "store_name for gRPC operations")
	key := flag.String("key", "bench", "state key")
	size := flag.Int("size", 100, "value size in bytes for saves")
	concurrency := flag.Int("concurrency", 16, "closed-loop workers (ignored with -rate)")
	rate := flag.Float64("rate", 0, "open loop: requests per second started regardless of completions")
	seconds := flag.Float64("seconds", 3, "measured seconds")
	warmup := flag.Float64("warmup", 1, "seconds run before measuring")
	flag.Parse()

	do, closer, err := newCall(*op, *target, *store, *key, *size)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	defer closer()
	if *warmup > 0 {
		closedLoop(do, *concurrency, dur(*warmup))
	}
	var latencies []time.Duration
	var errors int
	var elapsed time.Duration
	if *rate > 0 {
		latencies, errors, elapsed = openLoop(do, *rate, dur(*seconds))
	} else {
		latencies, errors, elapsed = closedLoop(do, *concurrency, dur(*seconds))
	}
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	out := result{
		Op: *op, Concurrency: *concurrency, Rate: *rate, Requests: len(latencies), Errors: errors,
		Seconds: elapsed.Seconds(),
		P50Ms:   ms(percentile(latencies, 0.50)), P90Ms: ms(percentile(latencies, 0.90)), P99Ms: ms(percentile(latencies, 0.99)),
	}
	if *rate > 0 {
		out.Concurrency = 0
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		os.Exit(1)
	}
	if errors > 0 {
		fmt.Fprintf(os.Stderr, "loadgen: %d requests failed\n", errors)
		os.Exit(1)
	}
}

func dur(seconds float64) time.Duration { return time.Duration(seconds * float64(time.Second)) }

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[int(q*float64(len(sorted)-1)+0.5)]
}

// closedLoop runs workers that call back to back until the window ends.
func closedLoop(do call, workers int, window time.Duration) ([]time.Duration, int, time.Duration) {
	var mu sync.Mutex
	var all []time.Duration
	errors := 0
	start := time.Now()
	stop := start.Add(window)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := make([]time.Duration, 0, 1024)
			failed := 0
			for time.Now().Before(stop) {
				began := time.Now()
				if err := do(context.Background()); err != nil {
					failed++
					continue
				}
				mine = append(mine, time.Since(began))
			}
			mu.Lock()
			all = append(all, mine...)
			errors += failed
			mu.Unlock()
		}()
	}
	wg.Wait()
	return all, errors, time.Since(start)
}

// openLoop starts one call every 1/rate seconds, each on its own goroutine.
func openLoop(do call, rate float64, window time.Duration) ([]time.Duration, int, time.Duration) {
	var mu sync.Mutex
	var all []time.Duration
	errors := 0
	var wg sync.WaitGroup
	interval := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	for next := start; next.Before(start.Add(window)); next = next.Add(interval) {
		time.Sleep(time.Until(next))
		wg.Add(1)
		go func() {
			defer wg.Done()
			began := time.Now()
			err := do(context.Background())
			took := time.Since(began)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errors++
				return
			}
			all = append(all, took)
		}()
	}
	wg.Wait()
	return all, errors, window
}
