// Package embedded runs the nats-server library inside the contactstop
// process, with JetStream on and file storage, so that `contactstop serve`
// needs nothing else installed.
package embedded

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.uber.org/zap"
)

// Config configures the embedded server.
type Config struct {
	// DataDir holds JetStream's files (under DataDir/jetstream). Default
	// "./data".
	DataDir string
	// Listen is the client address. Default "127.0.0.1:4222".
	Listen string
	// SyncAlways makes JetStream fsync every write before acknowledging it,
	// so that acknowledged messages survive an OS crash or power loss, at a
	// cost in throughput. By default JetStream syncs every 2 minutes, which
	// survives a process crash but not necessarily an OS crash.
	SyncAlways bool
	// Logger receives the server's logs, named "nats-server". Default: none.
	Logger *zap.Logger
}

// Server is a running embedded nats-server.
type Server struct {
	*server.Server
}

// Start starts the server and waits until it accepts connections.
func Start(cfg Config) (*Server, error) {
	if cfg.DataDir == "" {
		cfg.DataDir = "./data"
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:4222"
	}
	host, portStr, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen address %q: %w", cfg.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < -1 || port > 65535 {
		return nil, fmt.Errorf("listen address %q: bad port", cfg.Listen)
	}
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	opts := &server.Options{
		ServerName: "contactstop-embedded",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   dir,
		SyncAlways: cfg.SyncAlways,
		NoSigs:     true,
		// Contact keys of long non-ASCII contactIds make subjects of up to
		// about 3.3 KB; leave room above the 4 KiB default.
		MaxControlLine: 8192,
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats-server: %w", err)
	}
	if cfg.Logger != nil {
		srv.SetLoggerV2(&logger{cfg.Logger.Named("nats-server").Sugar()}, false, false, false)
	}
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return nil, errors.New("embedded nats-server did not become ready within 30s (is the port in use?)")
	}
	return &Server{srv}, nil
}

// Stop shuts the server down and waits for it, flushing JetStream's files.
func (s *Server) Stop() {
	s.Shutdown()
	s.WaitForShutdown()
}

// logger adapts zap to nats-server's Logger interface.
type logger struct{ s *zap.SugaredLogger }

func (l *logger) Noticef(format string, v ...any) { l.s.Infof(format, v...) }
func (l *logger) Warnf(format string, v ...any)   { l.s.Warnf(format, v...) }
func (l *logger) Fatalf(format string, v ...any)  { l.s.Errorf(format, v...) }
func (l *logger) Errorf(format string, v ...any)  { l.s.Errorf(format, v...) }
func (l *logger) Debugf(format string, v ...any)  { l.s.Debugf(format, v...) }
func (l *logger) Tracef(format string, v ...any)  { l.s.Debugf(format, v...) }
