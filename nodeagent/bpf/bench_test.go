//go:build linux

package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// tcpPacket builds Ethernet + IPv4 + TCP with the given flags. Checksums are left zero:
// the program never validates them.
func tcpPacket(from, to netip.AddrPort, flags byte) []byte {
	pkt := make([]byte, 14+20+20)
	copy(pkt[0:6], []byte{0x02, 0, 0, 0, 0, 2})
	copy(pkt[6:12], []byte{0x02, 0, 0, 0, 0, 1})
	binary.BigEndian.PutUint16(pkt[12:], 0x0800)
	ip := pkt[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], 40)
	ip[8] = 64
	ip[9] = 6
	src := from.Addr().As4()
	d := to.Addr().As4()
	copy(ip[12:16], src[:])
	copy(ip[16:20], d[:])
	tcp := ip[20:]
	binary.BigEndian.PutUint16(tcp[0:], from.Port())
	binary.BigEndian.PutUint16(tcp[2:], to.Port())
	tcp[12] = 5 << 4
	tcp[13] = flags
	binary.BigEndian.PutUint16(tcp[14:], 65535)
	return pkt
}

// lookupBatch is how many times one BPF_PROG_TEST_RUN call runs the program. Short
// calls give many samples, so that the median and minimum can discard the calls a
// neighbour's interrupt or cache thrash landed in; the kernel times only the program
// runs, not building the skb or the syscall.
const lookupBatch = 4096

