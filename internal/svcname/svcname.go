// Package svcname names the LoadBalancer Services producers create for their
// objects (a dedicated Ingress, a Gateway). Service names are DNS-1035 labels (63
// characters, no dots) while Ingress and Gateway names are DNS subdomains, so one
// rule, shared by every producer, decides how a long or dotted name is made to fit
// without two objects ever landing on one Service.
package svcname

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// For is prefix+name when that is a DNS-1035 label; otherwise it is cut, its dots
// replaced, and 8 hex digits of a hash of the whole name appended.
func For(prefix, name string) string {
	n := prefix + name
	if len(validation.IsDNS1035Label(n)) == 0 {
		return n
	}
	sum := sha256.Sum256([]byte(name))
	head := strings.ReplaceAll(n, ".", "-")
	if len(head) > 63-9 {
		head = head[:63-9]
	}
	return strings.TrimRight(head, "-") + "-" + hex.EncodeToString(sum[:])[:8]
}
