package l2quorum

import "time"

// MemberState is a member's state as memberlist reports it.
type MemberState int

// Member states. Suspect still counts as alive: memberlist has not concluded, and the
// node may be answering.
const (
	Alive MemberState = iota
	Suspect
	Dead
	Left
)

// Member is one member of the cluster as the controller sees it.
type Member struct {
	Name       string
	Controller bool
	State      MemberState
	// Ready is false while an agent has not yet synced its caches (it cannot answer for
	// what would be assigned to it).
	Ready bool
	// Hash is SetHash of the addresses the agent applied; Applied is false before the
	// agent published one.
	Hash    uint64
	Applied bool
}

// Why a node is not live, in Events and conditions ("announced by n2 (was n1: ...)").
const (
	DownDead     = "agent declared dead by its peers (memberlist)"
	DownLeft     = "agent left the cluster (stopped)"
	DownNotReady = "agent not ready (caches not synced)"
	DownUnknown  = "no agent in the memberlist cluster"
)

// Verdict is a node's liveness for assignment.
type Verdict struct {
	Live bool
	Why  string
}

// Decide turns the controller's view of the members into liveness per node. A node is
// live when its agent is alive or suspect and ready. Deaths are believed only while the
// controller itself sees a quorum (the agents it sees alive, plus its own vote when it is
// the tie-breaker): otherwise the controller is the one cut off, and a node that was
// live in prev stays live. Graceful leaves are believed always: the agent said so itself,
// after it stopped answering. frozen reports that deaths were ignored.
func Decide(members []Member, prev map[string]Verdict) (out map[string]Verdict, frozen bool) {
	agents, alive := 0, 0
	for _, m := range members {
		if m.Controller || m.State == Left {
			continue
		}
		agents++
		if m.State == Alive || m.State == Suspect {
			alive++
		}
	}
	votes := alive
	if ControllerVotes(agents) {
		votes++
	}
	frozen = agents > 0 && votes < Quorum(Voters(agents))
	out = make(map[string]Verdict, len(members))
	for _, m := range members {
		if m.Controller {
			continue
		}
		var v Verdict
		switch {
		case m.State == Left:
			v.Why = DownLeft
		case m.State == Dead:
			v.Why = DownDead
			if frozen && prev[m.Name].Live {
				v = prev[m.Name]
			}
		case !m.Ready:
			v.Why = DownNotReady
		default:
			v.Live = true
		}
		out[m.Name] = v
	}
	return out, frozen
}

// Timing are the memberlist and quorum timings; both sides must agree.
type Timing struct {
	// ProbeInterval, ProbeTimeout, SuspicionMult and SuspicionMaxTimeoutMult are
	// memberlist's failure-detector settings.
	ProbeInterval, ProbeTimeout time.Duration
	SuspicionMult               int
	SuspicionMaxTimeoutMult     int
	// PingInterval is how often an announcing agent pings the voters; Window how long
	// after a ping round that reached a quorum it keeps answering.
	PingInterval, Window time.Duration
}

// DefaultTiming gives kill -9 failover of about 0.8 s (a failed probe, 0.6 s of
// suspicion, the reassignment) and fences a node cut off from everyone 0.4 s after its
// last good ping round, at least 0.4 s before memberlist can declare it dead.
var DefaultTiming = Timing{
	ProbeInterval: 200 * time.Millisecond, ProbeTimeout: 100 * time.Millisecond,
	SuspicionMult: 3, SuspicionMaxTimeoutMult: 2,
	PingInterval: 100 * time.Millisecond, Window: 400 * time.Millisecond,
}

// MinDeathDeclaration is the earliest memberlist can declare a node dead after the last
// moment it could still be reached: a probe that fails ends an interval after it
// started (direct, then indirect pings), then suspicion lasts at least SuspicionMult
// intervals (more on clusters above 10 members).
func (t Timing) MinDeathDeclaration() time.Duration {
	return t.ProbeInterval + time.Duration(t.SuspicionMult)*t.ProbeInterval
}

// Forgive is the longest gap between two ping rounds that reached a quorum after which
// an agent's set is still fresh (Fence): margin short of the earliest death declaration.
func (t Timing) Forgive(margin time.Duration) time.Duration {
	return t.MinDeathDeclaration() - margin
}

// Safe reports whether a cut-off agent fences itself with at least margin to spare
// before it can be declared dead.
func (t Timing) Safe(margin time.Duration) bool {
	return t.Window+margin <= t.MinDeathDeclaration() && t.PingInterval < t.Window && t.ProbeTimeout < t.ProbeInterval
}
