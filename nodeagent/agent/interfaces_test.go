package agent

import (
	"regexp"
	"slices"
	"testing"
)

func TestReportedInterfaces(t *testing.T) {
	names := []string{"bond0", "cali12ab", "cilium_host", "eno1", "eth1", "flannel.1", "lxc9f3e", "veth1234", "vxlan.calico"}
	got := reportedInterfaces(names, regexp.MustCompile(DefaultInterfaceReportExclude))
	if want := []string{"bond0", "eno1", "eth1"}; !slices.Equal(got, want) {
		t.Fatalf("reported %v, want %v", got, want)
	}
	if got := reportedInterfaces(names, nil); !slices.Equal(got, names) {
		t.Fatalf("without an exclude pattern reported %v, want every interface", got)
	}
}
