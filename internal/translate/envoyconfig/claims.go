package envoyconfig

import (
	"sync"

	"k8s.io/apimachinery/pkg/types"
)

// PortsOf returns the ports a config's listeners bind, without the rest of the
// translation (no Services needed: only which listeners are redirect targets matters).
func PortsOf(o Object) []PortClaim {
	q := qualifier{namespace: o.Meta.GetNamespace(), config: o.Meta.GetName()}
	d, _ := decode(q, o.Spec.Resources)
	targets := map[string]bool{}
	for _, s := range o.Spec.Services {
		switch {
		case s.Listener != "":
			targets[q.forced(s.Listener)] = true
		case len(d.listeners) > 0:
			targets[d.listeners[0].GetName()] = true
		}
	}
	return portClaims(d, targets)
}

// PortCache remembers PortsOf per object generation, so that checking one config
// against thousands costs a decode of each only when it changed.
type PortCache struct {
	mu sync.Mutex
	m  map[types.UID]cachedPorts
}

type cachedPorts struct {
	generation int64
	ports      []PortClaim
}

// Claimant is o with its ports, from the cache when o's generation is known.
func (c *PortCache) Claimant(o Object) Claimant {
	uid, gen := o.Meta.GetUID(), o.Meta.GetGeneration()
	c.mu.Lock()
	e, ok := c.m[uid]
	c.mu.Unlock()
	if !ok || e.generation != gen || uid == "" {
		e = cachedPorts{generation: gen, ports: PortsOf(o)}
		c.mu.Lock()
		if c.m == nil {
			c.m = map[types.UID]cachedPorts{}
		}
		c.m[uid] = e
		c.mu.Unlock()
	}
	return o.Claimant(e.ports)
}

// Forget drops entries of objects not in keep (deleted ones).
func (c *PortCache) Forget(keep map[types.UID]bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for uid := range c.m {
		if !keep[uid] {
			delete(c.m, uid)
		}
	}
}
