package e2e

import (
	. "github.com/onsi/ginkgo/v2"
)

// One ordered container, so that the scenarios build on each other as a user's day
// does (S1's pool before S3's Ingress) and the faults meet a cluster carrying all of
// them; each scenario still ensures what it needs, so a label filter runs it alone.
var _ = Describe("Portico", Ordered, ContinueOnFailure, func() {
	describeS1()
	describeS2()
	describeS3()
	describeS4()
	describeS5()
	describeS6()
	describeS7()
	describeS8()
	describeFaults()
	describeServiceAccounts()
})
