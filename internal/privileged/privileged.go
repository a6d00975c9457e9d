// Package privileged gates tests that need root-only kernel features (BPF, network
// namespaces, netlink writes).
package privileged

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

// EnvRequire names the variable that turns a skip into a failure. CI sets it so that a
// missing privilege cannot silently hide the datapath tests.
const EnvRequire = "PORTICO_REQUIRE_PRIVILEGED"

// Linux capability numbers (include/uapi/linux/capability.h).
const (
	capNetAdmin = 12
	capSysAdmin = 21
	capBPF      = 39
)

// Require skips t unless the process is root with CAP_NET_ADMIN and CAP_BPF (or
// CAP_SYS_ADMIN, which implies BPF on kernels before 5.8). With PORTICO_REQUIRE_PRIVILEGED=1
// it fails instead, so a CI run without privileges is reported rather than passing.
func Require(t testing.TB) {
	t.Helper()
	reason := missing()
	if reason == "" {
		return
	}
	msg := "privileged test: " + reason + "; run as root (e.g. sudo -E go test ...)"
	if os.Getenv(EnvRequire) == "1" {
		t.Fatal(msg + " [" + EnvRequire + "=1 forbids skipping]")
	}
	t.Skip(msg)
}

// missing returns why the process is not privileged enough, or "" if it is.
func missing() string {
	if os.Geteuid() != 0 {
		return fmt.Sprintf("not running as root (euid %d)", os.Geteuid())
	}
	eff, err := effectiveCaps()
	if err != nil {
		return "cannot read capabilities: " + err.Error()
	}
	has := func(c uint) bool { return eff&(1<<c) != 0 }
	if !has(capNetAdmin) {
		return "CAP_NET_ADMIN is not in the effective set"
	}
	if !has(capBPF) && !has(capSysAdmin) {
		return "neither CAP_BPF nor CAP_SYS_ADMIN is in the effective set"
	}
	return ""
}

// effectiveCaps parses CapEff from /proc/self/status; this avoids a libcap dependency.
func effectiveCaps() (uint64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, fmt.Errorf("no CapEff line in /proc/self/status")
}
