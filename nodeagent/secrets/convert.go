// Package secrets gives the node agent the Kubernetes Secrets that the configs it
// applies list in spec.envoy.secrets, and turns them into the SDS secrets Envoy
// fetches under the same names.
//
// The agent reads no other Secret: Watcher watches each listed Secret on its own
// (a list and watch with a metadata.name field selector, as the kubelet does for the
// Secrets its pods mount), so a node never holds the cluster's Secrets in memory,
// and a config that lists nothing costs nothing.
package secrets

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	corev1 "k8s.io/api/core/v1"

	"github.com/portico-dev/portico/apis/v1alpha1"
)

// CASuffix names the validation context served for a Secret that holds both a
// key pair and a CA bundle: "<namespace>/<name>" is the certificate and
// "<namespace>/<name>/ca.crt" the CA. A Secret with only ca.crt is served as a
// validation context under its own name, as Cilium does.
const CASuffix = "/ca.crt"

// Problem says why a Secret cannot be served.
type Problem struct {
	Reason  v1alpha1.ConditionReason
	Message string
}

func (p *Problem) Error() string { return p.Message }

// FromKube turns the Secret listed as ref ("<namespace>/<name>") into the SDS
// secrets served for it. s is nil when the Secret does not exist. Only what Envoy
// would refuse is refused here, with the key named: a certificate and key that do
// not form a pair, a CA bundle with no certificate in it.
func FromKube(ref string, s *corev1.Secret) ([]*tlsv3.Secret, *Problem) {
	if s == nil {
		return nil, &Problem{v1alpha1.ReasonSecretNotFound, fmt.Sprintf("Secret %s not found", ref)}
	}
	crt, key, ca := s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey], s.Data["ca.crt"]
	var out []*tlsv3.Secret
	switch {
	case len(crt) > 0 || len(key) > 0:
		if _, err := tls.X509KeyPair(crt, key); err != nil {
			return nil, &Problem{v1alpha1.ReasonInvalidSecret, fmt.Sprintf("Secret %s: tls.crt and tls.key are not a valid key pair: %v", ref, err)}
		}
		out = append(out, &tlsv3.Secret{Name: ref, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: inline(crt),
			PrivateKey:       inline(key),
		}}})
		if len(ca) > 0 {
			if err := checkCA(ca); err != nil {
				return nil, &Problem{v1alpha1.ReasonInvalidSecret, fmt.Sprintf("Secret %s: ca.crt: %v", ref, err)}
			}
			out = append(out, validationContext(ref+CASuffix, ca))
		}
	case len(ca) > 0:
		if err := checkCA(ca); err != nil {
			return nil, &Problem{v1alpha1.ReasonInvalidSecret, fmt.Sprintf("Secret %s: ca.crt: %v", ref, err)}
		}
		out = append(out, validationContext(ref, ca))
	default:
		return nil, &Problem{v1alpha1.ReasonInvalidSecret, fmt.Sprintf("Secret %s has neither tls.crt and tls.key nor ca.crt", ref)}
	}
	return out, nil
}

// Names are the SDS names FromKube can serve for ref, so that a reference to
// either can be traced back to the listed Secret.
func Names(ref string) []string { return []string{ref, ref + CASuffix} }

// Ref is the listed Secret an SDS name is served from.
func Ref(sdsName string) string {
	if len(sdsName) > len(CASuffix) && sdsName[len(sdsName)-len(CASuffix):] == CASuffix {
		return sdsName[:len(sdsName)-len(CASuffix)]
	}
	return sdsName
}

func inline(b []byte) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b}}
}

func validationContext(name string, ca []byte) *tlsv3.Secret {
	return &tlsv3.Secret{Name: name, Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
		TrustedCa: inline(ca),
	}}}
}

// checkCA accepts a PEM bundle with at least one parseable certificate.
func checkCA(b []byte) error {
	n := 0
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return err
		}
		n++
	}
	if n == 0 {
		return errors.New("no PEM certificate found")
	}
	return nil
}
