package agent

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestPortsStableAcrossRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", PortStateFile)
	p, err := LoadPorts(path, 15000, 15009, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Allocate([]string{"b", "a", "c", "a"}); err != nil {
		t.Fatal(err)
	}
	want := map[string]uint16{"a": 15000, "b": 15001, "c": 15002}
	assertPorts(t, p.Assigned(), want)

	// A restart is a new allocator from the same file.
	p2, err := LoadPorts(path, 15000, 15009, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	assertPorts(t, p2.Assigned(), want)
	// A new listener sorting before the others must not move them.
	if err := p2.Allocate([]string{"0first", "a", "b", "c"}); err != nil {
		t.Fatal(err)
	}
	want["0first"] = 15003
	assertPorts(t, p2.Assigned(), want)
}

func TestPortsReleaseHoldsPort(t *testing.T) {
	now := time.Unix(1000, 0)
	path := filepath.Join(t.TempDir(), PortStateFile)
	p, err := LoadPorts(path, 15000, 15002, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	p.now = func() time.Time { return now }
	if err := p.Allocate([]string{"a", "b"}); err != nil {
		t.Fatal(err)
	}
	if err := p.Retain([]string{"b"}); err != nil {
		t.Fatal(err)
	}
	// 15000 was just released: the next listener gets 15002, not the held port.
	if err := p.Allocate([]string{"b", "c"}); err != nil {
		t.Fatal(err)
	}
	assertPorts(t, p.Assigned(), map[string]uint16{"b": 15001, "c": 15002})
	// The range is full except the held port, which is then used rather than failing.
	if err := p.Allocate([]string{"d"}); err != nil {
		t.Fatal(err)
	}
	if got := p.Assigned()["d"]; got != 15000 {
		t.Fatalf("d = %d, want the held port 15000", got)
	}
	if err := p.Allocate([]string{"e"}); err == nil {
		t.Fatal("allocation from a full range succeeded")
	}

	// The hold survives a restart and expires.
	_ = p.Retain([]string{"b", "c"})
	p2, err := LoadPorts(path, 15000, 15002, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	p2.now = func() time.Time { return now.Add(30 * time.Second) }
	if err := p2.Allocate([]string{"x"}); err != nil {
		t.Fatal(err)
	}
	if got := p2.Assigned()["x"]; got != 15000 {
		// Only 15000 is free; held or not, it is the one.
		t.Fatalf("x = %d", got)
	}
}

func TestPortsDropsOutOfRangeAndBadFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, PortStateFile)
	if err := os.WriteFile(path, []byte(`{"version":1,"ports":{"a":14000,"b":15001,"c":15001}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := LoadPorts(path, 15000, 15010, 0)
	if err != nil {
		t.Fatal(err)
	}
	got := p.Assigned()
	if len(got) != 1 || got["a"] != 0 || got["b"] != 15001 {
		t.Fatalf("unexpected assignments %v", got)
	}
	if err := os.WriteFile(path, []byte("not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadPorts(path, 15000, 15010, 0); err == nil {
		t.Fatal("a corrupt state file was accepted")
	}
}

func assertPorts(t *testing.T, got, want map[string]uint16) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("ports = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("ports = %v, want %v", got, want)
		}
	}
}