// BenchmarkRedirectLookup measures the program per packet with BPF_PROG_TEST_RUN, in
// the node namespace of a real topology: the map holds n entries, one of which is the
// VIP that a real client connection went through, so the packets are the ones the
// datapath sees on the node's interface:
//   - hit-syn: SYN from the client to VIP:80; finds no socket under its own 4-tuple and
//     takes the transparent listener on 127.0.0.1:15001 from the listeners map. Paid
//     once per connection.
//   - hit-established: ACK of the connection the proxy accepted; the 4-tuple lookup
//     finds the accepted socket. What every packet after the handshake pays.
//   - miss: SYN to the node's own address (not in the map); what every other TCP
//     packet on the interface pays.
//
// bpf_sk_assign returns an error under TEST_RUN (the synthetic skb is not at tc
// ingress), so hit runs count assign failures; the figures include the helper call but
// not the kernel's later socket steal, routing or TCP processing.
//
// Metrics: ns/pkt is the median over the TEST_RUN calls of lookupBatch packets (one op
// is one such call), min-ns/pkt the fastest call: on a shared machine noise only ever
// adds time, so the minimum is the closest to the program's own cost.
func BenchmarkRedirectLookup(b *testing.B) {
	top := newTopology(b)
	d, err := Open(mountBPFFS(b), Options{MaxEntries: 1 << 17})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { d.Close() })
	top.attach(b, d)
	serveEcho(b, listenTransparent(b, top.node, netip.MustParseAddrPort("127.0.0.1:15001")))
	vip := netip.AddrPortFrom(vipV4, vipPort)
	vipKey := Key{Addr: vipV4, Port: vipPort, Proto: ProtoTCP}
	if _, _, _, err := d.Sync(map[Key]uint16{vipKey: proxyPort}); err != nil {
		b.Fatal(err)
	}
	conn, err := top.client.Dial(vip, 2*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	if err := roundTrip(conn, "established"); err != nil {
		b.Fatal(err)
	}
	from := conn.LocalAddr().(*net.TCPAddr).AddrPort()
	newClient := netip.AddrPortFrom(top.client.IPv4.Addr(), 40000)
	cases := []struct {
		name string
		pkt  []byte
		want func(delta Stats) uint64 // the counter this packet must move
	}{
		// The listener was created after Attach, so it is in the listeners map.
		{"hit-syn", tcpPacket(newClient, vip, tcpSYN), func(s Stats) uint64 { return min(s.AssignFailures, s.ListenerMapHits) }},
		{"hit-established", tcpPacket(from, vip, tcpACK), func(s Stats) uint64 { return s.AssignFailures }},
		{"miss", tcpPacket(newClient, netip.AddrPortFrom(top.node.IPv4.Addr(), 9000), tcpSYN), func(s Stats) uint64 { return s.Misses }},
	}

	for _, n := range []int{1, 10_000, 100_000} {
		desired := map[Key]uint16{vipKey: proxyPort}
		base := binary.BigEndian.Uint32([]byte{10, 200, 0, 0})
		for i := range n - 1 {
			var a [4]byte
			binary.BigEndian.PutUint32(a[:], base+uint32(i))
			desired[Key{Addr: netip.AddrFrom4(a), Port: vipPort, Proto: ProtoTCP}] = proxyPort
		}
		if _, _, _, err := d.Sync(desired); err != nil {
			b.Fatal(err)
		}
		for _, c := range cases {
			b.Run(fmt.Sprintf("entries=%d/%s", n, c.name), func(b *testing.B) {
				before, err := d.Stats()
				if err != nil {
					b.Fatal(err)
				}
				var perPkt []float64
				err = top.node.Do(func() error {
					for b.Loop() {
						_, per, err := d.objs.PorticoRedirect.Benchmark(c.pkt, lookupBatch, nil)
						if err != nil {
							return err
						}
						perPkt = append(perPkt, float64(per.Nanoseconds()))
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
				after, err := d.Stats()
				if err != nil {
					b.Fatal(err)
				}
				// The real connection's own packets run the program too, hence ">=".
				if got, want := c.want(statsDelta(after, before)), uint64(len(perPkt)*lookupBatch); got < want {
					b.Fatalf("%s: expected counter moved by %d, want >= %d (took another path)", c.name, got, want)
				}
				b.ReportMetric(median(perPkt), "ns/pkt")
				b.ReportMetric(slices.Min(perPkt), "min-ns/pkt")
			})
		}
	}
}

const (
	tcpSYN = 0x02
	tcpACK = 0x10
)

func statsDelta(a, b Stats) Stats {
	return Stats{
		Hits:           a.Hits - b.Hits,
		Misses:         a.Misses - b.Misses,
		LookupFailures: a.LookupFailures - b.LookupFailures,
		Established:    a.Established - b.Established,
		AssignFailures: a.AssignFailures - b.AssignFailures,

		ListenerMapHits: a.ListenerMapHits - b.ListenerMapHits,
	}
}

// sink accepts connections on ln and, per connection, reports how many bytes arrived
// and how long it took from the first byte to EOF.
type sinkResult struct {
	bytes   int64
	elapsed time.Duration
}

func serveSink(t testing.TB, ln net.Listener) <-chan sinkResult {
	out := make(chan sinkResult, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 256<<10)
				n, err := c.Read(buf)
				if err != nil {
					out <- sinkResult{}
					return
				}
				start := time.Now()
				rest, _ := io.CopyBuffer(io.Discard, c, buf)
				out <- sinkResult{bytes: int64(n) + rest, elapsed: time.Since(start)}
			}()
		}
	}()
	return out
}

type throughputRig struct {
	top              *topology
	d                *Datapath
	direct, redirect netip.AddrPort
	ln               net.Listener
}

