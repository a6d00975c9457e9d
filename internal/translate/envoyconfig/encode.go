package envoyconfig

import (
	"bytes"
	"encoding/json"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/xdsres"
)

// jsonOut writes the field names users write (snake_case, as in Envoy's docs and
// Cilium's examples), so that `kubectl get npc -o yaml` reads like the source.
var jsonOut = protojson.MarshalOptions{UseProtoNames: true}

// encode writes a qualified resource back as proto3 JSON with its "@type". The
// protobuf runtime varies its whitespace from build to build on purpose; compacting
// makes the bytes depend on the resource alone, which keeps the golden files and
// the writer's "unchanged" check stable.
func encode(r xdsres.Decoded) v1alpha1.EnvoyResource {
	a, err := anypb.New(r.Message)
	if err != nil {
		panic(err) // a decoded message always marshals
	}
	raw, err := jsonOut.Marshal(a)
	if err != nil {
		panic(err)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		panic(err)
	}
	return v1alpha1.EnvoyResource{TypeURL: a.GetTypeUrl(), Raw: buf.Bytes()}
}
