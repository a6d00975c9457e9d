package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/portico-dev/portico/internal/netlab"
	"github.com/portico-dev/portico/internal/testenv"
)

var agentBinary struct {
	once sync.Once
	path string
	err  error
	out  []byte
}

// buildAgent builds cmd/node-agent once per test binary, however many rigs use it.
func buildAgent(t testing.TB) string {
	t.Helper()
	agentBinary.once.Do(func() {
		dir, err := os.MkdirTemp("", "portico-agent-bin")
		if err != nil {
			agentBinary.err = err
			return
		}
		agentBinary.path = filepath.Join(dir, "node-agent")
		build := exec.Command("go", "build", "-o", agentBinary.path, "./cmd/node-agent")
		build.Dir = testenv.RepoRoot()
		agentBinary.out, agentBinary.err = build.CombinedOutput()
	})
	if agentBinary.err != nil {
		t.Fatalf("go build ./cmd/node-agent: %v: %s", agentBinary.err, agentBinary.out)
	}
	return agentBinary.path
}

// agentProc is a node-agent process running in a host's namespace.
type agentProc struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

// startAgentIn runs the agent binary in h with args, its output going to logs.
func startAgentIn(t testing.TB, h *netlab.Host, bin string, logs *lockedBuffer, args ...string) *agentProc {
	t.Helper()
	cmd := h.Command(context.Background(), bin, args...)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &agentProc{cmd: cmd, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	return p
}

// stop signals the agent (`ip netns exec` execs it, so the pid is the agent's) and waits
// for it to exit, killing it after 10 s.
func (p *agentProc) stop(sig unix.Signal) {
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// lockedBuffer collects the output of several processes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
