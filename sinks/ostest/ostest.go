// Package ostest runs a real single-node OpenSearch for tests, from the
// jars Maven Central publishes, and a proxy in front of it that does what
// Amazon's front end does and a node does not: it checks SigV4 signatures,
// behaves like a Serverless collection when asked, and injects faults.
//
// The node is OpenSearch 2.19 (the newest line that runs on Java 17),
// constructed in-process by a small launcher (java/OpenSearchNode.java)
// compiled at first use. Jars and classes are cached under
// $SLUICE_OPENSEARCH_CACHE, or the user cache directory's
// sluice-opensearch (~/.cache/sluice-opensearch).
package ostest

import (
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Version is the OpenSearch version the node runs (see pom.xml).
const Version = "2.19.3"

// RequireEnv names the variable that turns a missing Java or Maven from a
// skipped test into a failed one; CI sets it to 1.
const RequireEnv = "SLUICE_TEST_REQUIRE_OPENSEARCH"

// CacheEnv names the variable that overrides the cache directory.
const CacheEnv = "SLUICE_OPENSEARCH_CACHE"

//go:embed pom.xml
var pom []byte

//go:embed java/OpenSearchNode.java
var launcher []byte

// Bounds of the start-up and shut-down waits.
const (
	startTimeout = 90 * time.Second
	stopTimeout  = 15 * time.Second
	pollEvery    = 50 * time.Millisecond
)

// ErrNoJava is returned when java, javac or mvn is not on PATH.
var ErrNoJava = errors.New("java, javac and mvn are needed to run an OpenSearch node (apt-get install openjdk-17-jdk-headless maven)")

// Skip skips t when err says the tools are missing, or fails it when
// SLUICE_TEST_REQUIRE_OPENSEARCH=1 or the node failed for another reason.
func Skip(t testing.TB, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if errors.Is(err, ErrNoJava) && os.Getenv(RequireEnv) != "1" {
		t.Skipf("no OpenSearch node: %v (set %s=1 to fail instead)", err, RequireEnv)
	}
	t.Fatalf("no OpenSearch node: %v", err)
}

// CacheDir returns the directory jars and classes are cached in.
func CacheDir() (string, error) {
	if d := os.Getenv(CacheEnv); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("cache dir: %w (set %s)", err, CacheEnv)
	}
	return filepath.Join(d, "sluice-opensearch"), nil
}

// Fetch makes sure the jars and the compiled launcher are in the cache and
// returns the Java class path. The first call downloads about 44 MB from
// Maven Central with mvn; later calls only check.
func Fetch(ctx context.Context) (classpath string, err error) {
	for _, tool := range []string{"java", "javac", "mvn"} {
		if _, err := exec.LookPath(tool); err != nil {
			return "", fmt.Errorf("%w: %s not found", ErrNoJava, tool)
		}
	}
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	jars := filepath.Join(cache, "jars-"+Version)
	if _, err := os.Stat(filepath.Join(jars, ".complete")); err != nil {
		if err := fetchJars(ctx, cache, jars); err != nil {
			return "", err
		}
	}
	sum := sha256.Sum256(launcher)
	classes := filepath.Join(cache, "classes-"+hex.EncodeToString(sum[:8]))
	if _, err := os.Stat(filepath.Join(classes, "OpenSearchNode.class")); err != nil {
		if err := compile(ctx, cache, jars, classes); err != nil {
			return "", err
		}
	}
	return filepath.Join(jars, "*") + string(os.PathListSeparator) + classes, nil
}

func fetchJars(ctx context.Context, cache, jars string) error {
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return fmt.Errorf("fetch jars: %w", err)
	}
	pomFile := filepath.Join(cache, "pom-"+Version+".xml")
	if err := os.WriteFile(pomFile, pom, 0o644); err != nil {
		return fmt.Errorf("fetch jars: %w", err)
	}
	tmp, err := os.MkdirTemp(cache, ".jars-*")
	if err != nil {
		return fmt.Errorf("fetch jars: %w", err)
	}
	defer os.RemoveAll(tmp)
	cmd := exec.CommandContext(ctx, "mvn", "-q", "-B", "-f", pomFile,
		"dependency:copy-dependencies", "-DoutputDirectory="+tmp)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("fetch jars with mvn: %w\n%s", err, tail(out))
	}
	if err := os.WriteFile(filepath.Join(tmp, ".complete"), nil, 0o644); err != nil {
		return fmt.Errorf("fetch jars: %w", err)
	}
	os.RemoveAll(jars) // an incomplete earlier attempt
	if err := os.Rename(tmp, jars); err != nil {
		return fmt.Errorf("fetch jars: %w", err)
	}
	return nil
}

