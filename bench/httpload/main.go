// Command httpload is the HTTP load generator of bench/bench_agent.py and bench/bench_http.py
// (bench/loadgen.py builds and runs it): a fixed number of concurrent callers POST to one URL
// for a duration, each on its own keep-alive connection, as hey does; unlike hey, every
// request gets a new body, so that each call can be a new user (`{n}` in the body is
// replaced by the request's number). It prints one JSON report.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

type report struct {
	OK        int            `json:"ok"`
	Errors    int            `json:"errors"`
	Statuses  map[string]int `json:"statuses"`
	ErrorText []string       `json:"error_text"`
	Seconds   float64        `json:"seconds"`
	P50Ms     float64        `json:"p50_ms"`
	P99Ms     float64        `json:"p99_ms"`
}

type headers []string

func (h *headers) String() string     { return strings.Join(*h, ", ") }
func (h *headers) Set(v string) error { *h = append(*h, v); return nil }

type caller struct {
	latencies []time.Duration
	statuses  map[string]int
	errors    []string
}

func main() {
	url := flag.String("url", "", "URL to POST to")
	body := flag.String("body", "", "request body; {n} is replaced by the request number")
	concurrency := flag.Int("c", 1, "concurrent callers")
	duration := flag.Duration("z", time.Second, "how long to send; calls in flight then finish")
	var extra headers
	flag.Var(&extra, "H", "a request header, `Name: value` (repeatable)")
	flag.Parse()
	if *url == "" {
		fmt.Fprintln(os.Stderr, "httpload: -url is required")
		os.Exit(2)
	}

	transport := &http.Transport{MaxIdleConnsPerHost: *concurrency, DisableCompression: true}
	client := &http.Client{Transport: transport, Timeout: 20 * time.Second}
	parts := strings.Split(*body, "{n}")
	var next atomic.Int64
	callers := make([]caller, *concurrency)
	var wg sync.WaitGroup
	started := time.Now()
	deadline := started.Add(*duration)
	for i := range callers {
		wg.Add(1)
		go func(c *caller) {
			defer wg.Done()
			c.statuses = map[string]int{}
			for time.Now().Before(deadline) {
				payload := strings.Join(parts, fmt.Sprint(next.Add(1)))
				request, err := http.NewRequest(http.MethodPost, *url, bytes.NewBufferString(payload))
				if err != nil {
					panic(err)
				}
				request.Header.Set("Content-Type", "application/json")
				for _, h := range extra {
					name, value, _ := strings.Cut(h, ":")
					request.Header.Set(strings.TrimSpace(name), strings.TrimSpace(value))
				}
				sent := time.Now()
				response, err := client.Do(request)
				if err != nil {
					c.statuses["transport error"]++
					if len(c.errors) < 3 {
						c.errors = append(c.errors, err.Error())
					}
					continue
				}
				// Read the whole answer, so the connection is reused, as hey does.
				answer, _ := io.ReadAll(response.Body)
				response.Body.Close()
				c.statuses[fmt.Sprint(response.StatusCode)]++
				if response.StatusCode/100 == 2 {
					c.latencies = append(c.latencies, time.Since(sent))
				} else if len(c.errors) < 3 {
					c.errors = append(c.errors, fmt.Sprintf("%d %s", response.StatusCode, answer))
				}
			}
		}(&callers[i])
	}
	wg.Wait()
	out := report{Statuses: map[string]int{}, ErrorText: []string{}}
	out.Seconds = time.Since(started).Seconds()
	var all []time.Duration
	for _, c := range callers {
		all = append(all, c.latencies...)
		for status, count := range c.statuses {
			out.Statuses[status] += count
		}
		out.ErrorText = append(out.ErrorText, c.errors...)
	}
	out.OK = len(all)
	for status, count := range out.Statuses {
		if !strings.HasPrefix(status, "2") {
			out.Errors += count
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	out.P50Ms = percentileMs(all, 0.50)
	out.P99Ms = percentileMs(all, 0.99)
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		panic(err)
	}
}

// percentileMs picks the index as harness.percentile does (q of the way, rounded), so both
// targets' p50/p99 mean the same.
func percentileMs(sorted []time.Duration, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	index := int(q*float64(len(sorted)-1) + 0.5)
	return float64(sorted[index]) / 1e6
}
