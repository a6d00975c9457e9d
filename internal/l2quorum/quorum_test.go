package l2quorum

import (
	"testing"
	"time"
)

func TestVotersAndQuorum(t *testing.T) {
	for _, c := range []struct{ agents, voters, quorum int }{
		{1, 1, 1}, {2, 3, 2}, {3, 3, 2}, {4, 5, 3}, {5, 5, 3}, {100, 101, 51},
	} {
		if v := Voters(c.agents); v != c.voters || Quorum(v) != c.quorum {
			t.Errorf("%d agents: voters %d quorum %d, want %d %d", c.agents, v, Quorum(v), c.voters, c.quorum)
		}
	}
}

func TestValidUntilCountsTheQuorumFromSendTimes(t *testing.T) {
	t0 := time.Unix(1000, 0)
	w := 400 * time.Millisecond
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	// Three agents: one other ack makes a quorum; the freshest one counts.
	got := ValidUntil(Acks{Agents: map[string]time.Time{"b": at(100), "c": at(300)}}, 3, w, t0)
	if !got.Equal(at(700)) {
		t.Errorf("3 agents: %v", got.Sub(t0))
	}
	// Five agents: two others needed; the second freshest bounds it.
	got = ValidUntil(Acks{Agents: map[string]time.Time{"b": at(100), "c": at(300), "d": at(200)}}, 5, w, t0)
	if !got.Equal(at(600)) {
		t.Errorf("5 agents: %v", got.Sub(t0))
	}
	// Not enough acks: no validity at all.
	if got := ValidUntil(Acks{Agents: map[string]time.Time{"b": at(100)}}, 5, w, t0); !got.IsZero() {
		t.Errorf("1 of 2 needed: %v", got)
	}
	// Two agents: the controller is the tie-breaker; either it or the peer suffices.
	if got := ValidUntil(Acks{Controller: at(50)}, 2, w, t0); !got.Equal(at(450)) {
		t.Errorf("2 agents, controller ack: %v", got.Sub(t0))
	}
	// Three agents: the controller does not vote, its ack is worth nothing.
	if got := ValidUntil(Acks{Controller: at(50)}, 3, w, t0); !got.IsZero() {
		t.Errorf("3 agents, controller ack only: %v", got)
	}
	// A single agent is its own quorum.
	if got := ValidUntil(Acks{}, 1, w, at(900)); !got.Equal(at(1300)) {
		t.Errorf("1 agent: %v", got)
	}
}

func TestFenceNeedsARefreshAfterEveryLapse(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	f := NewFence(0)
	if f.Answering(t0) {
		t.Fatal("a new fence answers")
	}
	if _, ok := f.Begin(t0); ok {
		t.Fatal("a refresh may not begin without a quorum")
	}
	f.Extend(at(0), at(400))
	if f.Answering(at(1)) {
		t.Fatal("answers before its first refresh")
	}
	e, ok := f.Begin(at(10))
	if !ok || !f.Refreshed(e, at(20)) || !f.Answering(at(30)) {
		t.Fatal("refresh with a quorum must lift the fence")
	}
	// Renewed in time: no lapse, no refresh needed.
	f.Extend(at(300), at(700))
	if !f.Answering(at(650)) {
		t.Fatal("fenced while renewed")
	}
	// Lapse: fenced at once, and regaining the quorum is not enough.
	if f.Answering(at(700)) {
		t.Fatal("answers at the end of its validity")
	}
	f.Extend(at(900), at(1300))
	if f.Answering(at(901)) || !f.Stale(at(901)) {
		t.Fatal("answers its stale set after regaining the quorum")
	}
	// A refresh that began before another lapse does not count.
	e, _ = f.Begin(at(1000))
	f.Extend(at(1400), at(1800)) // lapsed between 1300 and 1400
	if f.Refreshed(e, at(1401)) {
		t.Fatal("a refresh spanning a lapse lifted the fence")
	}
	e, _ = f.Begin(at(1402))
	if !f.Refreshed(e, at(1410)) || !f.Answering(at(1411)) {
		t.Fatal("a clean refresh did not lift the fence")
	}
}

