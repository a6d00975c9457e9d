// Package l2iface decides whether an address may be announced on an interface, one way
// for everyone: the L2 controller deciding which nodes are eligible under a policy and
// the agent's ARP/NDP responder deciding where to answer call the same Match, so a node
// is never assigned an address it would not answer, nor answers where the policy does
// not allow it (issue 10 §3).
package l2iface

import (
	"regexp"
	"regexp/syntax"
)

// Match reports whether name may carry an announcement whose policy lists patterns:
// never when exclude matches it (the agent's --interface-report-exclude: pod veths,
// tunnels; the controller passes nil because the agents already left those out of
// what they report), always when the policy lists none, else when any pattern matches.
// Patterns are RE2 and unanchored, as in Go's MatchString: "eth1" also matches
// "veth1", which is why the webhook warns about unanchored patterns.
func Match(patterns []*regexp.Regexp, exclude *regexp.Regexp, name string) bool {
	if exclude != nil && exclude.MatchString(name) {
		return false
	}
	if len(patterns) == 0 {
		return true
	}
	for _, re := range patterns {
		if re.MatchString(name) {
			return true
		}
	}
	return false
}

// Anchored reports whether a pattern can only match whole names: every alternative
// starts with ^ (or \A) and ends with $ (or \z). An unparsable pattern is not anchored.
func Anchored(pattern string) bool {
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return false
	}
	return anchored(re.Simplify())
}

func anchored(re *syntax.Regexp) bool {
	switch re.Op {
	case syntax.OpAlternate:
		for _, s := range re.Sub {
			if !anchored(s) {
				return false
			}
		}
		return len(re.Sub) > 0
	case syntax.OpCapture:
		return anchored(re.Sub[0])
	case syntax.OpConcat:
		if len(re.Sub) < 2 {
			return false
		}
		return isBegin(re.Sub[0]) && isEnd(re.Sub[len(re.Sub)-1])
	}
	return false
}

func isBegin(re *syntax.Regexp) bool {
	return re.Op == syntax.OpBeginText || re.Op == syntax.OpBeginLine
}

func isEnd(re *syntax.Regexp) bool {
	return re.Op == syntax.OpEndText || re.Op == syntax.OpEndLine
}
