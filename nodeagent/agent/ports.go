package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// PortStateFile is the file, in the agent's state directory, that keeps proxy port
// assignments across restarts: Envoy keeps its listeners bound while the agent restarts,
// so a listener that got a new port would have its pinned redirects point at nothing.
const PortStateFile = "proxy-ports.json"

// DefaultPortHold is how long a released port is not handed to another listener: Envoy
// drains the old listener for a while, and a new listener on the same port could not
// bind until it is gone.
const DefaultPortHold = 10 * time.Minute

type portState struct {
	Version int               `json:"version"`
	Ports   map[string]uint16 `json:"ports"`
	// Released maps a port (as a decimal string, JSON keys are strings) to when it was freed.
	Released map[string]time.Time `json:"released,omitempty"`
}

// Ports allocates the proxy port of every redirected listener on this node from a range.
// It is safe for concurrent use.
type Ports struct {
	path   string
	lo, hi uint16
	hold   time.Duration
	now    func() time.Time

	mu       sync.Mutex
	ports    map[string]uint16
	released map[uint16]time.Time
}

// LoadPorts opens the allocator persisted at path (a missing file is an empty allocator).
// Assignments outside [lo, hi], e.g. after the range flag changed, are dropped and will
// be reallocated.
func LoadPorts(path string, lo, hi uint16, hold time.Duration) (*Ports, error) {
	if lo == 0 || hi < lo {
		return nil, fmt.Errorf("invalid proxy port range %d-%d", lo, hi)
	}
	p := &Ports{path: path, lo: lo, hi: hi, hold: hold, now: time.Now,
		ports: map[string]uint16{}, released: map[uint16]time.Time{}}
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return p, nil
	case err != nil:
		return nil, fmt.Errorf("reading proxy port state: %w", err)
	}
	var st portState
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("decoding proxy port state %s: %w", path, err)
	}
	used := map[uint16]bool{}
	for _, name := range slices.Sorted(maps.Keys(st.Ports)) {
		port := st.Ports[name]
		// A port listed twice can only come from a hand-edited file; keep the first name.
		if port >= lo && port <= hi && !used[port] {
			p.ports[name] = port
			used[port] = true
		}
	}
	for s, at := range st.Released {
		var port uint16
		if _, err := fmt.Sscanf(s, "%d", &port); err == nil && !used[port] {
			p.released[port] = at
		}
	}
	return p, nil
}

// Assigned returns a copy of the current listener → port assignments.
func (p *Ports) Assigned() map[string]uint16 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.ports)
}

// Allocate gives every listener in names that has no port the lowest free port, skipping
// ports released less than the hold time ago unless nothing else is free, and persists
// the result. Listeners that already have a port keep it.
func (p *Ports) Allocate(names []string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	used := map[uint16]bool{}
	for _, port := range p.ports {
		used[port] = true
	}
	changed := false
	for _, name := range sortedCopy(names) {
		if _, ok := p.ports[name]; ok {
			continue
		}
		port, ok := p.free(used)
		if !ok {
			return fmt.Errorf("proxy port range %d-%d is exhausted (%d listeners)", p.lo, p.hi, len(p.ports))
		}
		p.ports[name] = port
		used[port] = true
		delete(p.released, port)
		changed = true
	}
	if !changed {
		return nil
	}
	return p.saveLocked()
}

func (p *Ports) free(used map[uint16]bool) (uint16, bool) {
	now := p.now()
	var fallback uint16
	for port := uint32(p.lo); port <= uint32(p.hi); port++ {
		pt := uint16(port)
		if used[pt] {
			continue
		}
		if at, ok := p.released[pt]; ok && now.Sub(at) < p.hold {
			if fallback == 0 {
				fallback = pt
			}
			continue
		}
		return pt, true
	}
	return fallback, fallback != 0
}

// Retain releases the ports of every listener not in keep and persists the result.
func (p *Ports) Retain(keep []string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	want := map[string]bool{}
	for _, n := range keep {
		want[n] = true
	}
	changed := false
	now := p.now()
	for name, port := range p.ports {
		if !want[name] {
			delete(p.ports, name)
			p.released[port] = now
			changed = true
		}
	}
	// Forget holds that have expired so the file does not grow without bound.
	for port, at := range p.released {
		if now.Sub(at) >= p.hold {
			delete(p.released, port)
			changed = true
		}
	}
	if !changed {
		return nil
	}
	return p.saveLocked()
}

// saveLocked writes the state atomically (temporary file + rename), so a crash leaves
// either the old or the new assignments, never a truncated file.
func (p *Ports) saveLocked() error {
	if p.path == "" {
		return nil
	}
	st := portState{Version: 1, Ports: p.ports, Released: map[string]time.Time{}}
	for port, at := range p.released {
		st.Released[fmt.Sprint(port)] = at
	}
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p.path), 0o700); err != nil {
		return fmt.Errorf("creating proxy port state dir: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(p.path), ".proxy-ports-*")
	if err != nil {
		return fmt.Errorf("writing proxy port state: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("writing proxy port state: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("writing proxy port state: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing proxy port state: %w", err)
	}
	if err := os.Rename(tmp.Name(), p.path); err != nil {
		return fmt.Errorf("writing proxy port state: %w", err)
	}
	return nil
}

func sortedCopy(in []string) []string {
	out := slices.Clone(in)
	slices.Sort(out)
	return slices.Compact(out)
}
