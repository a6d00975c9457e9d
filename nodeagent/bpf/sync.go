//go:build linux

package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
)

// Protocol numbers accepted in Key.Proto.
const (
	ProtoTCP uint8 = 6
	// ProtoUDP entries are stored, but the program redirects TCP only for now.
	ProtoUDP uint8 = 17
)

const (
	familyInet  = 2
	familyInet6 = 10
)

// Key is a frontend that the datapath redirects: destination address, port and
// protocol. IPv4-mapped IPv6 addresses are treated as IPv4.
type Key struct {
	Addr  netip.Addr
	Port  uint16
	Proto uint8
}

func (k Key) String() string {
	return fmt.Sprintf("%s/%d", netip.AddrPortFrom(k.Addr, k.Port), k.Proto)
}

// Sync makes the redirect map equal to desired (Key → proxy port) by applying only the
// difference: entries that are already right are not touched, so packets in flight
// never see a gap. Deletions run first so that a nearly full map can still take the
// additions. The counts report what was done, also when an error stops Sync halfway.
func (d *Datapath) Sync(desired map[Key]uint16) (added, updated, removed int, err error) {
	want := make(map[redirectRedirectKey]uint16, len(desired))
	for k, port := range desired {
		rk, err := encodeKey(k)
		if err != nil {
			return 0, 0, 0, err
		}
		if port == 0 {
			return 0, 0, 0, fmt.Errorf("redirect %s: proxy port 0", k)
		}
		want[rk] = port
	}
	if n := uint32(len(want)); n > d.objs.Redirects.MaxEntries() {
		return 0, 0, 0, fmt.Errorf("%d redirects do not fit the map (capacity %d)", n, d.objs.Redirects.MaxEntries())
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	have, err := d.rawEntries()
	if err != nil {
		return 0, 0, 0, err
	}
	for rk := range have {
		if _, ok := want[rk]; ok {
			continue
		}
		if err := d.objs.Redirects.Delete(rk); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return added, updated, removed, fmt.Errorf("delete %s: %w", decodeKey(rk), err)
		}
		removed++
	}
	for rk, port := range want {
		cur, ok := have[rk]
		if ok && cur == port {
			continue
		}
		v := redirectRedirectValue{ProxyPort: port}
		if err := d.objs.Redirects.Update(rk, v, ebpf.UpdateAny); err != nil {
			return added, updated, removed, fmt.Errorf("put %s: %w", decodeKey(rk), err)
		}
		if ok {
			updated++
		} else {
			added++
		}
	}
	return added, updated, removed, nil
}

// Entries returns the redirect map's current content.
func (d *Datapath) Entries() (map[Key]uint16, error) {
	raw, err := d.rawEntries()
	if err != nil {
		return nil, err
	}
	out := make(map[Key]uint16, len(raw))
	for rk, port := range raw {
		out[decodeKey(rk)] = port
	}
	return out, nil
}

func (d *Datapath) rawEntries() (map[redirectRedirectKey]uint16, error) {
	out := make(map[redirectRedirectKey]uint16)
	var (
		k redirectRedirectKey
		v redirectRedirectValue
	)
	it := d.objs.Redirects.Iterate()
	for it.Next(&k, &v) {
		out[k] = v.ProxyPort
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read redirect map: %w", err)
	}
	return out, nil
}

func encodeKey(k Key) (redirectRedirectKey, error) {
	a := k.Addr.Unmap()
	if !a.IsValid() || a.IsUnspecified() {
		return redirectRedirectKey{}, fmt.Errorf("redirect %s: need a specific address", k)
	}
	if k.Port == 0 {
		return redirectRedirectKey{}, fmt.Errorf("redirect %s: port 0", k)
	}
	if k.Proto != ProtoTCP && k.Proto != ProtoUDP {
		return redirectRedirectKey{}, fmt.Errorf("redirect %s: protocol %d is neither TCP nor UDP", k, k.Proto)
	}
	// As16 of an IPv4 address is the v4-mapped form the program builds from packets.
	rk := redirectRedirectKey{Addr: a.As16(), Port: networkOrder(k.Port), Proto: k.Proto, Family: familyInet6}
	if a.Is4() {
		rk.Family = familyInet
	}
	return rk, nil
}

func decodeKey(rk redirectRedirectKey) Key {
	a := netip.AddrFrom16(rk.Addr)
	if rk.Family == familyInet {
		a = a.Unmap()
	}
	return Key{Addr: a, Port: networkOrder(rk.Port), Proto: rk.Proto}
}

// networkOrder converts between host order and the __be16 the program compares with
// the TCP header; the conversion is its own inverse.
func networkOrder(p uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], p)
	return binary.NativeEndian.Uint16(b[:])
}
