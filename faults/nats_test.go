package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"
)

// natsNode is one nats-server process with JetStream, on loopback ports
// picked once and kept across restarts, storing under a directory that
// survives them.
type natsNode struct {
	name                      string
	port, httpPort, routePort int
	storeDir                  string
	p                         *proc
}

func (n *natsNode) url() string { return "nats://127.0.0.1:" + strconv.Itoa(n.port) }

// natsCluster is one server, or n servers clustered on loopback.
type natsCluster struct {
	t     *testing.T
	nodes []*natsNode
	mesh  *routeMesh // nil unless the routes go through toxiproxy
}

// clusterOptions shape startNATS's servers.
type clusterOptions struct {
	nodes int
	// proxied puts every route between two servers through its own
	// toxiproxy proxy, so that one server can be cut off from the others.
	proxied bool
}

// startNATS starts the servers and waits until JetStream is healthy on
// every one (and, for a cluster, has a meta leader seeing all peers).
func startNATS(t *testing.T, natsBin, logDir string, o clusterOptions) *natsCluster {
	t.Helper()
	if o.nodes == 0 {
		o.nodes = 1
	}
	c := &natsCluster{t: t}
	ports := freePorts(t, 3*o.nodes)
	for i := range o.nodes {
		c.nodes = append(c.nodes, &natsNode{
			name: fmt.Sprintf("n%d", i), port: ports[3*i], httpPort: ports[3*i+1], routePort: ports[3*i+2],
			storeDir: t.TempDir(),
		})
	}
	if o.proxied {
		c.mesh = newRouteMesh(t, c.nodes)
	}
	for i, n := range c.nodes {
		conf := filepath.Join(t.TempDir(), n.name+".conf")
		if err := os.WriteFile(conf, []byte(c.config(i)), 0o644); err != nil {
			t.Fatal(err)
		}
		n.p = newProc(t, logDir, "nats-"+n.name, natsBin, "-c", conf)
	}
	for _, n := range c.nodes {
		n.p.mustStart()
	}
	c.waitHealthy(120 * time.Second)
	return c
}

// config is server i's configuration file.
func (c *natsCluster) config(i int) string {
	n := c.nodes[i]
	var b strings.Builder
	fmt.Fprintf(&b, "server_name: %s\nlisten: 127.0.0.1:%d\nhttp: 127.0.0.1:%d\n", n.name, n.port, n.httpPort)
	fmt.Fprintf(&b, "jetstream {\n  store_dir: %q\n  max_memory_store: 256MB\n  max_file_store: 16GB\n}\n", n.storeDir)
	if len(c.nodes) == 1 {
		return b.String()
	}
	// Every server lists a route to itself too (it ignores it): the
	// JetStream meta group then expects all the peers from the start.
	routes := []string{fmt.Sprintf("nats-route://127.0.0.1:%d", n.routePort)}
	for j, m := range c.nodes {
		switch {
		case j == i:
		case c.mesh != nil:
			routes = append(routes, "nats-route://"+c.mesh.proxy(i, j).Listen)
		default:
			routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", m.routePort))
		}
	}
	fmt.Fprintf(&b, "cluster {\n  name: faults\n  listen: 127.0.0.1:%d\n  routes: [%s]\n", n.routePort, strings.Join(routes, ", "))
	// Detect a dead route within seconds rather than minutes.
	b.WriteString("  ping_interval: \"2s\"\n  ping_max: 3\n")
	if c.mesh != nil {
		// Gossip would otherwise make servers open implicit routes to the
		// addresses others advertise, around the proxies. Advertising a
		// closed port makes those fail: only the configured, proxied routes
		// carry traffic.
		b.WriteString("  advertise: \"127.0.0.1:1\"\n")
	}
	b.WriteString("}\n")
	return b.String()
}

func (c *natsCluster) urls() string {
	urls := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		urls[i] = n.url()
	}
	return strings.Join(urls, ",")
}

func (c *natsCluster) node(name string) *natsNode {
	for _, n := range c.nodes {
		if n.name == name {
			return n
		}
	}
	return nil
}

// healthz reports whether the server's /healthz says its JetStream (meta
// group, streams and consumers) is healthy.
func (n *natsNode) healthz(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/healthz", n.httpPort), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s /healthz: %d %s %s", n.name, resp.StatusCode, body.Status, body.Error)
	}
	return nil
}

