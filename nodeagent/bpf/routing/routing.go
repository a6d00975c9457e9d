//go:build linux

// Package routing installs the policy routing that the redirect datapath relies on.
// The TC program leaves the packet's destination (the VIP) untouched and only marks it;
// without a local route for that mark the kernel would forward or drop the packet
// before the assigned proxy socket ever sees it.
package routing

import (
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// These values match the datapath program (and Cilium's to-proxy mark and table, so a
// node running both agrees on their meaning).
const (
	Mark  uint32 = 0x200
	Mask  uint32 = 0xf00
	Table        = 2004
	// Priority places the rule after the "local" table (pref 0), which has no route for
	// the VIP, and before "main" (pref 32766), which would route it away.
	Priority = 9
)

// EnsureRouting installs, in the calling thread's network namespace, for IPv4 and IPv6:
//
//	ip rule add pref 9 fwmark 0x200/0xf00 lookup 2004
//	ip route replace local 0.0.0.0/0 dev lo table 2004   (local ::/0 for IPv6)
//
// It is idempotent: existing equivalent rules are kept, routes are replaced in place.
func EnsureRouting() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("routing: find lo: %w", err)
	}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		if err := ensureRule(fam); err != nil {
			return err
		}
		if err := netlink.RouteReplace(localRoute(fam, lo.Attrs().Index)); err != nil {
			return fmt.Errorf("routing: replace %s local default route in table %d: %w", famName(fam), Table, err)
		}
	}
	return nil
}

// RemoveRouting deletes what EnsureRouting installed; missing pieces are not an error.
func RemoveRouting() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("routing: find lo: %w", err)
	}
	var errs []error
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rules, err := ourRules(fam)
		if err != nil {
			errs = append(errs, err)
		}
		for i := range rules {
			if err := netlink.RuleDel(&rules[i]); err != nil && !isNotFound(err) {
				errs = append(errs, fmt.Errorf("routing: delete %s rule: %w", famName(fam), err))
			}
		}
		if err := netlink.RouteDel(localRoute(fam, lo.Attrs().Index)); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("routing: delete %s local route: %w", famName(fam), err))
		}
	}
	return errors.Join(errs...)
}

func ensureRule(fam int) error {
	rules, err := ourRules(fam)
	if err != nil {
		return err
	}
	if len(rules) > 0 {
		return nil
	}
	r := newRule(fam)
	if err := netlink.RuleAdd(r); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("routing: add %s rule fwmark %#x/%#x lookup %d: %w", famName(fam), Mark, Mask, Table, err)
	}
	return nil
}

func newRule(fam int) *netlink.Rule {
	r := netlink.NewRule()
	r.Family = fam
	r.Priority = Priority
	r.Mark = Mark
	mask := Mask
	r.Mask = &mask
	r.Table = Table
	return r
}

// ourRules matches on mark, mask and table only, so a rule added by hand (or by an
// earlier version with another priority) is recognised rather than duplicated.
func ourRules(fam int) ([]netlink.Rule, error) {
	all, err := netlink.RuleList(fam)
	if err != nil {
		return nil, fmt.Errorf("routing: list %s rules: %w", famName(fam), err)
	}
	var out []netlink.Rule
	for _, r := range all {
		if r.Table == Table && r.Mark == Mark && r.Mask != nil && *r.Mask == Mask {
			out = append(out, r)
		}
	}
	return out, nil
}

func localRoute(fam, loIndex int) *netlink.Route {
	dst := &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
	if fam == netlink.FAMILY_V6 {
		dst = &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
	}
	return &netlink.Route{
		Family:    fam,
		Dst:       dst,
		LinkIndex: loIndex,
		Table:     Table,
		Type:      unix.RTN_LOCAL,
		Scope:     netlink.SCOPE_HOST,
	}
}

func isNotFound(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH)
}

func famName(fam int) string {
	if fam == netlink.FAMILY_V6 {
		return "IPv6"
	}
	return "IPv4"
}
