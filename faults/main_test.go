package faults

import (
	"flag"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// natsServerVersion is the nats-server installed when none is on PATH or in
// $(go env GOPATH)/bin: the version go.mod embeds.
const natsServerVersion = "v2.15.2"

var (
	seedFlag     = flag.Uint64("faults.seed", 0, "random seed of the fault-injection suite; 0 picks one (printed at the start)")
	keepLogsFlag = flag.Bool("faults.keep-logs", false, "keep the processes' logs even when every test passed")
)

// suite is the state shared by the fault tests of one test binary.
var suite struct {
	mode   string // "short", "long", or "" (the fault tests skip)
	seed   uint64
	runDir string // logs and binaries; removed after a passing run

	buildOnce   sync.Once
	buildErr    error
	contactstop string // the binary under test
	natsServer  string
}

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	suite.mode = os.Getenv("CONTACTSTOP_FAULTS")
	switch suite.mode {
	case "":
		return m.Run() // the checker's own tests only
	case "short", "long":
	default:
		fmt.Fprintf(os.Stderr, "CONTACTSTOP_FAULTS=%q: want short or long\n", suite.mode)
		return 2
	}
	suite.seed = *seedFlag
	if suite.seed == 0 {
		suite.seed = uint64(time.Now().UnixNano()) % 1_000_000_000
	}
	dir, err := os.MkdirTemp("", "contactstop-faults-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	suite.runDir = dir
	fmt.Printf("faults: mode %s, seed %d (repeat with: CONTACTSTOP_FAULTS=%s go test -count=1 ./faults/ -faults.seed=%d), logs in %s\n",
		suite.mode, suite.seed, suite.mode, suite.seed, dir)
	code := m.Run()
	if code == 0 && !*keepLogsFlag {
		_ = os.RemoveAll(dir)
	} else {
		fmt.Printf("faults: seed %d; logs kept in %s\n", suite.seed, dir)
	}
	return code
}

// enabled skips the test unless the suite runs, and returns whether it runs
// in long mode.
func enabled(t *testing.T) bool {
	t.Helper()
	if suite.mode == "" {
		t.Skip("fault injection is off: set CONTACTSTOP_FAULTS=short or CONTACTSTOP_FAULTS=long (see docs/reliability.md)")
	}
	if testing.Short() && suite.mode == "long" {
		t.Skip("CONTACTSTOP_FAULTS=long with -short")
	}
	return suite.mode == "long"
}

// testRand returns the test's random source: the suite's seed mixed with
// the test's name, so that one subtest run alone with the same seed makes
// the same choices.
func testRand(t *testing.T) *rand.Rand {
	h := fnv.New64a()
	_, _ = h.Write([]byte(t.Name()))
	t.Logf("seed %d (repeat with -faults.seed=%d -run '%s')", suite.seed, suite.seed, t.Name())
	return rand.New(rand.NewPCG(suite.seed, h.Sum64()))
}

// binaries builds contactstop and finds (or installs) nats-server, once.
func binaries(t *testing.T) (contactstop, natsServer string) {
	t.Helper()
	suite.buildOnce.Do(func() {
		suite.contactstop, suite.natsServer, suite.buildErr = buildBinaries()
	})
	if suite.buildErr != nil {
		t.Fatal(suite.buildErr)
	}
	return suite.contactstop, suite.natsServer
}

func buildBinaries() (contactstop, natsServer string, err error) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", "", fmt.Errorf("the suite builds contactstop with the go command: %w", err)
	}
	gomod, err := goEnv(goTool, "GOMOD")
	if err != nil || gomod == "" || gomod == os.DevNull {
		return "", "", fmt.Errorf("find the module root with go env GOMOD (%q): %w", gomod, err)
	}
	bin := filepath.Join(suite.runDir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return "", "", err
	}
	contactstop = filepath.Join(bin, "contactstop")
	start := time.Now()
	cmd := exec.Command(goTool, "build", "-o", contactstop, "./cmd/contactstop")
	cmd.Dir = filepath.Dir(gomod)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("go build ./cmd/contactstop: %w\n%s", err, out)
	}
	fmt.Printf("faults: built contactstop in %.1fs\n", time.Since(start).Seconds())
	natsServer, err = findNATSServer(goTool)
	if err != nil {
		return "", "", err
	}
	out, _ := exec.Command(natsServer, "--version").CombinedOutput()
	fmt.Printf("faults: using %s (%s)\n", natsServer, strings.TrimSpace(string(out)))
	return contactstop, natsServer, nil
}

func goEnv(goTool, name string) (string, error) {
	out, err := exec.Command(goTool, "env", name).Output()
	return strings.TrimSpace(string(out)), err
}

// findNATSServer looks for nats-server on PATH, then in $(go env
// GOPATH)/bin, then in the user's cache, and else installs
// nats-server@natsServerVersion there with go install (which needs only
// the Go module proxy).
func findNATSServer(goTool string) (string, error) {
	if p, err := exec.LookPath("nats-server"); err == nil {
		return p, nil
	}
	if gopath, err := goEnv(goTool, "GOPATH"); err == nil && gopath != "" {
		p := filepath.Join(filepath.SplitList(gopath)[0], "bin", "nats-server")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	gobin := filepath.Join(cache, "contactstop-faults", "nats-server-"+natsServerVersion)
	p := filepath.Join(gobin, "nats-server")
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	start := time.Now()
	cmd := exec.Command(goTool, "install", "github.com/nats-io/nats-server/v2@"+natsServerVersion)
	cmd.Env = append(os.Environ(), "GOBIN="+gobin)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install nats-server@%s into %s: %w\n%s", natsServerVersion, gobin, err, out)
	}
	fmt.Printf("faults: installed nats-server %s into %s in %.1fs\n", natsServerVersion, gobin, time.Since(start).Seconds())
	return p, nil
}