func compile(ctx context.Context, cache, jars, classes string) error {
	tmp, err := os.MkdirTemp(cache, ".classes-*")
	if err != nil {
		return fmt.Errorf("compile launcher: %w", err)
	}
	defer os.RemoveAll(tmp)
	src := filepath.Join(tmp, "OpenSearchNode.java")
	if err := os.WriteFile(src, launcher, 0o644); err != nil {
		return fmt.Errorf("compile launcher: %w", err)
	}
	cmd := exec.CommandContext(ctx, "javac", "-d", tmp, "-cp", filepath.Join(jars, "*"), src)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("compile launcher: %w\n%s", err, tail(out))
	}
	os.RemoveAll(classes)
	if err := os.Rename(tmp, classes); err != nil {
		return fmt.Errorf("compile launcher: %w", err)
	}
	return nil
}

func tail(out []byte) []byte {
	if len(out) > 4000 {
		out = out[len(out)-4000:]
	}
	return out
}

// Node is a running OpenSearch node.
type Node struct {
	URL string // http://127.0.0.1:PORT
	Dir string // path.home: data, logs and the launcher's output (node.log)
	// Started is how long the node took from exec to a green health.
	Started time.Duration

	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan error
}

// Start runs a node for the test and stops it in t.Cleanup; it skips or
// fails the test as Skip says when the node cannot run.
func Start(t testing.TB) *Node {
	t.Helper()
	n, err := Run(context.Background(), t.TempDir())
	Skip(t, err)
	t.Cleanup(func() { n.Stop() })
	return n
}

// Run fetches what the node needs (see Fetch), starts it with its home in
// dir, and waits until its cluster health is green. Stop ends it; so does
// the end of this process, which closes the node's standard input.
func Run(ctx context.Context, dir string) (*Node, error) {
	cp, err := Fetch(ctx)
	if err != nil {
		return nil, err
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "node.log"))
	if err != nil {
		return nil, fmt.Errorf("start opensearch: %w", err)
	}
	defer logf.Close()
	begin := time.Now()
	// No CommandContext: the node belongs to the caller until Stop, not to
	// ctx, which only bounds the start.
	cmd := exec.Command("java", "-Xms256m", "-Xmx512m", "-XX:+UseSerialGC",
		"-Dlog4j2.disable.jmx=true", "-cp", cp, "OpenSearchNode", dir)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = procAttr()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("start opensearch: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start opensearch: %w", err)
	}
	n := &Node{Dir: dir, cmd: cmd, stdin: stdin, done: make(chan error, 1)}
	go func() { n.done <- cmd.Wait() }()
	if err := n.await(ctx); err != nil {
		n.Stop()
		log, _ := os.ReadFile(filepath.Join(dir, "node.log"))
		return nil, fmt.Errorf("start opensearch %s: %w\n%s", Version, err, tail(log))
	}
	n.Started = time.Since(begin)
	return n, nil
}

// await waits for the ports file, then for a green cluster.
func (n *Node) await(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	ports := filepath.Join(n.Dir, "logs", "http.ports")
	for n.URL == "" {
		if b, err := os.ReadFile(ports); err == nil && bytes.HasSuffix(b, []byte("\n")) {
			addr := strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0])
			n.URL = "http://" + addr
			break
		}
		select {
		case err := <-n.done:
			n.done <- err
			return fmt.Errorf("node exited: %v", err)
		case <-ctx.Done():
			return fmt.Errorf("no %s: %w", ports, ctx.Err())
		case <-tick.C:
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.URL+"/_cluster/health?wait_for_status=green&timeout=60s", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("cluster health: %w", err)
	}
	defer resp.Body.Close()
	var h struct {
		Status string `json:"status"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil || h.Status != "green" {
		return fmt.Errorf("cluster health: status %d %q (%v)", resp.StatusCode, h.Status, err)
	}
	return nil
}

// Stop ends the node: it closes its standard input, which makes the
// launcher close the node, and kills it if it is still there after a
// while. It is idempotent.
func (n *Node) Stop() {
	if n.stdin == nil {
		return
	}
	n.stdin.Close()
	n.stdin = nil
	t := time.NewTimer(stopTimeout)
	defer t.Stop()
	select {
	case err := <-n.done:
		n.done <- err
	case <-t.C:
		n.cmd.Process.Kill()
		n.done <- <-n.done
	}
}