// newThroughputRig makes the two paths differ only in the datapath: one transparent
// listener on *:15001 in the node namespace serves both the node's own address (the
// direct path: the program runs and misses the map) and the VIP, which the program
// hands to the same listener (the redirect path: map hit, socket lookup, assign, mark
// and the policy-routing rule). Same socket, same options and buffer sizes, same veth,
// same client code.
func newThroughputRig(t testing.TB) *throughputRig {
	top := newTopology(t)
	d, err := Open(mountBPFFS(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	top.attach(t, d)
	if _, _, _, err := d.Sync(map[Key]uint16{{Addr: vipV4, Port: vipPort, Proto: ProtoTCP}: proxyPort}); err != nil {
		t.Fatal(err)
	}
	ln := listenTransparent(t, top.node, netip.MustParseAddrPort("0.0.0.0:15001"))
	return &throughputRig{
		top:      top,
		d:        d,
		direct:   netip.AddrPortFrom(top.node.IPv4.Addr(), proxyPort),
		redirect: netip.AddrPortFrom(vipV4, vipPort),
		ln:       ln,
	}
}

// send streams n chunks of 128 KiB on a new connection and returns the rate the
// receiver saw.
func (r *throughputRig) send(results <-chan sinkResult, to netip.AddrPort, n int) (float64, error) {
	c, err := r.top.client.Dial(to, 2*time.Second)
	if err != nil {
		return 0, err
	}
	chunk := make([]byte, 128<<10)
	for range n {
		if _, err := c.Write(chunk); err != nil {
			c.Close()
			return 0, err
		}
	}
	c.Close()
	select {
	case res := <-results:
		if res.elapsed <= 0 {
			return 0, fmt.Errorf("sink saw no data")
		}
		return float64(res.bytes) / res.elapsed.Seconds(), nil
	case <-time.After(5 * time.Second):
		return 0, fmt.Errorf("sink did not finish")
	}
}

func median(xs []float64) float64 {
	return quantile(xs, 0.5)
}

// quantile is the nearest-rank q-quantile of xs.
func quantile(xs []float64, q float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[int(q*float64(len(s)-1)+0.5)]
}

// BenchmarkRedirectThroughputRatio measures TCP throughput through the redirect as a
// share of the direct path (goal >= 95 %), with one bulk stream per path (see
// measureRatio for how the two are compared).
func BenchmarkRedirectThroughputRatio(b *testing.B) {
	rig := newThroughputRig(b)
	cpu := firstCPU(b)
	retrans0 := retransmits(b, rig.top)
	w := rig.measureRatio(b, func(to netip.AddrPort) *flow { return rig.stream(b, to, cpu) })
	w.report(b, "MB/s", 1e-6)
	// Many retransmissions (reordering, loss) would mean TCP's reaction to them, not
	// the datapath, set the rates; connection setup accounts for a handful.
	b.ReportMetric(float64(retransmits(b, rig.top)-retrans0), "retransmits")
}

// ratioWindows is what measureRatio saw: per window, the redirect path's progress as a
// share of the direct path's and both rates (units per second), the windows in which
// one path made none, and the totals and connections over the whole run (for the
// datapath counter checks).
type ratioWindows struct {
	ratio, directRate, redirectRate []float64
	directStalls, redirectStalls    int
	directTotal, redirectTotal      int64
	pairs                           int // one flow per path each
}

// measureRatio runs a flow over each path at the same time and compares their
// progress window by window.
//
// Neighbours on a shared machine change how much CPU this process gets from one
// millisecond to the next, and on veth both paths are CPU-bound, so rates measured at
// different times, even in adjacent 300 ms rounds, differed by far more than the
// datapath does (70-124 % run to run). The two paths therefore run at the same time,
// all their threads bound to the same CPU (start must do so; see stream), so at every
// instant both see the same load, the scheduler gives each the same share, and the
// ratio of what they deliver is the ratio of their costs. Every window yields one
// ratio; report gives the median, with the quartiles as its spread.
//
// One op is one window; b.N windows are run, but never fewer than minWindows, so the
// default -benchtime (which settles on b.N=1 for a run this long) still yields a median
// worth reading. More: -benchtime=200x.
func (r *throughputRig) measureRatio(b *testing.B, start func(to netip.AddrPort) *flow) *ratioWindows {
	const (
		window     = 200 * time.Millisecond
		minWindows = 30
		perEpoch   = 5 // windows per pair of connections
	)
	w := &ratioWindows{}
	windows := 0
	b.ResetTimer()
	for epoch := 0; windows < max(b.N, minWindows); epoch++ {
		// Fresh connections every few windows, opened in alternating order, so that
		// what one pair of connections happens to get (hash buckets, the CPU its
		// softirq work lands on, which flow started first) averages out.
		b.StopTimer()
		paths := []netip.AddrPort{r.direct, r.redirect}
		if epoch%2 == 1 {
			paths[0], paths[1] = paths[1], paths[0]
		}
		got := map[netip.AddrPort]*flow{}
		for _, to := range paths {
			got[to] = start(to)
		}
		w.pairs++
		direct, redirect := got[r.direct], got[r.redirect]
		time.Sleep(window) // past slow start on both
		d0, r0 := direct.done.Load(), redirect.done.Load()
		b.StartTimer()
		for range perEpoch {
			time.Sleep(window)
			windows++
			d1, r1 := direct.done.Load(), redirect.done.Load()
			// A window in which a flow made no progress (a retransmission timeout,
			// >= 200 ms, under heavy load) has no ratio; it is counted per path, so
			// that a datapath that loses packets shows.
			switch {
			case d1 == d0:
				w.directStalls++
			case r1 == r0:
				w.redirectStalls++
			default:
				w.ratio = append(w.ratio, 100*float64(r1-r0)/float64(d1-d0))
				w.directRate = append(w.directRate, float64(d1-d0)/window.Seconds())
				w.redirectRate = append(w.redirectRate, float64(r1-r0)/window.Seconds())
			}
			d0, r0 = d1, r1
		}
		direct.stop()
		redirect.stop()
		w.directTotal += direct.done.Load()
		w.redirectTotal += redirect.done.Load()
	}
	b.StopTimer()
	return w
}

// report gives the median ratio with its quartiles and both median rates, in unit
// scaled by scale (1e-6 for bytes as MB/s).
func (w *ratioWindows) report(b *testing.B, unit string, scale float64) {
	if len(w.ratio) == 0 {
		b.Fatalf("no window in which both flows made progress (%d direct, %d redirect stalls)", w.directStalls, w.redirectStalls)
	}
	b.ReportMetric(median(w.ratio), "%-of-direct")
	b.ReportMetric(quantile(w.ratio, 0.25), "p25-%")
	b.ReportMetric(quantile(w.ratio, 0.75), "p75-%")
	b.ReportMetric(median(w.directRate)*scale, "direct-"+unit)
	b.ReportMetric(median(w.redirectRate)*scale, "redirect-"+unit)
	b.ReportMetric(float64(len(w.ratio)), "windows")
	b.ReportMetric(float64(w.directStalls), "direct-stalls")
	b.ReportMetric(float64(w.redirectStalls), "redirect-stalls")
}

// retransmits reads the client namespace's TCP RetransSegs counter.
func retransmits(b *testing.B, top *topology) int64 {
	var n int64
	err := top.client.Do(func() error {
		raw, err := os.ReadFile("/proc/thread-self/net/snmp")
		if err != nil {
			return err
		}
		var names []string
		for _, line := range strings.Split(string(raw), "\n") {
			f := strings.Fields(line)
			if len(f) == 0 || f[0] != "Tcp:" {
				continue
			}
			if names == nil {
				names = f
				continue
			}
			for i, name := range names {
				if name == "RetransSegs" && i < len(f) {
					n, err = strconv.ParseInt(f[i], 10, 64)
					return err
				}
			}
		}
		return fmt.Errorf("no Tcp RetransSegs in snmp")
	})
	if err != nil {
		b.Fatal(err)
	}
	return n
}

// lockToCPU binds the calling goroutine's thread to cpu for the rest of the goroutine's
// life; the goroutine must exit without unlocking, so that the runtime discards the
// thread rather than reuse it with that affinity.
func lockToCPU(cpu int) error {
	runtime.LockOSThread()
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("bind thread to CPU %d: %w", cpu, err)
	}
	return nil
}

// firstCPU is the lowest-numbered CPU this process may run on (in a container that
// need not be CPU 0).
func firstCPU(b *testing.B) int {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		b.Fatal(err)
	}
	for cpu := range 1024 {
		if set.IsSet(cpu) {
			return cpu
		}
	}
	b.Fatal("no CPU in the affinity mask")
	return 0
}

