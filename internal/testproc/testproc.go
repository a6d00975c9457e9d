// Package testproc runs the project's binaries the way a cluster runs them, as
// separate processes, for the e2e suites and the demo: built once per run from cmd/,
// started with their output collected (what a failing test prints), stopped with the
// signal a test is about (SIGKILL, SIGTERM), and ended when the run ends.
package testproc

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/portico-dev/portico/internal/testenv"
)

var built struct {
	mu   sync.Mutex
	dirs map[string]string // sorted names -> directory
}

// Build builds the named cmd/ binaries (static, CGO off) into one directory and returns
// it; the same set is built once per process. dir "" is a directory of this checkout
// in the cache (PORTICO_CACHE, default ~/.cache/portico), where `go build` relinks
// only what changed since the last run: linking is most of a warm build.
func Build(dir string, names ...string) (string, error) {
	key := slices.Clone(names)
	slices.Sort(key)
	k := strings.Join(key, ",")
	built.mu.Lock()
	defer built.mu.Unlock()
	if d, ok := built.dirs[k]; ok {
		return d, nil
	}
	if dir == "" {
		dir = CacheDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	args := []string{"build", "-o", dir + "/"}
	for _, n := range names {
		args = append(args, "./cmd/"+n)
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = testenv.RepoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	if built.dirs == nil {
		built.dirs = map[string]string{}
	}
	built.dirs[k] = dir
	return dir, nil
}

// CacheDir is where Build puts this checkout's binaries by default.
func CacheDir() string {
	base := os.Getenv("PORTICO_CACHE")
	if base == "" {
		home, _ := os.UserHomeDir()
		base = filepath.Join(home, ".cache", "portico")
	}
	sum := sha256.Sum256([]byte(testenv.RepoRoot()))
	return filepath.Join(base, "build", hex.EncodeToString(sum[:6]))
}

// Binary is the path of a binary in a Build directory.
func Binary(dir, name string) string { return filepath.Join(dir, name) }

// Proc is a running process whose output is kept.
type Proc struct {
	Name string
	Cmd  *exec.Cmd
	Logs *Buffer
	done chan struct{}
}

// Start starts cmd; its standard output and error go to logs (a new Buffer if nil),
// which may be shared by several processes (the agents of one lab).
func Start(name string, cmd *exec.Cmd, logs *Buffer) (*Proc, error) {
	if logs == nil {
		logs = &Buffer{}
	}
	p := &Proc{Name: name, Cmd: cmd, Logs: logs, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	return p, nil
}

// Signal sends sig without waiting.
func (p *Proc) Signal(sig syscall.Signal) { _ = p.Cmd.Process.Signal(sig) }

// Stop sends sig and waits for the process to exit, killing it after 10 s. It does
// nothing to a process that has exited; nil is a no-op.
func (p *Proc) Stop(sig syscall.Signal) {
	if p == nil || p.Exited() {
		return
	}
	p.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.Cmd.Process.Kill()
		<-p.done
	}
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited says whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Buffer collects the output of one or more processes.
type Buffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Tail is the last n lines of s.
func Tail(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
