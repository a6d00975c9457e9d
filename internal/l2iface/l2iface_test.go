package l2iface

import (
	"regexp"
	"testing"
)

func TestMatch(t *testing.T) {
	exclude := regexp.MustCompile(`^(veth|lxc)`)
	eth1 := []*regexp.Regexp{regexp.MustCompile(`eth1`)}
	for _, c := range []struct {
		patterns []*regexp.Regexp
		exclude  *regexp.Regexp
		name     string
		want     bool
	}{
		{nil, nil, "eth0", true},
		{nil, exclude, "veth12", false}, // no pattern: every interface but the excluded
		{eth1, nil, "veth1", true},      // unanchored: the controller alone would accept it
		{eth1, exclude, "veth1", false}, // ...and the exclusion keeps pod veths out
		{eth1, exclude, "eth1", true},
		{[]*regexp.Regexp{regexp.MustCompile(`^eth1$`)}, nil, "eth10", false},
	} {
		if got := Match(c.patterns, c.exclude, c.name); got != c.want {
			t.Errorf("Match(%v, %v, %q) = %v", c.patterns, c.exclude, c.name, got)
		}
	}
}

func TestAnchored(t *testing.T) {
	for p, want := range map[string]bool{
		`^eth1$`: true, `\Aeth1\z`: true, `^(eth1|bond0)$`: true, `^eth1$|^bond0$`: true,
		`eth1`: false, `^eth1`: false, `eth1$`: false, `^eth1$|bond0`: false, `(`: false, `^eth[0-9]+$`: true,
	} {
		if got := Anchored(p); got != want {
			t.Errorf("Anchored(%q) = %v, want %v", p, got, want)
		}
	}
}
