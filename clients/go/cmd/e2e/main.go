// Command e2e is the Go client's end-to-end program (docs/dev/clients-e2e.md): it talks to
// the trackd at TRACKD_ADDRESS and prints one JSON object on the last line of stdout.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/trackd-dev/trackd/clients/go/trackd"
)

const (
	language       = "go"
	producerEvents = 10_000
)

type producerReport struct {
	Sent           int64 `json:"sent"`
	Acked          int64 `json:"acked"`
	Batches        int64 `json:"batches"`
	Duplicates     int64 `json:"duplicates"`
	StreamFailures int64 `json:"stream_failures"`
}

type report struct {
	Language   string             `json:"language"`
	Variations map[string]*string `json:"variations"`
	Attributed []string           `json:"attributed"`
	NotFound   bool               `json:"not_found"`
	Decide     decideReport       `json:"decide"`
	Producer   producerReport     `json:"producer"`
}

func main() {
	address := os.Getenv("TRACKD_ADDRESS")
	if address == "" {
		log.Fatal("set TRACKD_ADDRESS=host:port of a running trackd")
	}
	runID := os.Getenv("E2E_RUN_ID")
	if runID == "" {
		runID = "local"
	}
	client, err := trackd.New(address, trackd.WithTimeout(10*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	ctx := context.Background()

	out := report{Language: language, Variations: map[string]*string{}}
	for n := range 200 {
		device := "Android"
		if n%3 != 0 {
			device = "iPhone"
		}
		user := fmt.Sprintf("user-%d", n)
		variation, err := client.Activate(ctx, "ab_iphone", user, map[string]any{"device": device})
		if err != nil {
			log.Fatalf("activate %s: %v", user, err)
		}
		if variation == "" {
			out.Variations[user] = nil
		} else {
			out.Variations[user] = &variation
		}
	}

	user := fmt.Sprintf("e2e-%s-%s", language, runID)
	if _, err := client.Activate(ctx, "ab_running", user, map[string]any{}); err != nil {
		log.Fatalf("activate ab_running: %v", err)
	}
	attributions, err := client.Track(ctx, "my_conversion", user,
		map[string]any{"device": "iPhone"}, map[string]any{"revenue": 4200, "category": "shoes"})
	if err != nil {
		log.Fatalf("track: %v", err)
	}
	out.Attributed = []string{}
	for _, a := range attributions {
		out.Attributed = append(out.Attributed, a.ExperimentKey)
	}

	_, err = client.Track(ctx, "no_such_event", "u", map[string]any{"device": "iPhone"}, nil)
	out.NotFound = status.Code(err) == codes.NotFound

	if out.Decide, err = decide(ctx, client, runID); err != nil {
		log.Fatalf("decide: %v", err)
	}

	// The producer on its own connection: the driver may route it through a proxy that breaks
	// its stream after trackd stored batches whose acknowledgements it then loses.
	producerAddress := os.Getenv("TRACKD_PRODUCER_ADDRESS")
	if producerAddress == "" {
		producerAddress = address
	}
	producerClient, err := trackd.New(producerAddress)
	if err != nil {
		log.Fatalf("producer client: %v", err)
	}
	defer producerClient.Close()
	producer := producerClient.NewProducer(trackd.ProducerConfig{
		BatchSize: 500, FlushInterval: 200 * time.Millisecond, BackoffInitial: 50 * time.Millisecond,
	})
	for n := range producerEvents {
		userID := fmt.Sprintf("p-%s-%s-%d", language, runID, n)
		if err := producer.Send(ctx, "signup", userID, map[string]any{"device": "iPhone"}, nil); err != nil {
			log.Fatalf("producer send: %v", err)
		}
	}
	closeCtx, cancel := context.WithTimeout(ctx, 120*time.Second)
	defer cancel()
	stats, err := producer.Close(closeCtx)
	if err != nil {
		log.Printf("producer close: %v", err)
	}
	log.Printf("producer: %+v", stats)
	out.Producer = producerReport{
		Sent: stats.Sent, Acked: stats.Acked, Batches: stats.Batches,
		Duplicates: stats.Duplicates, StreamFailures: stats.StreamFailures,
	}

	line, err := json.Marshal(out)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(line))
}
