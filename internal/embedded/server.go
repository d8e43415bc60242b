// Package embedded runs the nats-server library inside the contactstop
// process, with JetStream on and file storage, so that `contactstop serve`
// needs nothing else installed.
//
// By default the server lets any client in. It can require credentials in
// two ways: Config.User and Config.Password (or Config.Token) for a single
// shared credential, optionally with TLS on the listener (Config.TLSCert,
// Config.TLSKey, and Config.TLSCA for mutual TLS); or Config.ConfigFile, a
// nats-server configuration file with accounts, users, permissions and TLS,
// such as deployments/nats/accounts.conf. Either way, the in-process
// connection of the process that embeds the server authenticates like any
// other client (see Config.ClientOptions), but never needs TLS: it does not
// cross a network.
package embedded

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
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

	// ConfigFile is a nats-server configuration file to start from:
	// accounts, users, permissions, TLS, limits, monitoring, clustering.
	// Listen and DataDir replace the file's listen address and JetStream
	// store_dir, JetStream is always on, SyncAlways (when true) turns on
	// sync_interval: always, max_control_line is raised to at least 8192,
	// and the server name defaults to "contactstop-embedded". Users and
	// TLS then come from the file only: User, Password, Token and the TLS
	// fields must be empty. Default: none.
	ConfigFile string
	// User and Password, both or neither, make the server require this
	// user name and password from every client. Not with Token.
	User, Password string
	// Token makes the server require this token from every client.
	Token string
	// TLSCert and TLSKey, both or neither, are PEM files with which the
	// listener serves TLS; network clients must then use TLS. TLSCA, which
	// needs them, is a PEM file of CA certificates: clients on the network
	// must present a certificate signed by one of them (mutual TLS).
	TLSCert, TLSKey, TLSCA string
	// AllowOpen lets the server listen on a non-loopback address without
	// requiring clients to authenticate. Without it, Start refuses such a
	// listener: anyone who can reach it could forge results, write
	// contacts and delete streams.
	AllowOpen bool
}

// ErrOpenListener is returned by Start for a non-loopback listener that
// lets clients in without authentication, unless AllowOpen.
var ErrOpenListener = errors.New("embedded nats-server: refusing to listen on the network without client authentication")

// Validate reports every inconsistent combination of the security fields.
func (c Config) Validate() error {
	var errs []error
	if (c.User == "") != (c.Password == "") {
		errs = append(errs, errors.New("embedded nats-server: User and Password go together"))
	}
	if c.User != "" && c.Token != "" {
		errs = append(errs, errors.New("embedded nats-server: use User and Password or Token, not both"))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("embedded nats-server: TLSCert and TLSKey go together"))
	}
	if c.TLSCA != "" && c.TLSCert == "" {
		errs = append(errs, errors.New("embedded nats-server: TLSCA (mutual TLS) needs TLSCert and TLSKey"))
	}
	if c.ConfigFile != "" && (c.User != "" || c.Password != "" || c.Token != "" || c.TLSCert != "" || c.TLSKey != "" || c.TLSCA != "") {
		errs = append(errs, errors.New("embedded nats-server: with a ConfigFile, set users and TLS in the file, not in User, Password, Token or TLS*"))
	}
	return errors.Join(errs...)
}

// ClientOptions returns what a client of this server needs to authenticate
// when the server was configured with User and Password or with Token:
// nats.UserInfo or nats.Token. It returns nothing otherwise; with a
// ConfigFile, the client must bring the credentials of a user the file
// defines.
func (c Config) ClientOptions() []nats.Option {
	switch {
	case c.User != "":
		return []nats.Option{nats.UserInfo(c.User, c.Password)}
	case c.Token != "":
		return []nats.Option{nats.Token(c.Token)}
	}
	return nil
}

// Server is a running embedded nats-server.
type Server struct {
	*server.Server
}

// Start starts the server and waits until it accepts connections. It fails
// at once when the configuration is invalid (see Validate), the
// configuration file or a TLS file cannot be read, the listen address
// cannot be listened on (the port in use), the data directory cannot be
// created or written, or the server reports a fatal error while starting;
// and after 30 s if it is still not ready.
func Start(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
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
	if err := checkDataDir(dir); err != nil {
		return nil, err
	}
	opts, err := cfg.serverOptions()
	if err != nil {
		return nil, err
	}
	if opts.ServerName == "" {
		opts.ServerName = "contactstop-embedded"
	}
	opts.Host, opts.Port = host, port
	if !cfg.AllowOpen && port != -1 && !loopback(host) && !authenticates(opts) {
		return nil, fmt.Errorf("%w on %s: give a --nats-server-config with users or accounts, mutual TLS (--listen-tls-ca), "+
			"or --nats-user/--nats-password or --nats-token; or --allow-open to run open on purpose", ErrOpenListener, cfg.Listen)
	}
	opts.JetStream = true
	opts.StoreDir = dir
	if cfg.SyncAlways {
		opts.SyncAlways = true
	}
	opts.NoSigs = true
	// Contact keys of long non-ASCII contactIds make subjects of up to
	// about 3.3 KB; leave room above the 4 KiB default.
	opts.MaxControlLine = max(opts.MaxControlLine, 8192)
	if port != -1 {
		if err := checkListen(host, port); err != nil {
			return nil, err
		}
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats-server: %w", err)
	}
	l := &logger{fatal: make(chan string, 1)}
	if cfg.Logger != nil {
		l.s = cfg.Logger.Named("nats-server").Sugar()
	}
	srv.SetLoggerV2(l, false, false, false)
	srv.Start()
	// Ready, or the server's first fatal error (a port taken since the
	// check, a JetStream store it cannot use), whichever comes first.
	deadline := time.Now().Add(30 * time.Second)
	for !srv.ReadyForConnections(100 * time.Millisecond) {
		select {
		case msg := <-l.fatal:
			srv.Shutdown()
			return nil, fmt.Errorf("embedded nats-server: %s", msg)
		default:
		}
		if time.Now().After(deadline) {
			srv.Shutdown()
			return nil, errors.New("embedded nats-server did not become ready within 30s")
		}
	}
	return &Server{srv}, nil
}

