//go:build linux

package routing

import (
	"errors"
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// NoTrackTable is the nftables table (family inet) holding the notrack rule.
const NoTrackTable = "portico"

// EnsureNoTrack installs, in the calling thread's network namespace:
//
//	table inet portico {
//	  chain prerouting { type filter hook prerouting priority raw; meta mark & 0xf00 == 0x200 notrack }
//	}
//
// Why: a packet the TC program handed to the proxy still crosses netfilter before it
// is delivered, and kube-proxy DNATs a ClusterIP (or external, or load balancer IP of
// a plain Service) in nat PREROUTING to one of its endpoints. The assigned socket would
// then see a destination it does not own: the handshake completes under the endpoint's
// address, and every later packet of the flow, which the program looks up under the
// VIP, reaches the listener and is reset. Untracked packets skip the nat table, so
// kube-proxy never sees the redirected flows; everything else, unmarked, keeps its
// path through kube-proxy unchanged. (Cilium's agent installs the same rule for its
// proxy mark in iptables' raw table.) A table of our own, replaced in one
// transaction, leaves kube-proxy's tables alone and is idempotent.
func EnsureNoTrack() error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("routing: nftables: %w", err)
	}
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: NoTrackTable})
	ch := c.AddChain(&nftables.Chain{
		Name: "prerouting", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRaw,
	})
	c.FlushChain(ch)
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(Mask), Xor: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(Mark)},
		&expr.Notrack{},
	}})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("routing: install nftables table inet %s (notrack of redirected packets): %w", NoTrackTable, err)
	}
	return nil
}

// RemoveNoTrack deletes the table EnsureNoTrack installed; a missing table is not an error.
func RemoveNoTrack() error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("routing: nftables: %w", err)
	}
	c.DelTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: NoTrackTable})
	if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("routing: delete nftables table inet %s: %w", NoTrackTable, err)
	}
	return nil
}