// flow is one connection that a pair of pinned threads keeps busy.
type flow struct {
	done atomic.Int64 // progress: bytes received (stream), transactions (requestResponse)
	stop func()
}

// connect opens a connection from the client to to and accepts it on the rig's
// listener.
func (r *throughputRig) connect(b *testing.B, to netip.AddrPort) (client, server *net.TCPConn) {
	c, err := r.top.client.Dial(to, 2*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	srv, err := r.ln.Accept()
	if err != nil {
		c.Close()
		b.Fatal(err)
	}
	return c.(*net.TCPConn), srv.(*net.TCPConn)
}

// runPinned runs each loop on a thread of its own bound to cpu (see stream for why).
// The flow's stop calls unblock, which must make every loop return, waits for them and
// then calls release (if any): what a loop may still use is freed only after it ended.
func runPinned(b *testing.B, cpu int, unblock, release func(), loops ...func(*flow)) *flow {
	f := &flow{}
	var wg sync.WaitGroup
	for _, loop := range loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := lockToCPU(cpu); err != nil {
				b.Error(err)
				unblock() // the other loops of the flow would wait for this one forever
				return
			}
			loop(f)
		}()
	}
	f.stop = sync.OnceFunc(func() {
		unblock()
		wg.Wait()
		if release != nil {
			release()
		}
	})
	b.Cleanup(f.stop)
	return f
}

