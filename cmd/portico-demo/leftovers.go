package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/portico-dev/portico/internal/netlab"
)

// labID names the demo's namespaces (ptdm-n1, ptdm-client) and bridge (ptbrdm).
const labID = "dm"

// demoDir holds the demo's files and the record of what it made.
func demoDir() string {
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "portico", "demo")
}

func recordFile() string { return filepath.Join(demoDir(), "made") }

// record appends one thing the demo made (a process with its start time, so that a
// reused pid is never killed, or a mount) to the record that --down reads: a demo
// killed with kill -9 leaves processes in namespaces and pinned eBPF behind.
func record(kind, what string) {
	line := kind + " " + what
	if kind == "pid" {
		pid, _ := strconv.Atoi(what)
		line += " " + startTime(pid)
	}
	f, err := os.OpenFile(recordFile(), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		fmt.Fprintln(os.Stderr, "portico-demo: recording", line+":", err)
		return
	}
	defer f.Close()
	fmt.Fprintln(f, line)
}

// startTime is field 22 of /proc/<pid>/stat (clock ticks since boot), "" if gone.
func startTime(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	// The command name (field 2) may hold spaces: count from its closing parenthesis.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 20 {
		return ""
	}
	return f[19]
}

// removeLeftovers kills the recorded processes, unmounts the recorded bpffs mounts
// (dropping every pin), deletes the lab's namespaces and bridge and the demo's files,
// and says what it removed.
func removeLeftovers(w io.Writer) error {
	var removed []string
	if f, err := os.Open(recordFile()); err == nil {
		sc := bufio.NewScanner(f)
		var mounts []string
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			switch {
			case len(fs) == 3 && fs[0] == "pid":
				pid, _ := strconv.Atoi(fs[1])
				if pid > 0 && startTime(pid) == fs[2] && syscall.Kill(pid, syscall.SIGKILL) == nil {
					removed = append(removed, "process "+fs[1])
				}
			case len(fs) == 2 && fs[0] == "mount":
				mounts = append(mounts, fs[1])
			}
		}
		f.Close()
		for _, m := range mounts {
			if unix.Unmount(m, unix.MNT_DETACH) == nil {
				removed = append(removed, "bpffs "+m)
			}
		}
	}
	removed = append(removed, netlab.RemoveLeftovers(labID)...)
	if err := os.RemoveAll(demoDir()); err != nil {
		return err
	}
	if len(removed) == 0 {
		fmt.Fprintln(w, "no demo left anything behind")
		return nil
	}
	for _, r := range removed {
		fmt.Fprintln(w, "removed", r)
	}
	return nil
}

// demoT is what e2e/framework/local builds the cluster with: Fatal ends the demo (after
// the clean-ups) instead of a test.
type demoT struct{ cleanups []func() }

// fatal is the panic of demoT.Fatal, recovered by runNodes.
type fatal struct{ msg string }

func (t *demoT) Helper()                           {}
func (t *demoT) Fatal(args ...any)                 { panic(fatal{fmt.Sprint(args...)}) }
func (t *demoT) Fatalf(format string, args ...any) { panic(fatal{fmt.Sprintf(format, args...)}) }
func (t *demoT) Cleanup(f func())                  { t.cleanups = append(t.cleanups, f) }

// cleanup runs the clean-ups, last registered first.
func (t *demoT) cleanup() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
	t.cleanups = nil
}
