package v1alpha1

import "encoding/json"

// EnvoyResource is one Envoy v3 resource in its proto3 JSON form, with an "@type" such as
// type.googleapis.com/envoy.config.listener.v3.Listener. It is kept as JSON so that any
// Envoy field can be used; the validating webhook decodes it with the Envoy protos. Only
// "@type" is in the schema, which makes the apiserver itself refuse a resource without it
// (CEL cannot name a property starting with "@").
//
// +kubebuilder:pruning:PreserveUnknownFields
type EnvoyResource struct {
	// TypeURL is the resource's "@type".
	// +kubebuilder:validation:Pattern=`^type\.googleapis\.com/envoy\.`
	// +kubebuilder:validation:MaxLength=256
	TypeURL string `json:"@type"`

	// Raw is the whole resource as JSON, "@type" included.
	Raw []byte `json:"-"`
}

// MarshalJSON returns the whole resource.
func (r EnvoyResource) MarshalJSON() ([]byte, error) {
	if len(r.Raw) == 0 {
		return json.Marshal(map[string]string{"@type": r.TypeURL})
	}
	return r.Raw, nil
}

// UnmarshalJSON keeps the whole resource and reads its "@type".
func (r *EnvoyResource) UnmarshalJSON(data []byte) error {
	var head struct {
		TypeURL string `json:"@type"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return err
	}
	r.TypeURL, r.Raw = head.TypeURL, append([]byte(nil), data...)
	return nil
}

// ServiceRef names a Service. An empty namespace means the namespace of the referring
// object (for cluster-scoped objects it is required).
type ServiceRef struct {
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace,omitempty"`
}

// ServiceListener redirects the traffic of a Service's frontends (ClusterIP, LoadBalancer
// and external IPs) into an Envoy listener of the same config.
type ServiceListener struct {
	ServiceRef `json:",inline"`

	// Listener is the name of the Envoy listener (as written in the config's resources)
	// that receives the traffic. Empty means the config's first listener, as in Cilium.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Listener string `json:"listener,omitempty"`

	// Ports limits the redirect to these Service ports. Empty means every port.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:Minimum=1
	// +kubebuilder:validation:items:Maximum=65535
	// +listType=set
	Ports []int32 `json:"ports,omitempty"`
}

// BackendService is a Service whose ready endpoints are served to Envoy over EDS, as the
// ClusterLoadAssignment "<namespace>/<name>:<port>" (and "<namespace>/<name>" for every port).
type BackendService struct {
	ServiceRef `json:",inline"`

	// Ports limits the endpoints to these ports, by number or name. Empty means every port.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=15
	// +listType=set
	Ports []string `json:"ports,omitempty"`
}