// stream opens a connection to to and keeps it full until stop. The sending and the
// receiving goroutine each run on a thread of their own bound to cpu, for two reasons.
// veth queues a packet on the backlog of the CPU that sends it, so a sender that
// migrates between CPUs gets its packets reordered, and the spurious fast retransmits
// then swing each stream's rate far more than the datapath does. And with every
// thread of both streams on one CPU, the scheduler's fair share is what splits it
// between the two paths, so the bytes each delivers compare their costs directly.
func (r *throughputRig) stream(b *testing.B, to netip.AddrPort, cpu int) *flow {
	c, srv := r.connect(b, to)
	// Fixed buffers: autotuning grows each connection's on its own schedule, and a
	// stream with bigger buffers batches more per context switch.
	if err := errors.Join(c.SetWriteBuffer(1<<20), srv.SetReadBuffer(1<<20)); err != nil {
		b.Fatal(err)
	}
	closeBoth := func() {
		c.Close()
		srv.Close()
	}
	receive := func(f *flow) {
		buf := make([]byte, 256<<10)
		for {
			n, err := srv.Read(buf)
			f.done.Add(int64(n))
			if err != nil {
				return
			}
		}
	}
	send := func(*flow) {
		chunk := make([]byte, 128<<10)
		for {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	}
	return runPinned(b, cpu, closeBoth, nil, receive, send)
}

// BenchmarkRedirectThroughput reports MB/s for one stream of b.N 128 KiB chunks over
// each path. Absolute rates drift with the machine's load; compare the paths with
// BenchmarkRedirectThroughputRatio.
func BenchmarkRedirectThroughput(b *testing.B) {
	rig := newThroughputRig(b)
	results := serveSink(b, rig.ln)
	for _, p := range []struct {
		name string
		to   netip.AddrPort
	}{{"direct", rig.direct}, {"redirect", rig.redirect}} {
		b.Run(p.name, func(b *testing.B) {
			b.SetBytes(128 << 10)
			if _, err := rig.send(results, p.to, b.N); err != nil {
				b.Fatal(err)
			}
		})
	}
}
