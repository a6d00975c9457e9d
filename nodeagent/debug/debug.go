// Package debug is the node agent's debug endpoint. GET /debug/config_dump answers
// "what does this node's Envoy get from its agent" with the resources the agent's xDS
// server is serving right now, in Envoy's own admin format (envoy.admin.v3.ConfigDump,
// proto3 JSON), so that `kubectl portico config-dump <node>` and anything that reads
// Envoy's /config_dump can show it, without access to Envoy's admin port and without a
// proxy connected at all.
//
// Private keys and other fields Envoy's API marks sensitive are redacted, as Envoy's
// own config_dump does: the endpoint may be reached through the apiserver's pod proxy,
// and whoever may read it must not learn a TLS key from it.
package debug

import (
	"cmp"
	"context"
	"errors"
	"net"
	"net/http"
	"slices"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	"github.com/go-logr/logr"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/portico-dev/portico/nodeagent/xds"
)

// ConfigDumpPath is where the endpoint serves the config dump.
const ConfigDumpPath = "/debug/config_dump"

// Source is what the endpoint dumps: the agent's xDS server.
type Source interface {
	Served() xds.Served
}

// Handler serves ConfigDumpPath from src.
func Handler(src Source) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+ConfigDumpPath, func(w http.ResponseWriter, _ *http.Request) {
		dump, err := ConfigDump(src.Served())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		body, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(dump)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})
	return mux
}

// ConfigDump turns what is served into Envoy's admin ConfigDump: clusters,
// listeners, route configurations, secrets (redacted) and endpoints, each sorted by
// name, with the version the agent serves each type at.
func ConfigDump(s xds.Served) (*adminv3.ConfigDump, error) {
	var errs []error
	pack := func(m proto.Message) *anypb.Any {
		c := proto.Clone(m)
		Redact(c)
		a, err := anypb.New(c)
		errs = append(errs, err)
		return a
	}
	clusters := &adminv3.ClustersConfigDump{VersionInfo: s.Versions["clusters"]}
	for _, c := range sortedBy(s.Clusters, func(c protoNamed) string { return c.GetName() }) {
		clusters.DynamicActiveClusters = append(clusters.DynamicActiveClusters,
			&adminv3.ClustersConfigDump_DynamicCluster{VersionInfo: s.Versions["clusters"], Cluster: pack(c)})
	}
	listeners := &adminv3.ListenersConfigDump{VersionInfo: s.Versions["listeners"]}
	for _, l := range sortedBy(s.Listeners, func(l protoNamed) string { return l.GetName() }) {
		listeners.DynamicListeners = append(listeners.DynamicListeners, &adminv3.ListenersConfigDump_DynamicListener{
			Name:        l.GetName(),
			ActiveState: &adminv3.ListenersConfigDump_DynamicListenerState{VersionInfo: s.Versions["listeners"], Listener: pack(l)},
		})
	}
	routes := &adminv3.RoutesConfigDump{}
	for _, r := range sortedBy(s.Routes, func(r protoNamed) string { return r.GetName() }) {
		routes.DynamicRouteConfigs = append(routes.DynamicRouteConfigs,
			&adminv3.RoutesConfigDump_DynamicRouteConfig{VersionInfo: s.Versions["routes"], RouteConfig: pack(r)})
	}
	secrets := &adminv3.SecretsConfigDump{}
	for _, sec := range sortedBy(s.Secrets, func(x protoNamed) string { return x.GetName() }) {
		secrets.DynamicActiveSecrets = append(secrets.DynamicActiveSecrets,
			&adminv3.SecretsConfigDump_DynamicSecret{Name: sec.GetName(), VersionInfo: s.Versions["secrets"], Secret: pack(sec)})
	}
	endpoints := &adminv3.EndpointsConfigDump{}
	names := make([]string, 0, len(s.Endpoints))
	for name := range s.Endpoints {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		endpoints.DynamicEndpointConfigs = append(endpoints.DynamicEndpointConfigs,
			&adminv3.EndpointsConfigDump_DynamicEndpointConfig{EndpointConfig: pack(s.Endpoints[name])})
	}
	// Envoy's order: clusters, listeners, routes, secrets; endpoints last (Envoy adds
	// them only with ?include_eds, the agent always does: they are half the answer to
	// "why does this route go nowhere").
	out := &adminv3.ConfigDump{}
	for _, m := range []proto.Message{clusters, listeners, routes, secrets, endpoints} {
		a, err := anypb.New(m)
		errs = append(errs, err)
		out.Configs = append(out.Configs, a)
	}
	return out, errors.Join(errs...)
}

type protoNamed interface {
	proto.Message
	GetName() string
}

func sortedBy[T protoNamed](in []T, key func(protoNamed) string) []T {
	out := slices.Clone(in)
	slices.SortFunc(out, func(a, b T) int { return cmp.Compare(key(a), key(b)) })
	return out
}

// Serve serves the endpoint on addr until ctx ends. A port that cannot be bound
// is logged and the agent goes on without the endpoint: it is for people
// debugging, and must never take a node's traffic down with it.
func Serve(ctx context.Context, addr string, src Source, log logr.Logger) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		log.Error(err, "debug endpoint disabled: cannot listen", "address", addr)
		<-ctx.Done()
		return nil
	}
	return serve(ctx, l, src, log)
}

func serve(ctx context.Context, l net.Listener, src Source, log logr.Logger) error {
	srv := &http.Server{Handler: Handler(src), ReadHeaderTimeout: 5 * time.Second}
	log.Info("serving the debug endpoint", "address", l.Addr().String(), "path", ConfigDumpPath)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutdown)
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
