package natstest

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Timeouts of the cluster helper. They are generous: a meta-leader or
// stream-leader election on a loaded two-core machine running -race can take
// several seconds, and a restarted server may have streams to catch up on.
const (
	clusterReadyTimeout = 60 * time.Second
	leaderTimeout       = 30 * time.Second
	pollInterval        = 50 * time.Millisecond
)

// globalAccount is the account of clients on a server without accounts.
const globalAccount = "$G"

// Cluster is n in-process nats-servers clustered on loopback, each with
// JetStream stored under a test's temporary directory. Servers can be killed
// and restarted on the same addresses and with the same store, as after a
// crash of one node. Every server is shut down when the test ends.
//
// Its methods are safe for concurrent use; those that wait (Restart,
// WaitReady, StreamLeader, ConsumerLeader, MoveLeader) fail the test with
// t.Fatalf and so belong on the test's goroutine.
type Cluster struct {
	t    testing.TB
	name string

	mu          sync.Mutex
	servers     []*server.Server // nil while killed
	dirs        []string
	clientPorts []int
	routePorts  []int
}

// StartCluster starts n servers (n ≥ 1) named n0 … n(n-1) in a cluster,
// with client and route ports on 127.0.0.1 picked at random once and kept
// across restarts. It returns when the JetStream meta group has a leader
// that sees all n peers and every server is current with it, so that
// streams with up to n replicas can be created at once. It fails the test
// if that does not happen within a minute.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	if n < 1 {
		t.Fatalf("natstest: a cluster needs at least one server, got %d", n)
	}
	c := &Cluster{
		t:           t,
		name:        "contactstop-test",
		servers:     make([]*server.Server, n),
		dirs:        make([]string, n),
		clientPorts: freePorts(t, n),
		routePorts:  freePorts(t, n),
	}
	for i := range n {
		// Made before Cleanup(c.Shutdown) is registered, so removed after
		// the servers have stopped writing to them.
		c.dirs[i] = t.TempDir()
	}
	t.Cleanup(c.Shutdown)
	for i := range n {
		c.start(i)
	}
	c.WaitReady()
	return c
}

// freePorts returns n distinct TCP ports on 127.0.0.1 that were free a
// moment ago. All n listeners are held open together so the ports differ.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, n)
	ls := make([]net.Listener, n)
	for i := range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("natstest: find a free port: %v", err)
		}
		ls[i] = l
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	for _, l := range ls {
		_ = l.Close()
	}
	return ports
}

// options builds server i's options afresh: nats-server changes the
// Options it is given, so they are not reused across restarts.
func (c *Cluster) options(i int) *server.Options {
	routes := make([]string, len(c.routePorts))
	for j, p := range c.routePorts {
		// Every server lists all routes, itself included (it ignores the
		// route to itself): the JetStream meta group then expects n peers
		// from the start.
		routes[j] = "nats://127.0.0.1:" + strconv.Itoa(p)
	}
	return &server.Options{
		ServerName:         fmt.Sprintf("n%d", i),
		Host:               "127.0.0.1",
		Port:               c.clientPorts[i],
		NoLog:              true,
		NoSigs:             true,
		JetStream:          true,
		StoreDir:           c.dirs[i],
		MaxControlLine:     8192,
		JetStreamMaxMemory: 256 << 20,
		JetStreamMaxStore:  64 << 30, // a limit, not an allocation: streams reserve their MaxBytes from it
		Cluster: server.ClusterOpts{
			Name: c.name,
			Host: "127.0.0.1",
			Port: c.routePorts[i],
		},
		Routes: server.RoutesFromStr(strings.Join(routes, ",")),
	}
}

// start starts server i and waits until it accepts client connections.
func (c *Cluster) start(i int) {
	c.t.Helper()
	srv, err := server.NewServer(c.options(i))
	if err != nil {
		c.t.Fatalf("natstest: new server n%d: %v", i, err)
	}
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		c.t.Fatalf("natstest: server n%d not ready for connections (is port %d or %d taken?)",
			i, c.clientPorts[i], c.routePorts[i])
	}
	c.mu.Lock()
	c.servers[i] = srv
	c.mu.Unlock()
}

// running returns the servers that are up, by index.
func (c *Cluster) running() map[int]*server.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[int]*server.Server, len(c.servers))
	for i, s := range c.servers {
		if s != nil && s.Running() {
			out[i] = s
		}
	}
	return out
}

// Size is the number of servers, running or not.
func (c *Cluster) Size() int { return len(c.clientPorts) }

// URLs is the comma-separated client URLs of every server, running or not,
// in the form nats.Connect accepts.
func (c *Cluster) URLs() string {
	urls := make([]string, len(c.clientPorts))
	for i := range c.clientPorts {
		urls[i] = c.URL(i)
	}
	return strings.Join(urls, ",")
}

// Servers returns the servers by index; a killed server's entry is nil.
func (c *Cluster) Servers() []*server.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*server.Server, len(c.servers))
	copy(out, c.servers)
	return out
}

// Server returns server i, or nil while it is killed.
func (c *Cluster) Server(i int) *server.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.servers[i]
}

// Kill shuts server i down and waits until it has stopped, keeping its
// JetStream store for Restart. Clients connected to it reconnect to the
// others. Killing a killed server does nothing.
func (c *Cluster) Kill(i int) {
	c.t.Helper()
	c.mu.Lock()
	srv := c.servers[i]
	c.servers[i] = nil
	c.mu.Unlock()
	if srv == nil {
		return
	}
	srv.Shutdown()
	srv.WaitForShutdown()
}

