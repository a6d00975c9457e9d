//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/rest"
)

// sample is one line of the Prometheus text exposition format. The bench parses the
// format itself rather than through expfmt: it needs a handful of counters, and
// prometheus/common is only an indirect dependency whose parser API keeps changing.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// parseText returns the samples whose metric name is one of names.
func parseText(r io.Reader, names ...string) ([]sample, error) {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	var out []sample
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<20), 1<<24)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		end := strings.IndexAny(line, "{ ")
		if end < 0 || !want[line[:end]] {
			continue
		}
		s := sample{name: line[:end], labels: map[string]string{}}
		rest := line[end:]
		if rest[0] == '{' {
			var err error
			if rest, err = parseLabels(rest[1:], s.labels); err != nil {
				return nil, fmt.Errorf("%q: %w", line, err)
			}
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			return nil, fmt.Errorf("%q: no value", line)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", line, err)
		}
		s.value = v
		out = append(out, s)
	}
	return out, sc.Err()
}

// parseLabels reads `k="v",...}` into into and returns what follows the closing brace.
func parseLabels(s string, into map[string]string) (string, error) {
	for {
		s = strings.TrimLeft(s, " ,")
		if strings.HasPrefix(s, "}") {
			return s[1:], nil
		}
		eq := strings.IndexByte(s, '=')
		if eq < 0 || len(s) < eq+2 || s[eq+1] != '"' {
			return "", fmt.Errorf("malformed labels")
		}
		key := s[:eq]
		s = s[eq+2:]
		var val strings.Builder
		i := 0
		for ; i < len(s) && s[i] != '"'; i++ {
			if s[i] == '\\' && i+1 < len(s) {
				i++
				switch s[i] {
				case 'n':
					val.WriteByte('\n')
				default:
					val.WriteByte(s[i])
				}
				continue
			}
			val.WriteByte(s[i])
		}
		if i == len(s) {
			return "", fmt.Errorf("unterminated label value")
		}
		into[key] = val.String()
		s = s[i+1:]
	}
}

// sum adds up the samples named name whose labels satisfy match (nil matches all).
func sum(samples []sample, name string, match func(map[string]string) bool) float64 {
	var t float64
	for _, s := range samples {
		if s.name == name && (match == nil || match(s.labels)) {
			t += s.value
		}
	}
	return t
}

// apiCounts are apiserver_request_total counters grouped the way the report needs them.
// The apiserver labels server-side apply as verb APPLY, merge/JSON patches as PATCH and
// updates as PUT; any of them on services/status is a status write.
type apiCounts struct {
	statusWrites     float64 // services/status APPLY|PATCH|PUT, any response code
	statusFailed     float64 // of those, non-2xx (conflicts, throttling)
	serviceCreates   float64 // POST services
	eventWrites      float64 // POST|PATCH|PUT events, core and events.k8s.io
	poolStatusWrites float64 // loadbalancerippools/status writes
	allWrites        float64 // every mutating request, any resource
}

func (a apiCounts) minus(b apiCounts) apiCounts {
	return apiCounts{
		statusWrites: a.statusWrites - b.statusWrites, statusFailed: a.statusFailed - b.statusFailed,
		serviceCreates: a.serviceCreates - b.serviceCreates, eventWrites: a.eventWrites - b.eventWrites,
		poolStatusWrites: a.poolStatusWrites - b.poolStatusWrites, allWrites: a.allWrites - b.allWrites,
	}
}

// controllerWrites are the writes the LB-IPAM controller (or the bare loop) is responsible for.
func (a apiCounts) controllerWrites() float64 {
	return a.statusWrites + a.eventWrites + a.poolStatusWrites
}

var mutating = map[string]bool{"POST": true, "PUT": true, "PATCH": true, "APPLY": true, "DELETE": true, "DELETECOLLECTION": true}

// scrapeAPIServer reads the apiserver's own /metrics through the admin client.
func scrapeAPIServer(ctx context.Context, rc rest.Interface) (apiCounts, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	body, err := rc.Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return apiCounts{}, fmt.Errorf("GET apiserver /metrics: %w", err)
	}
	ss, err := parseText(bytes.NewReader(body), "apiserver_request_total")
	if err != nil {
		return apiCounts{}, err
	}
	const m = "apiserver_request_total"
	write := func(l map[string]string) bool {
		v := l["verb"]
		return v == "APPLY" || v == "PATCH" || v == "PUT" || v == "POST"
	}
	svcStatus := func(l map[string]string) bool {
		return l["group"] == "" && l["resource"] == "services" && l["subresource"] == "status" && write(l)
	}
	return apiCounts{
		statusWrites: sum(ss, m, svcStatus),
		statusFailed: sum(ss, m, func(l map[string]string) bool { return svcStatus(l) && !strings.HasPrefix(l["code"], "2") }),
		serviceCreates: sum(ss, m, func(l map[string]string) bool {
			return l["group"] == "" && l["resource"] == "services" && l["subresource"] == "" && l["verb"] == "POST"
		}),
		eventWrites: sum(ss, m, func(l map[string]string) bool { return l["resource"] == "events" && write(l) }),
		poolStatusWrites: sum(ss, m, func(l map[string]string) bool {
			return l["resource"] == "loadbalancerippools" && l["subresource"] == "status" && write(l)
		}),
		allWrites: sum(ss, m, func(l map[string]string) bool { return mutating[l["verb"]] }),
	}, nil
}

// ctrlCounts are what the controller's own metrics endpoint says about its work queue.
type ctrlCounts struct {
	serviceReconciles float64 // controller_runtime_reconcile_total for lbipam-service
	serviceErrors     float64 // of those, result=error
	queued            float64 // workqueue_depth over both LB-IPAM controllers
	clientPatches     float64 // rest_client_requests_total method=PATCH (status applies)
	clientPosts       float64 // rest_client_requests_total method=POST (events)
}

func scrapeController(ctx context.Context, url string) (ctrlCounts, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return ctrlCounts{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ctrlCounts{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return ctrlCounts{}, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	ss, err := parseText(resp.Body, "controller_runtime_reconcile_total", "workqueue_depth", "rest_client_requests_total")
	if err != nil {
		return ctrlCounts{}, err
	}
	svc := func(l map[string]string) bool { return l["controller"] == "lbipam-service" }
	return ctrlCounts{
		serviceReconciles: sum(ss, "controller_runtime_reconcile_total", svc),
		serviceErrors: sum(ss, "controller_runtime_reconcile_total", func(l map[string]string) bool {
			return svc(l) && l["result"] == "error"
		}),
		queued:        sum(ss, "workqueue_depth", func(l map[string]string) bool { return strings.HasPrefix(l["name"], "lbipam-") }),
		clientPatches: sum(ss, "rest_client_requests_total", func(l map[string]string) bool { return l["method"] == "PATCH" }),
		clientPosts:   sum(ss, "rest_client_requests_total", func(l map[string]string) bool { return l["method"] == "POST" }),
	}, nil
}
