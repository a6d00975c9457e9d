package envoykit

import (
	"strconv"

	"github.com/portico-dev/portico/apis/v1alpha1"
)

// Route is an Envoy route (envoy.config.route.v3.Route) with the fields producers use.
type Route struct {
	Name           string          `json:"name,omitempty"`
	Match          Match           `json:"match"`
	Route          *RouteAction    `json:"route,omitempty"`
	Redirect       *Redirect       `json:"redirect,omitempty"`
	DirectResponse *DirectResponse `json:"direct_response,omitempty"`

	RequestHeadersToAdd     []HeaderValueOption `json:"request_headers_to_add,omitempty"`
	RequestHeadersToRemove  []string            `json:"request_headers_to_remove,omitempty"`
	ResponseHeadersToAdd    []HeaderValueOption `json:"response_headers_to_add,omitempty"`
	ResponseHeadersToRemove []string            `json:"response_headers_to_remove,omitempty"`
	TypedPerFilterConfig    map[string]any      `json:"typed_per_filter_config,omitempty"`
}

// Match is a route match.
type Match struct {
	Prefix              string            `json:"prefix,omitempty"`
	Path                string            `json:"path,omitempty"`
	PathSeparatedPrefix string            `json:"path_separated_prefix,omitempty"`
	SafeRegex           *Regex            `json:"safe_regex,omitempty"`
	Headers             []HeaderMatcher   `json:"headers,omitempty"`
	QueryParameters     []QueryParamMatch `json:"query_parameters,omitempty"`
	GRPC                *struct{}         `json:"grpc,omitempty"`
}

// Regex is an RE2 regular expression.
type Regex struct {
	Regex string `json:"regex"`
}

// StringMatch matches a string exactly or by regular expression.
type StringMatch struct {
	Exact     string `json:"exact,omitempty"`
	SafeRegex *Regex `json:"safe_regex,omitempty"`
}

// HeaderMatcher matches a request header (":method" and ":authority" included).
type HeaderMatcher struct {
	Name         string       `json:"name"`
	StringMatch  *StringMatch `json:"string_match,omitempty"`
	PresentMatch bool         `json:"present_match,omitempty"`
	InvertMatch  bool         `json:"invert_match,omitempty"`
}

// QueryParamMatch matches a query parameter.
type QueryParamMatch struct {
	Name        string       `json:"name"`
	StringMatch *StringMatch `json:"string_match,omitempty"`
}

// RouteAction forwards to a cluster or weighted clusters.
type RouteAction struct {
	Cluster          string            `json:"cluster,omitempty"`
	WeightedClusters *WeightedClusters `json:"weighted_clusters,omitempty"`
	Timeout          string            `json:"timeout,omitempty"`
	PrefixRewrite    string            `json:"prefix_rewrite,omitempty"`
	RegexRewrite     *RegexRewrite     `json:"regex_rewrite,omitempty"`
	HostRewrite      string            `json:"host_rewrite_literal,omitempty"`
	RequestMirrors   []MirrorPolicy    `json:"request_mirror_policies,omitempty"`
	RetryPolicy      any               `json:"retry_policy,omitempty"`
	UpgradeConfigs   []UpgradeConfig   `json:"upgrade_configs,omitempty"`
	MaxStreamTimeout any               `json:"max_stream_duration,omitempty"`
}

// WeightedClusters splits traffic by weight.
type WeightedClusters struct {
	Clusters []ClusterWeight `json:"clusters"`
}

// ClusterWeight is one weighted cluster.
type ClusterWeight struct {
	Name   string `json:"name"`
	Weight uint32 `json:"weight"`
	// Header changes for requests sent to this cluster only (Gateway API
	// filters on a backendRef).
	RequestHeadersToAdd     []HeaderValueOption `json:"request_headers_to_add,omitempty"`
	RequestHeadersToRemove  []string            `json:"request_headers_to_remove,omitempty"`
	ResponseHeadersToAdd    []HeaderValueOption `json:"response_headers_to_add,omitempty"`
	ResponseHeadersToRemove []string            `json:"response_headers_to_remove,omitempty"`
}

