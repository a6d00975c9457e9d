// Package apirecorder sits between one binary and the apiserver and records what the
// binary asks and gets: it is how an e2e run sees a request refused (a 403 the binary
// would only log and retry) and what a response carried (whole Secrets or metadata
// only), which RBAC alone cannot say. The binary's own token passes through unchanged.
package apirecorder

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"

	"k8s.io/client-go/rest"
	certutil "k8s.io/client-go/util/cert"
)

// Exchange is one request a binary sent and the status it got.
type Exchange struct {
	Method, Path, Query string
	// Accept is the request's: what representation the binary asked for.
	Accept string
	// ContentType is the response's: a metadata-only read answers with
	// as=PartialObjectMetadata(List).
	ContentType string
	Code        int
}

func (e Exchange) String() string {
	return fmt.Sprintf("%s %s?%s [Accept: %s] -> %d (%s)", e.Method, e.Path, e.Query, e.Accept, e.Code, e.ContentType)
}

// Proxy is the recorder in front of one binary.
type Proxy struct {
	// FullSecrets and MetaSecrets count the Secrets that reached the binary whole and
	// as metadata only, read off the response bodies.
	FullSecrets, MetaSecrets atomic.Int64

	URL string
	// CA is the proxy's own certificate (client-go sends a token over TLS only).
	CA  []byte
	mu  sync.Mutex
	log []Exchange
	srv *http.Server
}

// Start listens on host (an address the binary reaches) with a certificate of its own
// and forwards to the apiserver of api.
func Start(host string, api *rest.Config) (*Proxy, error) {
	target, err := url.Parse(api.Host)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(api.CAData)
	p := &Proxy{}
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
			p.log = append(p.log, Exchange{Method: res.Request.Method, Accept: res.Request.Header.Get("Accept"), Path: res.Request.URL.Path, Query: res.Request.URL.RawQuery,
				ContentType: res.Header.Get("Content-Type"), Code: res.StatusCode})
			p.mu.Unlock()
			if Secrets(Exchange{Path: res.Request.URL.Path}) {
				res.Body = &secretScanner{ReadCloser: res.Body, p: p}
			}
			return nil
		},
		// A client going away (a process stopped by a test) is no error worth a line;
		// anything else answers 502 as the default handler does, and is logged.
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if !errors.Is(err, context.Canceled) {
				log.Printf("apirecorder: %s %s: %v", r.Method, r.URL.Path, err)
			}
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	certPEM, keyPEM, err := certutil.GenerateSelfSignedCertKey(host, []net.IP{net.ParseIP(host)}, nil)
	if err != nil {
		return nil, err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	l, err := tls.Listen("tcp", net.JoinHostPort(host, "0"), &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12})
	if err != nil {
		return nil, err
	}
	p.srv = &http.Server{Handler: rp}
	go func() { _ = p.srv.Serve(l) }()
	p.URL, p.CA = "https://"+l.Addr().String(), certPEM
	return p, nil
}

// Close stops the proxy.
func (p *Proxy) Close() error { return p.srv.Close() }

// Exchanges returns what matches keep.
func (p *Proxy) Exchanges(keep func(Exchange) bool) []Exchange {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Exchange
	for _, e := range p.log {
		if keep(e) {
			out = append(out, e)
		}
	}
	return out
}

// Forbidden: the request was refused (authentication or authorization).
func Forbidden(e Exchange) bool {
	return e.Code == http.StatusForbidden || e.Code == http.StatusUnauthorized
}

// Secrets: the request was about Secrets.
func Secrets(e Exchange) bool { return strings.Contains(e.Path, "/secrets") }

// Markers of a Secret and of object metadata in a response, in JSON and in protobuf
// (where an object's kind is field 2 of its type meta: 0x12, length, name).
var (
	fullSecretMarkers = [][]byte{[]byte(`"kind":"Secret"`), []byte("\x12\x06Secret")}
	metadataMarkers   = [][]byte{[]byte("PartialObjectMetadata")}
)

// secretScanner counts the Secrets a response carries as it streams to the binary.
type secretScanner struct {
	io.ReadCloser
	p    *Proxy
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
	s.p.FullSecrets.Add(count(fullSecretMarkers))
	s.p.MetaSecrets.Add(count(metadataMarkers))
	// Keep less than the shortest marker, so that none is counted twice.
	if keep := 5; len(buf) > keep {
		s.tail = append(s.tail[:0], buf[len(buf)-keep:]...)
	} else {
		s.tail = append(s.tail[:0], buf...)
	}
	return n, err
}
