package e2e

import (
	"errors"
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

// arpProbe asks for an address from the client every few milliseconds on a raw ARP
// socket and timestamps each reply as it arrives, so that a handover is measured to the
// millisecond instead of at the granularity of spawning arping (tens of ms), and so that
// replies from two nodes in the same window are caught.
type arpProbe struct {
	c    *marp.Client
	done chan struct{}
	wg   sync.WaitGroup

	mu      sync.Mutex
	first   map[string]time.Time // by replying MAC
	last    map[string]time.Time
	arrived chan struct{} // signalled (coalesced) on every reply
}

func (r *l2rig) probeARP(tb testing.TB, ip netip.Addr, every time.Duration) *arpProbe {
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
	p := &arpProbe{c: c, done: make(chan struct{}), first: map[string]time.Time{}, last: map[string]time.Time{},
		arrived: make(chan struct{}, 1)}
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		for {
			pkt, _, err := c.Read()
			now := time.Now()
			if err != nil {
				select {
				case <-p.done: // closed by stop
					return
				default:
				}
				if errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed) {
					return
				}
				continue // a frame that is not a valid ARP packet
			}
			if pkt.Operation != marp.OperationReply || pkt.SenderIP != ip {
				continue // gratuitous ARP and other hosts' traffic: only answers count
			}
			mac := strings.ToLower(pkt.SenderHardwareAddr.String())
			p.mu.Lock()
			if _, ok := p.first[mac]; !ok {
				p.first[mac] = now
			}
			p.last[mac] = now
			p.mu.Unlock()
			select {
			case p.arrived <- struct{}{}:
			default:
			}
		}
	}()
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
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

// firstOther waits until a MAC other than owner answers and returns when it first did.
func (p *arpProbe) firstOther(owner string, timeout time.Duration) (string, time.Time, bool) {
	deadline := time.After(timeout)
	for {
		p.mu.Lock()
		for mac, at := range p.first {
			if mac != owner {
				p.mu.Unlock()
				return mac, at, true
			}
		}
		p.mu.Unlock()
		select {
		case <-p.arrived:
		case <-deadline:
			return "", time.Time{}, false
		}
	}
}

// lastFrom is when mac last answered (zero if never).
func (p *arpProbe) lastFrom(mac string) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last[mac]
}

func (p *arpProbe) stop() {
	close(p.done)
	_ = p.c.Close()
	p.wg.Wait()
}
