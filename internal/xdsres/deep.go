package xdsres

import "google.golang.org/protobuf/proto"

// ValidateMessage checks one message the way Validate checks a resource
// (protoc-gen-validate rules, also inside typed_config Anys), for parts of
// resources that are validated before they are assembled: the filter chains a
// config contributes to another config's listener must be judged on their own,
// or a bad chain would be blamed on every contributor of the merged listener.
func ValidateMessage(m proto.Message) error { return validateDeep(m) }
