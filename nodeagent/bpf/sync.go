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

// Sync makes the redirect maps equal to desired (Key → proxy port) by applying only
// the difference: entries that are already right are not touched, so packets in flight
// never see a gap. Deletions run first so that a nearly full map can still take the
// additions. The counts report what was done, also when an error stops Sync halfway;
// IPv4 entries that an older release left in the IPv6 map count as removed.
func (d *Datapath) Sync(desired map[Key]uint16) (added, updated, removed int, err error) {
	want4 := make(map[redirectRedirectKey4]uint16)
	want6 := make(map[redirectRedirectKey]uint16)
	for k, port := range desired {
		if err := validKey(k); err != nil {
			return 0, 0, 0, err
		}
		if port == 0 {
			return 0, 0, 0, fmt.Errorf("redirect %s: proxy port 0", k)
		}
		if k.Addr.Unmap().Is4() {
			want4[encodeKey4(k)] = port
		} else {
			want6[encodeKey(k)] = port
		}
	}
	for _, n := range []int{len(want4), len(want6)} {
		if uint32(n) > d.MaxEntries() {
			return 0, 0, 0, fmt.Errorf("%d redirects of one address family do not fit the map (capacity %d)", n, d.MaxEntries())
		}
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	have4, err := rawEntries[redirectRedirectKey4](d.objs.Redirects4)
	if err != nil {
		return 0, 0, 0, err
	}
	have6, err := rawEntries[redirectRedirectKey](d.objs.Redirects)
	if err != nil {
		return 0, 0, 0, err
	}
	var a, u, r int
	a, u, r, err = syncMap(d.objs.Redirects4, have4, want4, decodeKey4)
	added, updated, removed = added+a, updated+u, removed+r
	if err != nil {
		return added, updated, removed, err
	}
	a, u, r, err = syncMap(d.objs.Redirects, have6, want6, decodeKey)
	return added + a, updated + u, removed + r, err
}

func syncMap[K comparable](m *ebpf.Map, have, want map[K]uint16, decode func(K) Key) (added, updated, removed int, err error) {
	for rk := range have {
		if _, ok := want[rk]; ok {
			continue
		}
		if err := m.Delete(rk); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return added, updated, removed, fmt.Errorf("delete %s: %w", decode(rk), err)
		}
		removed++
	}
	for rk, port := range want {
		cur, ok := have[rk]
		if ok && cur == port {
			continue
		}
		v := redirectRedirectValue{ProxyPort: port}
		if err := m.Update(rk, v, ebpf.UpdateAny); err != nil {
			return added, updated, removed, fmt.Errorf("put %s: %w", decode(rk), err)
		}
		if ok {
			updated++
		} else {
			added++
		}
	}
	return added, updated, removed, nil
}

// Entries returns the redirects the program serves.
func (d *Datapath) Entries() (map[Key]uint16, error) {
	raw4, err := rawEntries[redirectRedirectKey4](d.objs.Redirects4)
	if err != nil {
		return nil, err
	}
	raw6, err := rawEntries[redirectRedirectKey](d.objs.Redirects)
	if err != nil {
		return nil, err
	}
	out := make(map[Key]uint16, len(raw4)+len(raw6))
	for rk, port := range raw4 {
		out[decodeKey4(rk)] = port
	}
	for rk, port := range raw6 {
		// IPv4 entries left by an older release are copies of raw4's (migrateIPv4)
		// that the program no longer reads.
		if rk.Family == familyInet6 {
			out[decodeKey(rk)] = port
		}
	}
	return out, nil
}

func rawEntries[K comparable](m *ebpf.Map) (map[K]uint16, error) {
	out := make(map[K]uint16)
	var (
		k K
		v redirectRedirectValue
	)
	it := m.Iterate()
	for it.Next(&k, &v) {
		out[k] = v.ProxyPort
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read redirect map: %w", err)
	}
	return out, nil
}

func validKey(k Key) error {
	a := k.Addr.Unmap()
	if !a.IsValid() || a.IsUnspecified() {
		return fmt.Errorf("redirect %s: need a specific address", k)
	}
	if k.Port == 0 {
		return fmt.Errorf("redirect %s: port 0", k)
	}
	if k.Proto != ProtoTCP && k.Proto != ProtoUDP {
		return fmt.Errorf("redirect %s: protocol %d is neither TCP nor UDP", k, k.Proto)
	}
	return nil
}

// encodeKey4 builds the IPv4 map's key; k must have passed validKey and be IPv4.
func encodeKey4(k Key) redirectRedirectKey4 {
	a := k.Addr.Unmap().As4()
	// The program copies the address from the packet as is: network order in memory.
	return redirectRedirectKey4{Addr: binary.NativeEndian.Uint32(a[:]), Port: networkOrder(k.Port), Proto: k.Proto}
}

func decodeKey4(rk redirectRedirectKey4) Key {
	var a [4]byte
	binary.NativeEndian.PutUint32(a[:], rk.Addr)
	return Key{Addr: netip.AddrFrom4(a), Port: networkOrder(rk.Port), Proto: rk.Proto}
}

// encodeKey builds the IPv6 map's key; k must have passed validKey and be IPv6.
func encodeKey(k Key) redirectRedirectKey {
	return redirectRedirectKey{Addr: k.Addr.As16(), Port: networkOrder(k.Port), Proto: k.Proto, Family: familyInet6}
}

// decodeKey also reads the v4-mapped IPv4 keys of releases before redirects4.
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