// RegexRewrite rewrites the path matched by a pattern.
type RegexRewrite struct {
	Pattern      Regex  `json:"pattern"`
	Substitution string `json:"substitution"`
}

// MirrorPolicy mirrors a share of requests to another cluster.
type MirrorPolicy struct {
	Cluster         string           `json:"cluster"`
	RuntimeFraction *RuntimeFraction `json:"runtime_fraction,omitempty"`
}

// RuntimeFraction is a fraction of requests.
type RuntimeFraction struct {
	DefaultValue struct {
		Numerator   uint32 `json:"numerator"`
		Denominator string `json:"denominator"`
	} `json:"default_value"`
}

// UpgradeConfig allows a protocol upgrade (websocket).
type UpgradeConfig struct {
	UpgradeType string `json:"upgrade_type"`
}

// Redirect answers with a redirect.
type Redirect struct {
	HTTPSRedirect  bool   `json:"https_redirect,omitempty"`
	SchemeRedirect string `json:"scheme_redirect,omitempty"`
	HostRedirect   string `json:"host_redirect,omitempty"`
	PortRedirect   uint32 `json:"port_redirect,omitempty"`
	PathRedirect   string `json:"path_redirect,omitempty"`
	PrefixRewrite  string `json:"prefix_rewrite,omitempty"`
	// RegexRewrite rewrites the matched path (prefix "/" replacements, where a
	// plain prefix_rewrite would leave a double slash).
	RegexRewrite *RegexRewrite `json:"regex_rewrite,omitempty"`
	ResponseCode string        `json:"response_code,omitempty"`
}

// DirectResponse answers with a status (and an optional body).
type DirectResponse struct {
	Status uint32      `json:"status"`
	Body   *DataSource `json:"body,omitempty"`
}

// DataSource is inline data.
type DataSource struct {
	InlineString string `json:"inline_string"`
}

// HeaderValueOption adds or sets a header.
type HeaderValueOption struct {
	Header struct {
		Key   string `json:"key"`
		Value string `json:"value"`
	} `json:"header"`
	AppendAction string `json:"append_action,omitempty"`
}

// EmptyTable is a route fragment with no routes: it makes the table exist while
// no source has attached a route yet, so the listener referencing it is valid and
// Envoy answers 404 instead of refusing the listener.
func EmptyTable(table string) v1alpha1.RouteFragment {
	return v1alpha1.RouteFragment{RouteTable: table, Host: "*", Routes: []v1alpha1.FragmentRoute{}}
}

// Key builds a precedence key (FragmentRoute.Precedence): components joined by
// ".", numbers zero-padded to a fixed width so that the agent's byte-wise sort is
// numeric order. Producers encode all their ordering rules in it; the agent only sorts.
type Key struct{ b []byte }

// NewKey starts a key with room for n bytes.
func NewKey(n int) *Key { return &Key{b: make([]byte, 0, n)} }

func (k *Key) sep() {
	if len(k.b) > 0 {
		k.b = append(k.b, '.')
	}
}

// Num appends v padded to width digits (negative values count as zero).
func (k *Key) Num(v int64, width int) *Key {
	k.sep()
	var buf [20]byte // on the stack: keys are built for every route of every pass
	s := strconv.AppendInt(buf[:0], max(v, 0), 10)
	for i := len(s); i < width; i++ {
		k.b = append(k.b, '0')
	}
	k.b = append(k.b, s...)
	return k
}

// Desc appends v so that larger values sort first (limit - v, padded).
func (k *Key) Desc(v, limit int64, width int) *Key { return k.Num(limit-min(v, limit), width) }

// Str appends s as it is (names compare byte-wise).
func (k *Key) Str(s string) *Key {
	k.sep()
	k.b = append(k.b, s...)
	return k
}

// String is the key.
func (k *Key) String() string { return string(k.b) }
