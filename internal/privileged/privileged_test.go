package privileged

import (
	"os"
	"testing"
)

func TestEffectiveCapsParses(t *testing.T) {
	if _, err := effectiveCaps(); err != nil {
		t.Fatal(err)
	}
}

func TestRequireMatchesEnvironment(t *testing.T) {
	reason := missing()
	t.Logf("euid=%d missing=%q", os.Geteuid(), reason)
	Require(t)
	if reason != "" {
		t.Fatal("Require returned although privileges are missing")
	}
}
