package e2e

import (
	"context"
	"testing"

	"github.com/portico-dev/portico/internal/netlab"
	"github.com/portico-dev/portico/internal/testproc"
)

// buildAgent builds cmd/node-agent once per test binary, however many rigs use it.
func buildAgent(t testing.TB) string {
	t.Helper()
	dir, err := testproc.Build("", "node-agent")
	if err != nil {
		t.Fatal(err)
	}
	return testproc.Binary(dir, "node-agent")
}

// startAgentIn runs the agent binary in h with args, its output going to logs (`ip
// netns exec` execs it, so the process signalled is the agent).
func startAgentIn(t testing.TB, h *netlab.Host, bin string, logs *testproc.Buffer, args ...string) *testproc.Proc {
	t.Helper()
	p, err := testproc.Start("agent "+h.Name, h.Command(context.Background(), bin, args...), logs)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
