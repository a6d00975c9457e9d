//go:build !linux

package agent

import (
	"errors"
	"regexp"

	"github.com/portico-dev/portico/nodeagent/render"
)

// errNoDatapath: the eBPF loader is Linux-only; elsewhere the agent serves xDS only,
// which is enough to develop against.
var errNoDatapath = errors.New("the eBPF datapath needs Linux")

type datapath struct{}

func newDatapath(string, *regexp.Regexp, uint32) *datapath { return &datapath{} }

func (*datapath) ensure() error                    { return errNoDatapath }
func (*datapath) sync(map[render.Key]uint16) error { return errNoDatapath }
func (*datapath) close()                           {}
func (*datapath) capacity() int                    { return 0 }
