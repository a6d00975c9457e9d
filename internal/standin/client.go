package standin

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/portico-dev/portico/internal/netlab"
)

// RoundTrip sends msg (one line) on a connection to the stand-in and expects it echoed.
func RoundTrip(c net.Conn, msg string) error {
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != msg {
		return fmt.Errorf("echoed %q, sent %q", buf, msg)
	}
	return nil
}

// Get sends one HTTP request from host h to addr (through whatever delivers it: the
// redirect) and returns the status code and the stand-in's answer.
func Get(h *netlab.Host, addr netip.AddrPort, method, path string, header http.Header) (int, Answer, error) {
	c, err := h.Dial(addr, 2*time.Second)
	if err != nil {
		return 0, Answer{}, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	req, err := http.NewRequest(method, "http://"+addr.String()+path, nil)
	if err != nil {
		return 0, Answer{}, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Close = true
	if err := req.Write(c); err != nil {
		return 0, Answer{}, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), req)
	if err != nil {
		return 0, Answer{}, err
	}
	defer resp.Body.Close()
	var a Answer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		return resp.StatusCode, a, fmt.Errorf("answer from %s: %w", addr, err)
	}
	return resp.StatusCode, a, nil
}