// metaPeers returns the JetStream meta leader's name and how many peers
// this server sees current, from /jsz.
func (n *natsNode) metaPeers(ctx context.Context) (leader string, current int, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/jsz", n.httpPort), nil)
	if err != nil {
		return "", 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	var body struct {
		Meta *struct {
			Leader   string `json:"leader"`
			Replicas []struct {
				Current bool `json:"current"`
				Offline bool `json:"offline"`
			} `json:"replicas"`
		} `json:"meta_cluster"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return "", 0, err
	}
	if body.Meta == nil {
		return "", 0, nil
	}
	current = 1 // the leader itself
	for _, r := range body.Meta.Replicas {
		if r.Current && !r.Offline {
			current++
		}
	}
	return body.Meta.Leader, current, nil
}

// waitHealthy waits until every running server is healthy and, in a
// cluster, the meta leader sees every server current.
func (c *natsCluster) waitHealthy(timeout time.Duration) {
	c.t.Helper()
	if err := c.healthy(timeout); err != nil {
		c.t.Fatal(err)
	}
}

func (c *natsCluster) healthy(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		last = c.checkHealthy()
		if last == nil {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("servers not healthy within %s: %w", timeout, last)
}

func (c *natsCluster) checkHealthy() error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	for _, n := range c.nodes {
		if err := n.healthz(ctx); err != nil {
			return err
		}
	}
	if len(c.nodes) == 1 {
		return nil
	}
	for _, n := range c.nodes {
		leader, current, err := n.metaPeers(ctx)
		if err != nil {
			return err
		}
		if leader == n.name && current < len(c.nodes) {
			return fmt.Errorf("meta leader %s sees %d of %d servers current", leader, current, len(c.nodes))
		}
		if leader == "" {
			return fmt.Errorf("%s knows no meta leader", n.name)
		}
	}
	return nil
}

// freePorts returns n distinct TCP ports on 127.0.0.1 that were free a
// moment ago.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, n)
	ls := make([]net.Listener, n)
	for i := range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls[i], ports[i] = l, l.Addr().(*net.TCPAddr).Port
	}
	for _, l := range ls {
		_ = l.Close()
	}
	return ports
}

// routeMesh is a toxiproxy proxy for every ordered pair of servers: server
// i reaches server j's route port only through proxy (i, j). Cutting the
// proxies to and from one server partitions it from the others, whichever
// side opened a connection.
type routeMesh struct {
	t       testing.TB
	api     *toxiproxy.ApiServer
	proxies map[[2]int]*toxiproxy.Proxy
	n       int
}

func newRouteMesh(t testing.TB, nodes []*natsNode) *routeMesh {
	t.Helper()
	api := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	m := &routeMesh{t: t, api: api, proxies: map[[2]int]*toxiproxy.Proxy{}, n: len(nodes)}
	for i := range nodes {
		for j, to := range nodes {
			if i == j {
				continue
			}
			p := toxiproxy.NewProxy(api, fmt.Sprintf("route-%s-%s", nodes[i].name, to.name), "127.0.0.1:0",
				"127.0.0.1:"+strconv.Itoa(to.routePort))
			if err := p.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(p.Stop)
			m.proxies[[2]int{i, j}] = p
		}
	}
	return m
}

func (m *routeMesh) proxy(from, to int) *toxiproxy.Proxy { return m.proxies[[2]int{from, to}] }

// links returns the proxies to and from server k.
func (m *routeMesh) links(k int) []*toxiproxy.Proxy {
	var out []*toxiproxy.Proxy
	for pair, p := range m.proxies {
		if pair[0] == k || pair[1] == k {
			out = append(out, p)
		}
	}
	return out
}

// blackhole makes every route of server k silently drop all data in both
// directions (toxiproxy's timeout toxic with timeout 0): connections stay
// open, nothing arrives, as when packets are dropped.
func (m *routeMesh) blackhole(k int) error {
	for _, p := range m.links(k) {
		for _, dir := range []string{"upstream", "downstream"} {
			toxic := fmt.Sprintf(`{"name":"blackhole-%s","type":"timeout","stream":%q,"attributes":{"timeout":0}}`, dir, dir)
			if _, err := p.Toxics.AddToxicJson(strings.NewReader(toxic)); err != nil {
				return fmt.Errorf("add toxic to %s: %w", p.Name, err)
			}
		}
	}
	return nil
}

// unblackhole removes blackhole's toxics.
func (m *routeMesh) unblackhole(k int) error {
	for _, p := range m.links(k) {
		for _, dir := range []string{"upstream", "downstream"} {
			if err := p.Toxics.RemoveToxic(context.Background(), "blackhole-"+dir); err != nil {
				return fmt.Errorf("remove toxic from %s: %w", p.Name, err)
			}
		}
	}
	return nil
}

// disconnect closes every route connection of server k and refuses new
// ones (the proxies stop listening), as when a firewall rejects them.
func (m *routeMesh) disconnect(k int) {
	for _, p := range m.links(k) {
		p.Stop()
	}
}

// reconnect listens again on the same addresses.
func (m *routeMesh) reconnect(k int) error {
	for _, p := range m.links(k) {
		if err := p.Start(); err != nil {
			return fmt.Errorf("restart proxy %s on %s: %w", p.Name, p.Listen, err)
		}
	}
	return nil
}
