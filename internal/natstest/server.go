// Package natstest starts real NATS servers, in-process, for tests: a random
// loopback port and JetStream file storage in a test's temporary directory.
// It is the one helper every package's integration tests use; nothing in
// contactstop's tests mocks NATS or the store.
package natstest

import (
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Server is one in-process nats-server with JetStream enabled.
type Server struct {
	t    testing.TB
	opts *server.Options
	srv  *server.Server
}

// Start starts a server on 127.0.0.1 with a random port and JetStream stored
// under t.TempDir(). It is shut down when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	opts := &server.Options{
		Host:               "127.0.0.1",
		Port:               server.RANDOM_PORT,
		NoLog:              true,
		NoSigs:             true,
		JetStream:          true,
		StoreDir:           t.TempDir(),
		MaxControlLine:     8192,
		JetStreamMaxMemory: 256 << 20,
		JetStreamMaxStore:  64 << 30, // a limit, not an allocation: streams reserve their MaxBytes from it
	}
	s := &Server{t: t, opts: opts}
	s.start()
	t.Cleanup(s.Shutdown)
	return s
}

func (s *Server) start() {
	s.t.Helper()
	srv, err := server.NewServer(s.opts)
	if err != nil {
		s.t.Fatalf("natstest: new server: %v", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		s.t.Fatalf("natstest: server not ready")
	}
	// Keep the port, so that Restart comes back where clients reconnect.
	s.opts.Port = srv.Addr().(*net.TCPAddr).Port
	s.srv = srv
}

// URL is the client URL of the server.
func (s *Server) URL() string { return s.srv.ClientURL() }

// Server returns the underlying nats-server.
func (s *Server) Server() *server.Server { return s.srv }

// Shutdown stops the server and waits for it to exit. It is safe to call
// more than once.
func (s *Server) Shutdown() {
	if s.srv == nil {
		return
	}
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
}

// Restart shuts the server down and starts it again on the same port with
// the same JetStream store, as after a crash of the server process.
func (s *Server) Restart() {
	s.t.Helper()
	s.Shutdown()
	s.start()
}

// Connect returns a client connection that reconnects forever (so that tests
// of server restarts see the behaviour of production clients) and is closed
// when the test ends.
func (s *Server) Connect(t testing.TB) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(s.URL(),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(50*time.Millisecond),
		nats.Timeout(5*time.Second),
	)
	if err != nil {
		t.Fatalf("natstest: connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// JetStream returns a JetStream context on a new connection (see Connect).
func (s *Server) JetStream(t testing.TB) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc := s.Connect(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("natstest: jetstream: %v", err)
	}
	return nc, js
}
