// Command producer sends events in acknowledged batches over one TrackStream:
//
//	TRACKD_ADDRESS=127.0.0.1:50051 go run ./examples/producer
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/trackd-dev/trackd/clients/go/trackd"
)

func main() {
	address := os.Getenv("TRACKD_ADDRESS")
	if address == "" {
		address = "127.0.0.1:50051"
	}
	client, err := trackd.New(address)
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	ctx := context.Background()

	producer := client.NewProducer(trackd.ProducerConfig{BatchSize: 500, FlushInterval: 500 * time.Millisecond})
	for n := range 5000 {
		if err := producer.Send(ctx, "signup", fmt.Sprintf("user-%d", n), map[string]any{"device": "iPhone"}, nil); err != nil {
			log.Fatal(err)
		}
	}
	// Close flushes the buffer and waits for every acknowledgement (here up to 30s).
	closeCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	stats, err := producer.Close(closeCtx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%+v\n", stats)
}
