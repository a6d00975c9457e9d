package envoyconfig

import (
	"bytes"
	"encoding/json"
	"strconv"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/xdsres"
)

// jsonOut writes the field names users write (snake_case, as in Envoy's docs and
// Cilium's examples), so that `kubectl get npc -o yaml` reads like the source.
var jsonOut = protojson.MarshalOptions{UseProtoNames: true}

// encode writes a qualified resource back as proto3 JSON with its "@type". The
// message is marshalled directly and "@type" spliced in front: going through an Any
// would marshal it to binary and back first, which cost more than the JSON itself. The
// protobuf runtime varies its whitespace from build to build on purpose; compacting
// makes the bytes depend on the resource alone, which keeps the golden files and the
// writer's "unchanged" check stable.
func encode(r xdsres.Decoded) v1alpha1.EnvoyResource {
	typeURL := "type.googleapis.com/" + string(r.Message.ProtoReflect().Descriptor().FullName())
	raw, err := jsonOut.Marshal(r.Message)
	if err != nil {
		// Only a message protojson cannot represent fails; decoded ones always can,
		// but fall back to the Any form rather than lose the resource.
		a, aerr := anypb.New(r.Message)
		if aerr != nil {
			panic(aerr)
		}
		if raw, err = jsonOut.Marshal(a); err != nil {
			panic(err)
		}
		return v1alpha1.EnvoyResource{TypeURL: typeURL, Raw: compact(raw)}
	}
	body := bytes.TrimSpace(raw)
	var buf bytes.Buffer
	buf.Grow(len(body) + len(typeURL) + 12)
	buf.WriteString(`{"@type":`)
	buf.WriteString(strconv.Quote(typeURL))
	if len(body) > 2 { // not "{}"
		buf.WriteByte(',')
	}
	buf.Write(body[1:])
	return v1alpha1.EnvoyResource{TypeURL: typeURL, Raw: compact(buf.Bytes())}
}

func compact(raw []byte) []byte {
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		panic(err)
	}
	return buf.Bytes()
}
