package install_test

import (
	"testing"

	"k8s.io/client-go/rest"

	"github.com/portico-dev/portico/internal/apirecorder"
)

// newAPIProxy puts an internal/apirecorder proxy between one binary and the apiserver,
// so a scenario can say which requests the apiserver refused it and which Secrets reached
// it whole; it stops with the test.
func newAPIProxy(t testing.TB, host string, api *rest.Config) *apirecorder.Proxy {
	t.Helper()
	p, err := apirecorder.Start(host, api)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}