// checkListen fails at once, naming the address, when the client port
// cannot be listened on (another process has it, say), rather than leaving
// the server to fail in the background.
func checkListen(host string, port int) error {
	if port == 0 {
		return nil // any free port
	}
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		hint := ""
		if errors.Is(err, syscall.EADDRINUSE) {
			hint = " (another process listens there: stop it, or give serve another --listen, or --nats-url to use a running server)"
		}
		return fmt.Errorf("embedded nats-server: cannot listen on %s: %w%s", addr, err, hint)
	}
	return ln.Close()
}

// checkDataDir fails at once when JetStream could not keep its files under
// dir: it cannot be created, is not a directory, or cannot be written.
func checkDataDir(dir string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("embedded nats-server: data directory %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, ".contactstop-write-check-*")
	if err != nil {
		return fmt.Errorf("embedded nats-server: data directory %s is not writable: %w", dir, err)
	}
	name := f.Name()
	_ = f.Close()
	return os.Remove(name)
}

// serverOptions returns the options of the configuration file, or of the
// security fields, before Start applies what contactstop needs.
func (c Config) serverOptions() (*server.Options, error) {
	if c.ConfigFile != "" {
		opts, err := server.ProcessConfigFile(c.ConfigFile)
		if err != nil {
			return nil, fmt.Errorf("embedded nats-server: config file: %w", err)
		}
		return opts, nil
	}
	opts := &server.Options{Username: c.User, Password: c.Password, Authorization: c.Token}
	if c.TLSCert != "" {
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{
			CertFile: c.TLSCert,
			KeyFile:  c.TLSKey,
			CaFile:   c.TLSCA,
			Verify:   c.TLSCA != "",
		})
		if err != nil {
			return nil, fmt.Errorf("embedded nats-server: TLS: %w", err)
		}
		opts.TLSConfig = tc
		opts.TLSVerify = c.TLSCA != ""
		opts.TLSTimeout = 2
	}
	return opts, nil
}

// loopback reports whether host names a loopback address only: a
// "localhost" or an IP address in 127.0.0.0/8 or ::1. An empty host, "0.0.0.0"
// or "::" listens on every interface; any other name may resolve anywhere.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// authenticates reports whether every client must authenticate: a user,
// password or token, users or nkeys (of accounts, say), an operator's
// trust, or client certificates (mutual TLS) — and no user that clients
// without credentials become (no_auth_user).
func authenticates(o *server.Options) bool {
	if o.NoAuthUser != "" {
		return false
	}
	return o.Username != "" || o.Authorization != "" || len(o.Users) > 0 || len(o.Nkeys) > 0 ||
		len(o.TrustedOperators) > 0 || len(o.TrustedKeys) > 0 || o.TLSVerify
}

// Stop shuts the server down and waits for it, flushing JetStream's files.
func (s *Server) Stop() {
	s.Shutdown()
	s.WaitForShutdown()
}

// logger adapts zap (s, when not nil) to nats-server's Logger interface.
// Notices (the start-up banner, among others) go to debug level: serve
// says itself that the server started. The first fatal error is also
// passed to Start on fatal.
type logger struct {
	s     *zap.SugaredLogger
	fatal chan string
}

func (l *logger) Noticef(format string, v ...any) {
	if l.s != nil {
		l.s.Debugf(format, v...)
	}
}

func (l *logger) Warnf(format string, v ...any) {
	if l.s != nil {
		l.s.Warnf(format, v...)
	}
}

func (l *logger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	select {
	case l.fatal <- msg:
	default:
	}
	if l.s != nil {
		l.s.Error(msg)
	}
}

func (l *logger) Errorf(format string, v ...any) {
	if l.s != nil {
		l.s.Errorf(format, v...)
	}
}

func (l *logger) Debugf(format string, v ...any) {
	if l.s != nil {
		l.s.Debugf(format, v...)
	}
}

func (l *logger) Tracef(format string, v ...any) {
	if l.s != nil {
		l.s.Debugf(format, v...)
	}
}
