//go:build !linux

package agent

import (
	"context"
	"regexp"
	"time"

	"github.com/go-logr/logr"

	"github.com/portico-dev/portico/apis/v1alpha1"
)

// announcer is a no-op where there are no packet sockets.
type announcer struct{ live *l2Live }

func newAnnouncer(func() bool, *regexp.Regexp, logr.Logger) *announcer { return &announcer{} }
func (*announcer) run(ctx context.Context) error                       { <-ctx.Done(); return nil }
func (*announcer) set([]v1alpha1.Announcement) int                     { return 0 }
func (*announcer) replace([]v1alpha1.Announcement)                     {}
func (*announcer) reannounce()                                         {}

// watchInterfaces reports no interface: nothing can be answered here.
func (*announcer) watchInterfaces(ctx context.Context, _ time.Duration, _ logr.Logger, report func([]string)) error {
	report(nil)
	<-ctx.Done()
	return nil
}
