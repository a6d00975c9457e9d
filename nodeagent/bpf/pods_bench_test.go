//go:build linux

package bpf

import (
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/portico-dev/portico/internal/netlab"
)

// connectWindow is how many connections one window of a connection-rate ratio makes
// on each path.
const connectWindow = 200

// BenchmarkPodConnectRatio is the figure for pod traffic to a redirected ClusterIP:
// connections per second from a pod namespace to ClusterIP:5000 (redirected by the TC
// program on the pod's host-side interface into the proxy listener, with kube-proxy's
// DNAT rules in place and skipped through notrack) against connections straight to a
// listener on the node's pod-side address. Each connection is connect, one byte each
// way, close (with RST, so no TIME_WAIT piles up). The two paths alternate in windows
// of connectWindow connections, in alternating order, and the metric is the median of
// the windows' ratios, so that a neighbour's load shifts both sides of each ratio alike.
func BenchmarkPodConnectRatio(b *testing.B) {
	top := newPodTopology(b)
	d := openBench(b)
	top.attachPods(b, d)
	top.serve(b, d)
	direct := netip.AddrPortFrom(top.pod.Gateway4, proxyPort+1)
	serveEcho(b, listenTransparent(b, top.node, direct))
	connectRatio(b, top.pod.Host, netip.AddrPortFrom(clusterIP4, servicePort), direct)
}

// BenchmarkHostConnectRatio is the same for a host-network client: connect() to
// ClusterIP:5000 rewritten by the connect4 hook to the proxy listener, against
// connect() straight to that listener (127.0.0.1:proxy port).
func BenchmarkHostConnectRatio(b *testing.B) {
	top := newPodTopology(b)
	d := openBench(b)
	top.attachPods(b, d)
	top.serve(b, d)
	connectRatio(b, top.node, netip.AddrPortFrom(clusterIP4, servicePort), netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), proxyPort))
}

func connectRatio(b *testing.B, client *netlab.Host, redirected, direct netip.AddrPort) {
	const minWindows = 20
	var ratios, redirRates, directRates []float64
	b.ResetTimer()
	for w := 0; w < max(b.N, minWindows); w++ {
		paths := []netip.AddrPort{redirected, direct}
		if w%2 == 1 {
			paths[0], paths[1] = paths[1], paths[0]
		}
		rate := map[netip.AddrPort]float64{}
		for _, to := range paths {
			var elapsed time.Duration
			err := client.Do(func() error {
				start := time.Now()
				for range connectWindow {
					if err := oneConnection(to); err != nil {
						return err
					}
				}
				elapsed = time.Since(start)
				return nil
			})
			if err != nil {
				b.Fatalf("%s: %v", to, err)
			}
			rate[to] = connectWindow / elapsed.Seconds()
		}
		redirRates = append(redirRates, rate[redirected])
		directRates = append(directRates, rate[direct])
		ratios = append(ratios, rate[redirected]/rate[direct])
	}
	b.StopTimer()
	b.ReportMetric(median(redirRates), "redirected-conn/s")
	b.ReportMetric(median(directRates), "direct-conn/s")
	b.ReportMetric(100*median(ratios), "ratio-%")
	b.ReportMetric(0, "ns/op")
}

func oneConnection(to netip.AddrPort) error {
	c, err := net.DialTimeout("tcp", to.String(), time.Second)
	if err != nil {
		return err
	}
	tc := c.(*net.TCPConn)
	defer func() { _ = tc.SetLinger(0); tc.Close() }()
	if err := c.SetDeadline(time.Now().Add(time.Second)); err != nil {
		return err
	}
	if _, err := c.Write([]byte{'x'}); err != nil {
		return err
	}
	var buf [1]byte
	_, err = io.ReadFull(c, buf[:])
	return err
}

func openBench(b *testing.B) *Datapath {
	b.Helper()
	d, err := Open(mountBPFFS(b), Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { d.Close() })
	return d
}
