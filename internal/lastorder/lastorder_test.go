package lastorder

import (
	"slices"
	"testing"
)

func TestPlaceOnlyTheSameKeys(t *testing.T) {
	id := func(s string) string { return s }
	var o Order[string]
	if _, ok := Place(&o, []string{"a"}, id); ok {
		t.Fatal("an empty Order placed items")
	}
	Remember(&o, []string{"a", "b", "c"}, id)
	got, ok := Place(&o, []string{"c", "a", "b"}, id)
	if !ok || !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("Place = %v, %v; want the remembered order", got, ok)
	}
	for _, in := range [][]string{{"a", "b"}, {"a", "b", "d"}, {"a", "a", "b"}, {"a", "b", "c", "d"}} {
		if got, ok := Place(&o, in, id); ok {
			t.Errorf("Place(%v) = %v: placed keys that are not the remembered ones", in, got)
		}
	}
}
