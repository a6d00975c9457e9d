package testenv

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/onsi/gomega"
	"go.uber.org/zap/zapcore"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// Main is the TestMain of a suite that shares one control plane: it starts it with
// opts, calls start (which keeps env and starts the suite's managers), runs the tests,
// calls the stop start returned and exits with the tests' code. Controllers log errors
// only, unless PORTICO_TEST_LOG is set, so that failures stand out.
func Main(m *testing.M, opts Options, start func(env *Env) (stop func(), err error)) {
	level := zapcore.ErrorLevel
	if os.Getenv("PORTICO_TEST_LOG") != "" {
		level = zapcore.DebugLevel
	}
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(level)))
	// Gomega's 1 s default is what a quiet machine needs; in CI the suites share two
	// cores with their apiservers and run side by side, and an outcome that takes
	// 1.1 s there is not a failure (controllers/l2 TestLocalPolicyFollowsEndpoints
	// flaked on it). A test that bounds a latency says so with WithTimeout.
	gomega.SetDefaultEventuallyTimeout(15 * time.Second)
	env, err := Start(opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the test control plane:", err)
		os.Exit(1)
	}
	stop, err := start(env)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		_ = env.Stop()
		os.Exit(1)
	}
	code := m.Run()
	stop()
	_ = env.Stop()
	os.Exit(code)
}
