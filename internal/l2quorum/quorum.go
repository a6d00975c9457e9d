// Package l2quorum holds the decisions that let L2 announcements survive a control-plane
// outage without two nodes ever answering for one address, with no network and no
// clock: callers pass the membership they see and the time.
//
// The rule (docs/architecture.md states it for users):
//   - Voters are the node agents in the memberlist cluster (alive, suspect or dead; an
//     agent that left gracefully no longer votes), plus the L2 controller as a
//     tie-breaker when the number of agents is even, so that a quorum always exists
//     and two halves can never both hold one. With two nodes, the survivor and the
//     controller are the quorum.
//   - An agent answers only while a quorum has acknowledged its pings recently
//     (ValidUntil) and, after any lapse, only once it has re-read its assignment from the
//     apiserver (Fence). Losing the apiserver alone therefore silences nobody.
//   - The controller believes a death (memberlist's verdict, gossiped to every member)
//     only while it sees a quorum itself (View): a controller cut off from the agents
//     does not declare them all dead and empty the assignment.
//
// Timing is what makes "the old owner is silent before the new one answers" hold for a
// node cut off from everyone: an agent stops at most Window after the last ping round
// that reached a quorum, and memberlist cannot declare it dead sooner than a probe
// timeout plus the minimum suspicion time after that round (see MinDeathDeclaration).
package l2quorum

import (
	"hash/fnv"
	"slices"
	"time"
)

// Voters is the number of votes of a cluster with agents node agents: the agents, and
// the controller when their number is even.
func Voters(agents int) int {
	if agents%2 == 0 {
		return agents + 1
	}
	return agents
}

// Quorum is the smallest majority of voters.
func Quorum(voters int) int { return voters/2 + 1 }

// ControllerVotes reports whether the controller is a voter in a cluster of agents.
func ControllerVotes(agents int) bool { return agents%2 == 0 }

// Acks are, per peer, the send time of the latest ping that peer acknowledged.
// Controller is the controller's entry (zero when none acknowledged).
type Acks struct {
	Agents     map[string]time.Time
	Controller time.Time
}

// ValidUntil is the time until which an agent of a cluster with agents agents (itself
// included) may answer, given the acknowledgements it got: the send time of the ping
// that completed its most recent quorum, plus window. The send time, not the ack's
// arrival, because the partition may start right after the ping left: all the agent
// knows is that the path worked at some moment after it sent the ping. A single agent
// is its own quorum, renewed at every call (now), so that it lapses as soon as a second
// agent joins and is not pinged.
func ValidUntil(acks Acks, agents int, window time.Duration, now time.Time) time.Time {
	need := Quorum(Voters(agents)) - 1 // the agent votes for itself
	if need <= 0 {
		return now.Add(window)
	}
	times := make([]time.Time, 0, len(acks.Agents)+1)
	for _, t := range acks.Agents {
		if !t.IsZero() {
			times = append(times, t)
		}
	}
	if ControllerVotes(agents) && !acks.Controller.IsZero() {
		times = append(times, acks.Controller)
	}
	if len(times) < need {
		return time.Time{}
	}
	slices.SortFunc(times, func(a, b time.Time) int { return b.Compare(a) })
	return times[need-1].Add(window)
}

// SetHash summarises a set of announced addresses (in any order) so that an agent can
// publish in its memberlist metadata which set it applied, and the controller can tell
// that a node let go of an address before giving it to another.
func SetHash(ips []string) uint64 {
	s := slices.Clone(ips)
	slices.Sort(s)
	s = slices.Compact(s)
	h := fnv.New64a()
	for _, ip := range s {
		_, _ = h.Write([]byte(ip))
		_, _ = h.Write([]byte{0})
	}
	return h.Sum64()
}
