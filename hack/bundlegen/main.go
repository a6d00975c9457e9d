// Command bundlegen writes the OLM bundle (bundle/) from the Helm chart: `make bundle`.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/portico-dev/portico/internal/bundle"
)

func main() {
	dir := bundle.Dir()
	if len(os.Args) > 1 {
		dir = os.Args[1]
	}
	if err := bundle.Generate(context.Background(), dir); err != nil {
		fmt.Fprintln(os.Stderr, "bundlegen:", err)
		os.Exit(1)
	}
}
