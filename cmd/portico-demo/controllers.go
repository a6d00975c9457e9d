package main

import (
	"context"

	"github.com/portico-dev/portico/internal/testenv"
)

// startControllers runs the controllers that exist so far against env.
func startControllers(_ context.Context, _ *testenv.Env) (func(), error) {
	return func() {}, nil
}