// Restart starts killed server i again on its addresses and store, and
// returns once it has rejoined the cluster and is current: the meta leader
// sees every running server as a peer, and this server reports healthy
// (every stream and consumer it replicates has caught up). It fails the
// test if that takes more than a minute. Restart kills the server first if
// it is running.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	c.Kill(i)
	c.start(i)
	c.WaitReady()
}

// WaitReady waits until the JetStream meta group has a leader that sees
// every running server as a peer, and every running server is current and
// healthy (its streams and consumers caught up). It fails the test if that
// takes more than a minute.
func (c *Cluster) WaitReady() {
	c.t.Helper()
	deadline := time.Now().Add(clusterReadyTimeout)
	var why string
	for {
		why = c.notReady()
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("natstest: cluster not ready after %s: %s", clusterReadyTimeout, why)
		}
		time.Sleep(pollInterval)
	}
}

// notReady says why the cluster is not ready, or "" when it is.
func (c *Cluster) notReady() string {
	up := c.running()
	var leader *server.Server
	for _, s := range up {
		if s.JetStreamIsLeader() {
			leader = s
		}
	}
	if leader == nil {
		return "no JetStream meta leader"
	}
	if peers := leader.JetStreamClusterPeers(); len(peers) != len(up) {
		return fmt.Sprintf("meta leader %s sees peers %v, want %d", leader.Name(), peers, len(up))
	}
	for _, s := range up {
		if !s.JetStreamIsCurrent() {
			return fmt.Sprintf("server %s is not current with the meta leader", s.Name())
		}
		if h := s.Healthz(nil); h.Status != "ok" || h.Error != "" {
			return fmt.Sprintf("server %s is not healthy: %s %s", s.Name(), h.Status, h.Error)
		}
	}
	return ""
}

// StreamLeader returns the index of the server leading the stream (in the
// global account, where clients of a server without accounts are), waiting
// up to 30 s for a leader to be elected. It fails the test if none is.
func (c *Cluster) StreamLeader(stream string) int {
	c.t.Helper()
	return c.waitLeader("stream "+stream, func(s *server.Server) bool {
		return s.JetStreamIsStreamLeader(globalAccount, stream)
	})
}

// ConsumerLeader is StreamLeader for one of the stream's consumers.
func (c *Cluster) ConsumerLeader(stream, consumer string) int {
	c.t.Helper()
	return c.waitLeader("consumer "+stream+" > "+consumer, func(s *server.Server) bool {
		return s.JetStreamIsConsumerLeader(globalAccount, stream, consumer)
	})
}

func (c *Cluster) waitLeader(what string, isLeader func(*server.Server) bool) int {
	c.t.Helper()
	deadline := time.Now().Add(leaderTimeout)
	for {
		for i, s := range c.running() {
			if isLeader(s) {
				return i
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("natstest: no leader for %s after %s", what, leaderTimeout)
		}
		time.Sleep(pollInterval)
	}
}

// Shutdown stops every running server and waits for each to exit. It is
// safe to call more than once; it runs when the test ends.
func (c *Cluster) Shutdown() {
	for i := range c.Servers() {
		c.Kill(i)
	}
}

// URL is server i's client URL.
func (c *Cluster) URL(i int) string {
	return "nats://127.0.0.1:" + strconv.Itoa(c.clientPorts[i])
}

// Connect returns a client connection to any of the servers (picked at
// random, as nats.go does with a list of URLs), which reconnects forever to
// whichever is up, as production clients do, and is closed when the test
// ends. opts are applied after those defaults; with nats.DontRandomize()
// the client connects to the servers in index order.
func (c *Cluster) Connect(t testing.TB, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(c.URLs(), append([]nats.Option{
		nats.MaxReconnects(-1),
		nats.ReconnectWait(50 * time.Millisecond),
		nats.Timeout(5 * time.Second),
	}, opts...)...)
	if err != nil {
		t.Fatalf("natstest: connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// JetStream returns a JetStream context on a new connection (see Connect).
func (c *Cluster) JetStream(t testing.TB, opts ...nats.Option) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc := c.Connect(t, opts...)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("natstest: jetstream: %v", err)
	}
	return nc, js
}

// MoveLeader asks the leader of a stream (consumer "") or of one of its
// consumers to step down in favour of server to, and waits until server
// to leads it. It fails the test if that does not happen within 30 s.
func (c *Cluster) MoveLeader(stream, consumer string, to int) {
	c.t.Helper()
	nc, err := nats.Connect(c.URLs(), nats.Timeout(5*time.Second))
	if err != nil {
		c.t.Fatalf("natstest: connect: %v", err)
	}
	defer nc.Close()
	subject := "$JS.API.STREAM.LEADER.STEPDOWN." + stream
	leader := func() int { return c.StreamLeader(stream) }
	if consumer != "" {
		subject = "$JS.API.CONSUMER.LEADER.STEPDOWN." + stream + "." + consumer
		leader = func() int { return c.ConsumerLeader(stream, consumer) }
	}
	body := []byte(fmt.Sprintf(`{"placement":{"preferred":"n%d"}}`, to))
	deadline := time.Now().Add(leaderTimeout)
	for leader() != to {
		if time.Now().After(deadline) {
			c.t.Fatalf("natstest: could not move the leader of %s %s to n%d", stream, consumer, to)
		}
		// An error (no leader at the moment, a timeout) is retried.
		_, _ = nc.Request(subject, body, 5*time.Second)
		c.waitFor(time.Second, func() bool { return leader() == to })
	}
}

// waitFor polls cond until it holds or d has passed.
func (c *Cluster) waitFor(d time.Duration, cond func() bool) {
	deadline := time.Now().Add(d)
	for !cond() && time.Now().Before(deadline) {
		time.Sleep(pollInterval)
	}
}
