package embedded

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
)

func start(t *testing.T, cfg Config) *Server {
	t.Helper()
	cfg.DataDir = filepath.Join(t.TempDir(), "data")
	cfg.Listen = freeAddr(t)
	srv, err := Start(cfg)
	require.NoError(t, err)
	t.Cleanup(srv.Stop)
	return srv
}

// connect connects over the network (or in-process) and proves the
// connection works by asking JetStream for the account's info.
func connect(t *testing.T, srv *Server, inProcess bool, opts ...nats.Option) error {
	t.Helper()
	url := srv.ClientURL()
	if inProcess {
		url = ""
		opts = append(opts, nats.InProcessServer(srv))
	}
	nc, err := nats.Connect(url, append(opts, nats.Timeout(5*time.Second), nats.NoReconnect())...)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	_, err = js.AccountInfo(t.Context())
	return err
}

// requireRefusedInProcess asserts that an in-process connection with opts
// is refused. Such a refusal is slow (the server gives up writing its
// -ERR to the synchronous pipe after its 10 s write deadline) and
// surfaces as a closed pipe, not as nats.ErrAuthorization.
func requireRefusedInProcess(t *testing.T, srv *Server, opts ...nats.Option) {
	t.Helper()
	require.Error(t, connect(t, srv, true, opts...))
}

func TestStartRequiresCredentials(t *testing.T) {
	t.Parallel()
	for i, cfg := range []Config{
		{User: "worker", Password: "s3cret"},
		{Token: "t0ken"},
	} {
		srv := start(t, cfg)
		for _, inProcess := range []bool{false, true} {
			require.NoError(t, connect(t, srv, inProcess, cfg.ClientOptions()...), "in-process %v", inProcess)
		}
		require.ErrorIs(t, connect(t, srv, false), nats.ErrAuthorization)
		require.ErrorIs(t, connect(t, srv, false, nats.UserInfo("worker", "wrong")), nats.ErrAuthorization)
		if i == 0 {
			requireRefusedInProcess(t, srv)
		}
	}
	require.Empty(t, Config{}.ClientOptions())
}

func TestStartWithTLS(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	for _, mutual := range []bool{false, true} {
		cfg := Config{TLSCert: pki.serverCert, TLSKey: pki.serverKey, User: "worker", Password: "s3cret"}
		client := []nats.Option{nats.RootCAs(pki.caFile)}
		if mutual {
			cfg.TLSCA = pki.caFile
			client = append(client, nats.ClientCert(pki.clientCert, pki.clientKey))
		}
		srv := start(t, cfg)
		require.NoError(t, connect(t, srv, false, append(client, cfg.ClientOptions()...)...), "mutual %v", mutual)
		require.Error(t, connect(t, srv, false, cfg.ClientOptions()...), "a network client without the CA cannot connect (mutual %v)", mutual)
		if mutual {
			require.Error(t, connect(t, srv, false, append(cfg.ClientOptions(), nats.RootCAs(pki.caFile))...), "nor one without a client certificate")
		}
		// The in-process connection needs no TLS, only the credentials.
		require.NoError(t, connect(t, srv, true, cfg.ClientOptions()...), "mutual %v", mutual)
	}
}

func TestStartWithConfigFile(t *testing.T) {
	t.Parallel()
	conf := filepath.Join(t.TempDir(), "nats.conf")
	require.NoError(t, os.WriteFile(conf, []byte(`
listen: 0.0.0.0:9999            # replaced by Config.Listen
jetstream { store_dir: /nonexistent/ignored, max_file_store: 1G }
accounts {
  APP: {
    jetstream: enabled
    users: [
      {user: worker, password: worker-pw}
      {user: reader, password: reader-pw, permissions: {publish: {deny: ">"}}}
    ]
  }
}
`), 0o600))
	srv := start(t, Config{ConfigFile: conf, SyncAlways: true})
	require.Equal(t, "contactstop-embedded", srv.Name())
	js := srv.JetStreamConfig()
	require.NotNil(t, js)
	require.True(t, js.SyncAlways)
	require.NotContains(t, js.StoreDir, "nonexistent", "the data dir replaces the file's store_dir")
	require.EqualValues(t, 1_000_000_000, js.MaxStore, "the file's other JetStream settings stay")

	for _, inProcess := range []bool{false, true} {
		require.NoError(t, connect(t, srv, inProcess, nats.UserInfo("worker", "worker-pw")))
		require.Error(t, connect(t, srv, inProcess, nats.UserInfo("reader", "reader-pw")), "reader may not use the JetStream API")
	}
	require.ErrorIs(t, connect(t, srv, false), nats.ErrAuthorization)
	require.ErrorIs(t, connect(t, srv, false, nats.UserInfo("worker", "wrong")), nats.ErrAuthorization)
}

// TestStartWithDeploymentConfig starts the embedded server from the NATS
// configuration shipped in deployments/nats, as `serve --nats-server-config`
// does, and connects in-process as its worker user.
func TestStartWithDeploymentConfig(t *testing.T) {
	t.Parallel()
	srv := start(t, Config{ConfigFile: filepath.Join("..", "..", "deployments", "nats", "accounts.conf")})
	require.NoError(t, connect(t, srv, true, nats.UserInfo("worker", "worker-dev-password")))
	require.ErrorIs(t, connect(t, srv, false), nats.ErrAuthorization)
}

func TestStartRefusesBadSecurity(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{User: "u"}, "User and Password go together"},
		{Config{Password: "p"}, "User and Password go together"},
		{Config{User: "u", Password: "p", Token: "t"}, "not both"},
		{Config{TLSCert: "c"}, "TLSCert and TLSKey go together"},
		{Config{TLSCA: "ca"}, "needs TLSCert and TLSKey"},
		{Config{ConfigFile: "f", Token: "t"}, "set users and TLS in the file"},
		{Config{ConfigFile: filepath.Join(t.TempDir(), "missing.conf")}, "config file"},
		{Config{TLSCert: "missing.pem", TLSKey: "missing-key.pem"}, "TLS"},
	} {
		tc.cfg.DataDir = t.TempDir()
		tc.cfg.Listen = freeAddr(t)
		_, err := Start(tc.cfg)
		require.ErrorContains(t, err, tc.want)
	}
}

// testPKI is a CA with a server certificate for 127.0.0.1 and a client
// certificate, as PEM files.
type testPKI struct {
	caFile, serverCert, serverKey, clientCert, clientKey string
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
		return p
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)
	leaf := func(serial int64, usage x509.ExtKeyUsage, name string) (certFile, keyFile string) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		require.NoError(t, err)
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		require.NoError(t, err)
		return write(name+".pem", "CERTIFICATE", der), write(name+"-key.pem", "PRIVATE KEY", keyDER)
	}
	p := testPKI{caFile: write("ca.pem", "CERTIFICATE", caDER)}
	p.serverCert, p.serverKey = leaf(2, x509.ExtKeyUsageServerAuth, "server")
	p.clientCert, p.clientKey = leaf(3, x509.ExtKeyUsageClientAuth, "client")
	_, err = tls.LoadX509KeyPair(p.serverCert, p.serverKey)
	require.NoError(t, err)
	return p
}
