package inspect

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/printers"
)

// WriteStatus prints s as kubectl prints tables: the source, then one table per
// link of the chain, then the problems (or that there are none).
func WriteStatus(w io.Writer, s Status) error {
	out := &sections{w: w}
	out.section(func(tw io.Writer) {
		fmt.Fprintf(tw, "%s\n", s.Source)
		for _, lb := range s.LoadBalancers {
			fmt.Fprintf(tw, "load balancer:\t%s\n", lb)
		}
		if s.Published != nil {
			fmt.Fprintf(tw, "published:\t%s\n", orDash(strings.Join(s.Published, ", ")))
		}
	})
	if len(s.Configs) > 0 {
		out.section(func(tw io.Writer) {
			fmt.Fprintf(tw, "\nCONFIG\tPRODUCER\tGENERATION\tPROGRAMMED\tREASON\tNODES\n")
			for _, c := range s.Configs {
				status, reason := "-", ""
				if p := c.Programmed; p != nil {
					status, reason = string(p.Status), p.Reason
					if !p.Current {
						status += " (stale)"
					}
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%d/%d\n", c.Name, orDash(c.Producer), c.Generation, status, orDash(reason), programmed(c), c.SelectedNodes)
			}
		})
		out.section(func(tw io.Writer) {
			fmt.Fprintf(tw, "\nCONFIG\tNODE\tSTATE\tREASON\tMESSAGE\n")
			for _, c := range s.Configs {
				if len(c.Nodes) == 0 {
					fmt.Fprintf(tw, "%s\t-\t-\t-\tno node running the agent is selected\n", c.Name)
				}
				for _, n := range c.Nodes {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.Name, n.Node, n.State, orDash(n.Reason), orDash(oneLine(n.Message)))
				}
			}
		})
	}
	if hasRedirects(s.Configs) {
		out.section(func(tw io.Writer) {
			fmt.Fprintf(tw, "\nCONFIG\tREDIRECT\tVIP\tPORT\tPROTOCOL\tLISTENER\n")
			for _, c := range s.Configs {
				for _, r := range c.Redirects {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", c.Name, r.Name, r.VIP, r.Port, r.Protocol, r.Listener)
				}
			}
		})
	}
	if hasAnnouncements(s.Configs) {
		out.section(func(tw io.Writer) {
			fmt.Fprintf(tw, "\nCONFIG\tANNOUNCES\tSERVICE\tINTERFACES\n")
			for _, c := range s.Configs {
				for _, a := range c.Announcements {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.Name, a.IP, a.Service, orDash(strings.Join(a.Interfaces, ",")))
				}
			}
		})
	}
	if len(s.Addresses) > 0 {
		out.section(func(tw io.Writer) {
			fmt.Fprintf(tw, "\nADDRESS\tSERVICE\tANNOUNCED BY\tCONFIG\tSTATE\tL2ANNOUNCED\n")
			for _, a := range s.Addresses {
				l2 := "-"
				if a.L2Announced != nil {
					l2 = string(a.L2Announced.Status)
				}
				fmt.Fprintf(tw, "%s\t%s/%s\t%s\t%s\t%s\t%s\n", a.IP, a.Service.Namespace, a.Service.Name,
					orDash(a.AnnouncedBy), orDash(a.Config), orDash(string(a.State)), l2)
			}
		})
	}
	out.section(func(tw io.Writer) {
		writeVerdict(tw, s.OK, s.Problems, "in effect on every selected node, every address announced")
	})
	return out.err
}

// sections prints tables one after the other, each aligned on its own.
type sections struct {
	w   io.Writer
	err error
}

func (s *sections) section(fill func(io.Writer)) {
	if s.err != nil {
		return
	}
	tw := printers.GetNewTabWriter(s.w)
	fill(tw)
	s.err = tw.Flush()
}

// WriteNodes prints one line per node, then the problems.
func WriteNodes(w io.Writer, ns Nodes) error {
	out := &sections{w: w}
	tw := printers.GetNewTabWriter(w)
	fmt.Fprintf(tw, "NODE\tREADY\tHEARTBEAT\tPROXY\tACKED\tSERVED\tCONFIGS\tREDIRECTS\tANNOUNCED\tREJECTED\n")
	var problems []string
	for _, n := range ns.Nodes {
		for _, p := range n.Problems {
			problems = append(problems, n.Name+": "+p)
		}
		if !n.Agent {
			fmt.Fprintf(tw, "%s\t-\t%s\t-\t-\t-\t-\t-\t-\t-\n", n.Name, heartbeatCell(n.Heartbeat))
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\n", n.Name, conditionCell(n.Ready), heartbeatCell(n.Heartbeat),
			conditionCell(n.Proxy), orDash(n.AckedVersion), orDash(n.XDSVersion), n.Configs, n.Redirects, n.AnnouncedIPs, n.Rejected)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	out.section(func(tw io.Writer) { writeVerdict(tw, ns.OK, problems, "every agent ready, nothing rejected") })
	return out.err
}

func writeVerdict(w io.Writer, ok bool, problems []string, fine string) {
	if ok {
		fmt.Fprintf(w, "\nOK: %s\n", fine)
		return
	}
	fmt.Fprintf(w, "\nPROBLEMS (%d)\n", len(problems))
	for _, p := range problems {
		fmt.Fprintf(w, "- %s\n", oneLine(p))
	}
}

func programmed(c Config) int {
	n := 0
	for _, s := range c.Nodes {
		if s.State == StateProgrammed {
			n++
		}
	}
	return n
}

func hasRedirects(cs []Config) bool {
	for _, c := range cs {
		if len(c.Redirects) > 0 {
			return true
		}
	}
	return false
}

func hasAnnouncements(cs []Config) bool {
	for _, c := range cs {
		if len(c.Announcements) > 0 {
			return true
		}
	}
	return false
}

func conditionCell(c *Condition) string {
	switch {
	case c == nil:
		return "-"
	case c.Status == metav1.ConditionTrue:
		return string(c.Status)
	}
	return string(c.Status) + " " + c.Reason
}

func heartbeatCell(h *Heartbeat) string {
	switch {
	case h == nil:
		return "-"
	case h.State == HeartbeatReleased:
		return "released"
	case h.RenewTime == nil:
		return h.State
	case h.State == HeartbeatLive:
		return seconds(h.AgeSeconds)
	}
	return h.State + " " + seconds(h.AgeSeconds)
}

func seconds(s float64) string { return strconv.FormatFloat(s, 'f', 1, 64) + "s" }

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// oneLine keeps a table row on one line: Envoy's NACK texts may span several.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
