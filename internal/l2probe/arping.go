// Package l2probe asks who answers for an address on a lab segment, as a client on that
// segment would: Arping runs the Debian arping (ndisc6 for IPv6) once, Slots probes on a
// raw ARP socket every few milliseconds and attributes every reply to the request it
// answers, which is how split brain (one request answered by two nodes) is caught. The
// node-agent e2e tests, the e2e suite and the demo share it.
package l2probe

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"time"

	"github.com/portico-dev/portico/internal/netlab"
)

var macRe = regexp.MustCompile(`(?i)([0-9a-f]{2}(:[0-9a-f]{2}){5})`)

// Arping asks once for ip from h on its lab interface and returns the MACs that
// answered (lower case), and the tool's output.
func Arping(h *netlab.Host, ip netip.Addr, timeout time.Duration) (macs []string, out string) {
	name, args := Command(netlab.HostInterface, ip, timeout)
	out, _ = h.Run(name, args...)
	return Answers(ip, out), out
}

// Command is the arping (IPv4) or ndisc6 (IPv6) command asking once for ip on ifname.
func Command(ifname string, ip netip.Addr, timeout time.Duration) (string, []string) {
	if ip.Is4() {
		return "arping", []string{"-i", ifname, "-c", "1", "-w", fmt.Sprintf("%.3f", timeout.Seconds()), ip.String()}
	}
	return "ndisc6", []string{"-1", "-r", "1", "-w", fmt.Sprint(timeout.Milliseconds()), ip.String(), ifname}
}

// Answers are the MACs (lower case) that Command's output shows answering for ip.
func Answers(ip netip.Addr, out string) (macs []string) {
	for _, line := range strings.Split(out, "\n") {
		if ip.Is4() && !strings.Contains(line, "bytes from") || ip.Is6() && !strings.Contains(line, "link-layer address") {
			continue
		}
		if m := macRe.FindString(line); m != "" {
			macs = append(macs, strings.ToLower(m))
		}
	}
	return macs
}

// Neighbour is h's kernel neighbour entry for ip on its lab interface ("" if none).
func Neighbour(h *netlab.Host, ip netip.Addr) string {
	out, _ := h.Run("ip", "neigh", "show", ip.String(), "dev", netlab.HostInterface)
	if m := regexp.MustCompile(`lladdr (\S+)`).FindStringSubmatch(out); m != nil {
		return strings.ToLower(m[1])
	}
	return ""
}
