package l2probe

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	marp "github.com/mdlayher/arp"

	"github.com/portico-dev/portico/internal/netlab"
)

// Slots asks for an address from a host every interval on a raw ARP socket and
// attributes each reply to the request slot it arrives in (from one request to the
// next). A slot with replies from two MACs is a request answered by two nodes: the
// split brain the L2 tests exist to rule out. Replies take tens of microseconds on the
// lab bridge, far less than a slot.
type Slots struct {
	c     *marp.Client
	ip    netip.Addr
	every time.Duration
	done  chan struct{}
	// sender and reader: Stop ends the sender first and lets the last request's reply
	// arrive before closing the socket under the reader.
	sender, reader sync.WaitGroup
	once           sync.Once

	mu      sync.Mutex
	sends   []time.Time
	replies []reply
}

type reply struct {
	at  time.Time
	mac string
}

// StartSlots starts probing ip from h's lab interface every interval until Stop.
func StartSlots(h *netlab.Host, ip netip.Addr, every time.Duration) (*Slots, error) {
	var c *marp.Client
	err := h.Do(func() error {
		ifi, err := net.InterfaceByName(netlab.HostInterface)
		if err != nil {
			return err
		}
		c, err = marp.Dial(ifi)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("ARP probe from %s: %w", h.Name, err)
	}
	p := &Slots{c: c, ip: ip, every: every, done: make(chan struct{})}
	p.sender.Add(1)
	p.reader.Add(1)
	go p.read()
	go p.send()
	return p, nil
}

func (p *Slots) read() {
	defer p.reader.Done()
	for {
		pkt, _, err := p.c.Read()
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
		if pkt.Operation != marp.OperationReply || pkt.SenderIP != p.ip {
			continue // gratuitous ARP and other traffic: only answers count
		}
		p.mu.Lock()
		p.replies = append(p.replies, reply{at: now, mac: strings.ToLower(pkt.SenderHardwareAddr.String())})
		p.mu.Unlock()
	}
}

func (p *Slots) send() {
	defer p.sender.Done()
	t := time.NewTicker(p.every)
	defer t.Stop()
	for {
		p.mu.Lock()
		p.sends = append(p.sends, time.Now())
		p.mu.Unlock()
		_ = p.c.Request(p.ip)
		select {
		case <-p.done:
			return
		case <-t.C:
		}
	}
}

// Stop ends probing; it may be called more than once. It stops sending, then waits
// (up to answerWithin) for the reply to the last request before it closes the socket:
// closing at once left a request sent just before Stop unanswered, a silence that
// never happened.
func (p *Slots) Stop() {
	p.once.Do(func() {
		close(p.done)
		p.sender.Wait()
		for deadline := time.Now().Add(answerWithin); time.Now().Before(deadline) && !p.lastAnswered(); {
			time.Sleep(2 * time.Millisecond)
		}
		_ = p.c.Close()
		p.reader.Wait()
	})
}

func (p *Slots) lastAnswered() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	answered := p.matchReplies()
	return len(answered) == 0 || answered[len(answered)-1]
}

// Stats summarises the slots between two instants.
type Stats struct {
	Requests, Answered int
	// Doubles are the slots answered by two MACs, with when and by whom; Missed (the
	// first 20) those nobody answered.
	Doubles, Missed []string
	// Late are requests whose reply was read after the next request went out.
	Late int
	// Replies counts the replies received: where one node answers throughout, Replies
	// against Requests tells delay from silence whatever slot a reply was read in.
	Replies int
	// First and Last reply per MAC; MaxGap is the longest time between two replies.
	First, Last map[string]time.Time
	MaxGap      time.Duration
}

// Stats summarises the slots sent between from and to (zero: unbounded).
func (p *Slots) Stats(from, to time.Time) Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := Stats{First: map[string]time.Time{}, Last: map[string]time.Time{}}
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
		st.Requests++
		switch {
		case answered[i] && len(sl.macs) == 0:
			st.Answered++
			st.Late++
		case answered[i]:
			st.Answered++
		case len(st.Missed) < 20:
			st.Missed = append(st.Missed, sl.at.Format("15:04:05.000000"))
		}
		if len(sl.macs) > 1 {
			var list []string
			for m := range sl.macs {
				list = append(list, m)
			}
			st.Doubles = append(st.Doubles, fmt.Sprintf("%s: %v", sl.at.Format("15:04:05.000000"), list))
		}
	}
	var prev time.Time
	for _, r := range p.replies {
		if (!from.IsZero() && r.at.Before(from)) || (!to.IsZero() && !r.at.Before(to)) {
			continue
		}
		if !prev.IsZero() && r.at.Sub(prev) > st.MaxGap {
			st.MaxGap = r.at.Sub(prev)
		}
		prev = r.at
		st.Replies++
		if _, ok := st.First[r.mac]; !ok {
			st.First[r.mac] = r.at
		}
		st.Last[r.mac] = r.at
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
func (p *Slots) matchReplies() []bool {
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

// FirstOther waits until a MAC other than owner answers after since and returns it and
// when; false if none did within timeout.
func (p *Slots) FirstOther(owner string, since time.Time, timeout time.Duration) (string, time.Time, bool) {
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
