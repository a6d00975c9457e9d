package install_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"k8s.io/client-go/rest"
	certutil "k8s.io/client-go/util/cert"
)

// exchange is one request a binary sent and the status it got.
type exchange struct {
	Method, Path, Query string
	// Accept is the request's: what representation the binary asked for.
	Accept string
	// ContentType is the response's: a metadata-only read answers with
	// as=PartialObjectMetadata(List).
	ContentType string
	Code        int
}

func (e exchange) String() string {
	return fmt.Sprintf("%s %s?%s [Accept: %s] -> %d (%s)", e.Method, e.Path, e.Query, e.Accept, e.Code, e.ContentType)
}

// apiProxy sits between one binary and the apiserver and records what it asks and gets:
// it is how the test sees a request refused (a 403 the binary would only log and retry)
// and what a response carried. The binary's own token passes through unchanged.
type apiProxy struct {
	// fullSecrets and metaSecrets count the Secrets that reached the binary whole and
	// as metadata only, read off the response bodies.
	fullSecrets, metaSecrets atomic.Int64

	URL string
	// CA is the proxy's own certificate (client-go sends a token over TLS only).
	CA  []byte
	mu  sync.Mutex
	log []exchange
}

func newAPIProxy(t testing.TB, host string, api *rest.Config) *apiProxy {
	t.Helper()
	target, err := url.Parse(api.Host)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(api.CAData)
	p := &apiProxy{}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = target.Host
			// The apiserver gzips large responses for a client that accepts it; without
			// the header the proxy's own transport asks for gzip and inflates, so the
			// scanner reads plain bodies (a list of Secrets is exactly what gets large).
			r.Out.Header.Del("Accept-Encoding")
		},
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
		FlushInterval: -1, // watches stream
		ModifyResponse: func(res *http.Response) error {
			p.mu.Lock()
			p.log = append(p.log, exchange{Method: res.Request.Method, Accept: res.Request.Header.Get("Accept"), Path: res.Request.URL.Path, Query: res.Request.URL.RawQuery,
				ContentType: res.Header.Get("Content-Type"), Code: res.StatusCode})
			p.mu.Unlock()
			if secrets(exchange{Path: res.Request.URL.Path}) {
				res.Body = &secretScanner{ReadCloser: res.Body, p: p}
			}
			return nil
		},
	}
	certPEM, keyPEM, err := certutil.GenerateSelfSignedCertKey(host, []net.IP{net.ParseIP(host)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	l, err := tls.Listen("tcp", net.JoinHostPort(host, "0"), &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: rp}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	p.URL, p.CA = "https://"+l.Addr().String(), certPEM
	return p
}

// exchanges returns what matches keep.
func (p *apiProxy) exchanges(keep func(exchange) bool) []exchange {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []exchange
	for _, e := range p.log {
		if keep(e) {
			out = append(out, e)
		}
	}
	return out
}

func forbidden(e exchange) bool {
	return e.Code == http.StatusForbidden || e.Code == http.StatusUnauthorized
}

func secrets(e exchange) bool { return strings.Contains(e.Path, "/secrets") }

// Markers of a Secret and of object metadata in a response, in JSON and in protobuf
// (where an object's kind is field 2 of its type meta: 0x12, length, name).
var (
	fullSecretMarkers = [][]byte{[]byte(`"kind":"Secret"`), []byte("\x12\x06Secret")}
	metadataMarkers   = [][]byte{[]byte("PartialObjectMetadata")}
)

// secretScanner counts the Secrets a response carries as it streams to the binary.
type secretScanner struct {
	io.ReadCloser
	p    *apiProxy
	tail []byte // the end of the previous read, for markers split between reads
}

func (s *secretScanner) Read(b []byte) (int, error) {
	n, err := s.ReadCloser.Read(b)
	buf := append(s.tail, b[:n]...)
	count := func(markers [][]byte) (c int64) {
		for _, m := range markers {
			c += int64(bytes.Count(buf, m))
		}
		return c
	}
	s.p.fullSecrets.Add(count(fullSecretMarkers))
	s.p.metaSecrets.Add(count(metadataMarkers))
	// Keep less than the shortest marker, so that none is counted twice.
	if keep := 5; len(buf) > keep {
		s.tail = append(s.tail[:0], buf[len(buf)-keep:]...)
	} else {
		s.tail = append(s.tail[:0], buf...)
	}
	return n, err
}
