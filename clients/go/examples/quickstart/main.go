// Command quickstart is the Optimizely documentation's snippet, against trackd:
//
//	TRACKD_ADDRESS=127.0.0.1:50051 go run ./examples/quickstart
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
	optimizelyClient, err := trackd.New(address, trackd.WithTimeout(2*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	defer optimizelyClient.Close()
	ctx := context.Background()

	experimentKey := "ab_running"
	eventKey := "my_conversion"
	userID := "user123"
	attributes := map[string]any{"device": "iPhone", "ad_source": "my_campaign"}

	// Activate: which variation is user123 in? ("" when in no variation)
	variation, err := optimizelyClient.Activate(ctx, experimentKey, userID, attributes)
	if err != nil {
		log.Fatalf("activate: %v", err)
	}
	fmt.Printf("%s is in %q of %s\n", userID, variation, experimentKey)

	// Track a conversion event for the provided user with attributes (and a revenue tag).
	attributed, err := optimizelyClient.Track(ctx, eventKey, userID, attributes, map[string]any{"revenue": 4200})
	if trackd.IsNotFound(err) {
		log.Fatalf("event %q is not in the datafile: %v", eventKey, err)
	} else if err != nil {
		log.Fatalf("track: %v", err)
	}
	for _, a := range attributed {
		fmt.Printf("conversion counted for %s/%s\n", a.ExperimentKey, a.VariationKey)
	}
}
