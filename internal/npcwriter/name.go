// Package npcwriter names, creates, updates and deletes the NodeProxyConfigs one
// producer owns. Every producer (ingress, gateway, envoyconfig, l2) writes its own
// objects and no one else's, so the writer refuses to touch an object carrying
// another producer's label.
package npcwriter

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// maxName is the length limit of an object name (a DNS subdomain).
const maxName = 253

// hashLen is the number of hex digits of the suffix that keeps truncated names apart.
const hashLen = 10

// Name is the NodeProxyConfig name for a namespaced source object:
// "<kind>.<namespace>.<name>", e.g. "ingress.default.basic-ingress" (see NameFor;
// the first label is the source's kind, lowercased, or a producer's own prefix for
// configs that have no source object of their own, like "l2.<node>").
//
// Why dots: a namespace is a DNS label and cannot contain one, so the first dot
// after the producer ends the namespace and the rest is the name. Joining with "-"
// (as Cilium's cilium-l2announce-<ns>-<svc> does) makes foo/bar-baz and
// foo-bar/baz the same object. For a cluster-scoped source pass namespace "".
//
// A name longer than 253 characters is cut and given a hash of the whole name as
// its own last label, so two long names stay distinct and the result is still a
// valid DNS subdomain (no label grows past 63 characters, none ends in "-").
func Name(prefix, namespace, name string) string {
	full := prefix + "." + name
	if namespace != "" {
		full = prefix + "." + namespace + "." + name
	}
	if len(full) <= maxName {
		return full
	}
	sum := sha256.Sum256([]byte(full))
	head := strings.TrimRight(full[:maxName-hashLen-1], ".-")
	return head + "." + hex.EncodeToString(sum[:])[:hashLen]
}
