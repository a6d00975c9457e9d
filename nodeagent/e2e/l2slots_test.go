package e2e

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	marp "github.com/mdlayher/arp"

	"github.com/portico-dev/portico/internal/netlab"
)

// slotProbe asks for an address from the client every interval on a raw ARP socket and
// attributes each reply to the request slot it arrives in (from one request to the
// next). A slot with replies from two MACs is a request answered by two nodes: the
// split brain these tests exist to rule out. Replies take tens of microseconds on the
// lab bridge, far less than a slot.
type slotProbe struct {
	c     *marp.Client
	ip    netip.Addr
	every time.Duration
	done  chan struct{}
	wg    sync.WaitGroup
	once  sync.Once

	mu      sync.Mutex
	sends   []time.Time
	replies []slotReply
}

type slotReply struct {
	at  time.Time
	mac string
}

func (r *l2rig) startSlotProbe(tb testing.TB, ip netip.Addr, every time.Duration) *slotProbe {
	var c *marp.Client
	err := r.client.Do(func() error {
		ifi, err := net.InterfaceByName(netlab.HostInterface)
		if err != nil {
			return err
		}
		c, err = marp.Dial(ifi)
		return err
	})
	if err != nil {
		tb.Fatalf("ARP probe: %v", err)
	}
	p := &slotProbe{c: c, ip: ip, every: every, done: make(chan struct{})}
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		for {
			pkt, _, err := c.Read()
			now := time.Now()
			if err != nil {
				select {
				case <-p.done:
					return
				default:
				}
				if errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed) {
					return
				}
				continue
			}
			if pkt.Operation != marp.OperationReply || pkt.SenderIP != ip {
				continue // gratuitous ARP and other traffic: only answers count
			}
			p.mu.Lock()
			p.replies = append(p.replies, slotReply{at: now, mac: strings.ToLower(pkt.SenderHardwareAddr.String())})
			p.mu.Unlock()
		}
	}()
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			p.mu.Lock()
			p.sends = append(p.sends, time.Now())
			p.mu.Unlock()
			_ = c.Request(ip)
			select {
			case <-p.done:
				return
			case <-t.C:
			}
		}
	}()
	return p
}

// stop ends probing; it may be called more than once.
func (p *slotProbe) stop() {
	p.once.Do(func() {
		close(p.done)
		_ = p.c.Close()
		p.wg.Wait()
	})
}

// slotStats summarises the slots between from and to (zero: all).
type slotStats struct {
	requests, answered int
	// doubles are the slots answered by two MACs, with when and by whom; missed (the
	// first 20) those nobody answered.
	doubles, missed []string
	// first and last reply per MAC; maxGap is the longest time between two replies.
	first, last map[string]time.Time
	maxGap      time.Duration
	// late are requests whose reply was read after the next request went out.
	late int
}

func (p *slotProbe) stats(from, to time.Time) slotStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := slotStats{first: map[string]time.Time{}, last: map[string]time.Time{}}
	// Per slot (from one request to the next): its send time and who replied in it.
	type slot struct {
		at   time.Time
		macs map[string]bool
	}
	slots := make([]slot, 0, len(p.sends))
	j := 0
	for i, s := range p.sends {
		end := s.Add(p.every)
		if i+1 < len(p.sends) {
			end = p.sends[i+1]
		}
		sl := slot{at: s, macs: map[string]bool{}}
		for ; j < len(p.replies) && p.replies[j].at.Before(end); j++ {
			if !p.replies[j].at.Before(s) {
				sl.macs[p.replies[j].mac] = true
			}
		}
		slots = append(slots, sl)
	}
	answered := p.matchReplies()
	for i, sl := range slots {
		if (!from.IsZero() && sl.at.Before(from)) || (!to.IsZero() && !sl.at.Before(to)) {
			continue
		}
		st.requests++
		switch {
		case answered[i] && len(sl.macs) == 0:
			st.answered++
			st.late++
		case answered[i]:
			st.answered++
		case len(st.missed) < 20:
			st.missed = append(st.missed, sl.at.Format("15:04:05.000000"))
		}
		if len(sl.macs) > 1 {
			var list []string
			for m := range sl.macs {
				list = append(list, m)
			}
			st.doubles = append(st.doubles, fmt.Sprintf("%s: %v", sl.at.Format("15:04:05.000000"), list))
		}
	}
	var prev time.Time
	for _, r := range p.replies {
		if (!from.IsZero() && r.at.Before(from)) || (!to.IsZero() && !r.at.Before(to)) {
			continue
		}
		if !prev.IsZero() && r.at.Sub(prev) > st.maxGap {
			st.maxGap = r.at.Sub(prev)
		}
		prev = r.at
		if _, ok := st.first[r.mac]; !ok {
			st.first[r.mac] = r.at
		}
		st.last[r.mac] = r.at
	}
	return st
}

// answerWithin is how long a request waits for its reply, as arping's default timeout.
const answerWithin = time.Second

// matchReplies pairs replies with requests in order, as a client that sends one
// request at a time would: a reply answers the oldest unanswered request sent before it
// and at most answerWithin earlier. On a loaded machine a reply can be read after the
// next request went out; it still answers its own request, while a responder that
// stopped leaves requests with no reply at all.
func (p *slotProbe) matchReplies() []bool {
	answered := make([]bool, len(p.sends))
	next := 0
	for _, r := range p.replies {
		for next < len(p.sends) && r.at.Sub(p.sends[next]) > answerWithin {
			next++ // too old to be answered by this or any later reply
		}
		if next < len(p.sends) && !r.at.Before(p.sends[next]) {
			answered[next] = true
			next++
		}
	}
	return answered
}

// firstOther waits until a MAC other than owner answers after since and returns when.
func (p *slotProbe) firstOther(owner string, since time.Time, timeout time.Duration) (string, time.Time, bool) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		p.mu.Lock()
		for _, r := range p.replies {
			if r.mac != owner && r.at.After(since) {
				p.mu.Unlock()
				return r.mac, r.at, true
			}
		}
		p.mu.Unlock()
		time.Sleep(5 * time.Millisecond)
	}
	return "", time.Time{}, false
}
