package standin

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"strings"
	"sync"
)

// Answer is the body of the stand-in's HTTP answers: where the request arrived, and
// which cluster Envoy would have sent it to.
type Answer struct {
	Node     string `json:"node"`
	Listener string `json:"listener"`
	// Local is the accepted socket's local address: the VIP the client dialled, which
	// only a transparent listener that bpf_sk_assign handed the connection can report.
	Local   string `json:"local"`
	Cluster string `json:"cluster,omitempty"`
	Error   string `json:"error,omitempty"`
}

var requestLine = regexp.MustCompile(`^[A-Z]+ \S+ HTTP/1\.[01]\r?\n$`)

// Listener answers the connections of one listening socket.
type Listener struct {
	// Accepted receives every accepted connection (dropped when nobody reads).
	Accepted chan Accepted
	ln       net.Listener
	node     string
	name     string
	route    func(Request) (string, error)

	mu    sync.Mutex
	conns map[net.Conn]bool
}

// Serve answers the connections of ln as the stand-in does (HTTP answers naming node
// and listener, echo otherwise), with no routing: for tests of the redirect alone.
func Serve(ln net.Listener, node, listener string) *Listener {
	return serve(ln, node, listener, nil, make(chan Accepted, 256))
}

func serve(ln net.Listener, node, listener string, route func(Request) (string, error), accepted chan Accepted) *Listener {
	l := &Listener{Accepted: accepted, ln: ln, node: node, name: listener, route: route, conns: map[net.Conn]bool{}}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			l.mu.Lock()
			l.conns[c] = true
			l.mu.Unlock()
			local := c.LocalAddr().(*net.TCPAddr).AddrPort()
			remote := c.RemoteAddr().(*net.TCPAddr).AddrPort()
			select {
			case l.Accepted <- Accepted{Listener: listener, Local: local, Remote: remote}:
			default:
			}
			go func() {
				defer l.drop(c)
				l.handle(c, local)
			}()
		}
	}()
	return l
}

func (l *Listener) drop(c net.Conn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
	_ = c.Close()
}

// Close closes the listening socket and every connection it accepted.
func (l *Listener) Close() {
	_ = l.ln.Close()
	l.mu.Lock()
	defer l.mu.Unlock()
	for c := range l.conns {
		_ = c.Close()
	}
}

// handle answers HTTP/1.1 requests, or echoes whatever else arrives.
func (l *Listener) handle(c net.Conn, local netip.AddrPort) {
	r := bufio.NewReader(c)
	first, err := r.ReadString('\n')
	if err != nil {
		return
	}
	if !requestLine.MatchString(first) {
		if _, err := io.WriteString(c, first); err != nil {
			return
		}
		_, _ = io.Copy(c, r)
		return
	}
	br := bufio.NewReader(io.MultiReader(strings.NewReader(first), r))
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		a := Answer{Node: l.node, Listener: l.name, Local: local.String()}
		code := http.StatusOK
		if l.route != nil {
			a.Cluster, err = l.route(Request{Method: req.Method, Host: req.Host, Path: req.URL.RequestURI(), Header: req.Header})
			switch {
			case errors.Is(err, ErrNoRoute):
				code, a.Error = http.StatusNotFound, err.Error()
			case err != nil:
				code, a.Error = http.StatusServiceUnavailable, err.Error()
			}
		}
		body, _ := json.Marshal(a)
		resp := fmt.Sprintf("HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nx-portico-node: %s\r\n\r\n%s",
			code, http.StatusText(code), len(body), l.node, body)
		if _, err := io.WriteString(c, resp); err != nil || req.Close {
			return
		}
	}
}
