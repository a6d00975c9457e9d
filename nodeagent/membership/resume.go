package membership

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/portico-dev/portico/internal/l2quorum"
)

// heldQuery asks the other agents which of IPs they hold; heldReply answers it.
type heldMsg struct {
	Kind string   `json:"k"` // "q" or "r"
	ID   uint64   `json:"id"`
	From string   `json:"from"`
	IPs  []string `json:"ips"`
}

// SetHeld records the addresses this agent holds (applied to its responder, answered
// or not), which it reports to a restarted peer asking before it resumes.
func (a *Agent) SetHeld(ips []string) {
	a.mu.Lock()
	a.held = slices.Clone(ips)
	a.mu.Unlock()
}

func (a *Agent) handle(b []byte) {
	var m heldMsg
	if err := json.Unmarshal(b, &m); err != nil {
		return
	}
	switch m.Kind {
	case "q":
		a.mu.Lock()
		var held []string
		for _, ip := range m.IPs {
			if slices.Contains(a.held, ip) {
				held = append(held, ip)
			}
		}
		a.mu.Unlock()
		reply, _ := json.Marshal(heldMsg{Kind: "r", ID: m.ID, From: a.opts.Node, IPs: held})
		if err := a.member.Send(m.From, reply); err != nil {
			a.log.V(1).Info("answering a held-addresses query", "to", m.From, "error", err.Error())
		}
	case "r":
		a.mu.Lock()
		if q := a.queries[m.ID]; q != nil {
			q.replies[m.From] = m.IPs
			select {
			case q.arrived <- struct{}{}:
			default:
			}
		}
		a.mu.Unlock()
	}
}

type query struct {
	replies map[string][]string
	arrived chan struct{}
}

// Unheld asks every agent it sees alive which of ips it holds, and returns those none
// holds. It fails unless every one of them answered within timeout: an agent that did
// not answer may hold any of them.
//
// A restarted agent that cannot reach the apiserver resumes its last assignment from
// its state file only for addresses Unheld returns. While it was down its peers may
// have declared it dead and the controller given its addresses to another node, which
// then holds them; with the apiserver unreachable that node is the only one that can
// say so.
func (a *Agent) Unheld(ctx context.Context, ips []string, timeout time.Duration) ([]string, error) {
	var peers []string
	for _, m := range a.member.Members() {
		if !m.Controller && m.Name != a.opts.Node && (m.State == l2quorum.Alive || m.State == l2quorum.Suspect) {
			peers = append(peers, m.Name)
		}
	}
	a.mu.Lock()
	a.nextQuery++
	id := a.nextQuery
	q := &query{replies: map[string][]string{}, arrived: make(chan struct{}, 1)}
	a.queries[id] = q
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		delete(a.queries, id)
		a.mu.Unlock()
	}()
	msg, _ := json.Marshal(heldMsg{Kind: "q", ID: id, From: a.opts.Node, IPs: ips})
	// Not waited for: a send to a peer that died meanwhile may take a TCP timeout, and
	// its missing reply fails the query anyway.
	for _, p := range peers {
		go func() { _ = a.member.Send(p, msg) }()
	}
	deadline := time.After(timeout)
	for {
		a.mu.Lock()
		missing := 0
		held := map[string]bool{}
		for _, p := range peers {
			r, ok := q.replies[p]
			if !ok {
				missing++
			}
			for _, ip := range r {
				held[ip] = true
			}
		}
		a.mu.Unlock()
		if missing == 0 {
			var out []string
			for _, ip := range ips {
				if !held[ip] {
					out = append(out, ip)
				}
			}
			return out, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-deadline:
			return nil, fmt.Errorf("%d of %d agents did not say which addresses they hold", missing, len(peers))
		case <-q.arrived:
		}
	}
}