func TestFenceLapseUnobservedUntilExtendStillCounts(t *testing.T) {
	t0 := time.Unix(1000, 0)
	f := NewFence(0)
	f.Extend(t0, t0.Add(time.Second))
	e, _ := f.Begin(t0)
	f.Refreshed(e, t0)
	// Nobody asked during the gap [1 s, 2 s]; the next extension must still see it.
	f.Extend(t0.Add(2*time.Second), t0.Add(3*time.Second))
	if f.Answering(t0.Add(2 * time.Second)) {
		t.Fatal("a lapse nobody observed was forgiven")
	}
}

func TestDecideBelievesDeathsOnlyWithAQuorum(t *testing.T) {
	m := func(name string, s MemberState) Member { return Member{Name: name, State: s, Ready: true} }
	ctrl := Member{Name: "ctrl", Controller: true}
	// 3 agents, one dead, two alive: quorum, the death counts.
	got, frozen := Decide([]Member{m("a", Alive), m("b", Suspect), m("c", Dead), ctrl}, nil)
	if frozen || !got["a"].Live || !got["b"].Live || got["c"].Live || got["c"].Why != DownDead {
		t.Errorf("3 agents: %v frozen=%v", got, frozen)
	}
	// 3 agents, two dead: the controller is the one cut off; nobody it knew live dies.
	prev := map[string]Verdict{"a": {Live: true}, "b": {Live: true}, "c": {Live: true}}
	got, frozen = Decide([]Member{m("a", Alive), m("b", Dead), m("c", Dead), ctrl}, prev)
	if !frozen || !got["b"].Live || !got["c"].Live {
		t.Errorf("minority view: %v frozen=%v", got, frozen)
	}
	// Two agents, one dead: the survivor plus the controller are a quorum.
	got, frozen = Decide([]Member{m("a", Alive), m("b", Dead), ctrl}, prev)
	if frozen || got["b"].Live || !got["a"].Live {
		t.Errorf("two agents: %v frozen=%v", got, frozen)
	}
	// A graceful leave counts even when frozen; a member not ready is not live.
	got, _ = Decide([]Member{m("a", Dead), m("b", Dead), m("c", Left), {Name: "d", State: Alive}, ctrl}, prev)
	if got["c"].Live || got["c"].Why != DownLeft || got["d"].Live || got["d"].Why != DownNotReady {
		t.Errorf("left / not ready: %v", got)
	}
}

func TestDefaultTimingIsSafe(t *testing.T) {
	if !DefaultTiming.Safe(300 * time.Millisecond) {
		t.Fatalf("default timing fences %v after the last good round, death is declared %v after it at the earliest",
			DefaultTiming.Window, DefaultTiming.MinDeathDeclaration())
	}
}

func TestSetHashIgnoresOrderAndDuplicates(t *testing.T) {
	if SetHash([]string{"10.0.0.1", "10.0.0.2"}) != SetHash([]string{"10.0.0.2", "10.0.0.1", "10.0.0.2"}) {
		t.Error("order or duplicates changed the hash")
	}
	if SetHash(nil) == SetHash([]string{"10.0.0.1"}) {
		t.Error("empty and non-empty sets collide")
	}
}

// A short lapse (a CPU stall, a lost round) leaves a fresh set fresh; a long one, long
// enough for the node to have been declared dead, does not.
func TestFenceForgivesLapsesShorterThanADeathDeclaration(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	f := NewFence(500 * time.Millisecond)
	f.Extend(at(0), at(400))
	e, _ := f.Begin(at(0))
	f.Refreshed(e, at(0))
	if f.Answering(at(450)) {
		t.Fatal("answers during the lapse")
	}
	f.Extend(at(450), at(850)) // rounds 450 ms apart: forgiven
	if !f.Answering(at(451)) {
		t.Fatal("a short lapse needed a refresh")
	}
	f.Extend(at(1500), at(1900)) // 1050 ms since the last good round: not forgiven
	if f.Answering(at(1501)) || !f.Stale(at(1501)) {
		t.Fatal("a long lapse was forgiven")
	}
	// A stale set stays stale however short the next lapse.
	f.Extend(at(1950), at(2350))
	if f.Answering(at(1951)) {
		t.Fatal("a stale set became fresh by itself")
	}
}
