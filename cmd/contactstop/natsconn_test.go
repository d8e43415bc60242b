package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/spf13/pflag"
	"github.com/stretchr/testify/require"
)

// startSecuredServer starts an in-process nats-server with the given
// security settings on a random loopback port and returns its URL.
func startSecuredServer(t *testing.T, configure func(*server.Options)) string {
	t.Helper()
	return startPlainServer(t, configure).ClientURL()
}

// startPlainServer starts an in-process nats-server, without JetStream
// unless configure turns it on, on a random loopback port; it is shut down
// when the test ends.
func startPlainServer(t *testing.T, configure func(*server.Options)) *server.Server {
	t.Helper()
	opts := &server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true}
	configure(opts)
	srv, err := server.NewServer(opts)
	require.NoError(t, err)
	srv.Start()
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	require.True(t, srv.ReadyForConnections(10*time.Second))
	return srv
}

// connectWith parses the command-line flags into a natsSecurity, as a
// command would, and connects with its options.
func connectWith(t *testing.T, url string, args ...string) error {
	t.Helper()
	var s natsSecurity
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	s.register(fs)
	require.NoError(t, fs.Parse(args))
	opts, err := s.options()
	if err != nil {
		return err
	}
	nc, err := nats.Connect(url, append(opts, nats.Timeout(5*time.Second), nats.NoReconnect())...)
	if err != nil {
		return err
	}
	defer nc.Close()
	return nc.Flush()
}

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, data, 0o600))
	return p
}

func TestNATSUserPassword(t *testing.T) {
	t.Parallel()
	url := startSecuredServer(t, func(o *server.Options) { o.Username, o.Password = "worker", "s3cret" })
	require.NoError(t, connectWith(t, url, "--nats-user", "worker", "--nats-password", "s3cret"))
	require.ErrorIs(t, connectWith(t, url), nats.ErrAuthorization)
	require.ErrorIs(t, connectWith(t, url, "--nats-user", "worker", "--nats-password", "wrong"), nats.ErrAuthorization)
}

func TestNATSToken(t *testing.T) {
	t.Parallel()
	url := startSecuredServer(t, func(o *server.Options) { o.Authorization = "t0ken" })
	require.NoError(t, connectWith(t, url, "--nats-token", "t0ken"))
	require.ErrorIs(t, connectWith(t, url), nats.ErrAuthorization)
	require.ErrorIs(t, connectWith(t, url, "--nats-token", "other"), nats.ErrAuthorization)
}

func TestNATSNkey(t *testing.T) {
	t.Parallel()
	user, err := nkeys.CreateUser()
	require.NoError(t, err)
	pub, err := user.PublicKey()
	require.NoError(t, err)
	seed, err := user.Seed()
	require.NoError(t, err)
	url := startSecuredServer(t, func(o *server.Options) { o.Nkeys = []*server.NkeyUser{{Nkey: pub}} })

	require.NoError(t, connectWith(t, url, "--nats-nkey", writeFile(t, "user.nk", seed)))
	require.ErrorIs(t, connectWith(t, url), nats.ErrAuthorization)

	other, err := nkeys.CreateUser()
	require.NoError(t, err)
	otherSeed, err := other.Seed()
	require.NoError(t, err)
	require.ErrorIs(t, connectWith(t, url, "--nats-nkey", writeFile(t, "other.nk", otherSeed)), nats.ErrAuthorization)
	require.ErrorContains(t, connectWith(t, url, "--nats-nkey", writeFile(t, "bad.nk", []byte("not a seed"))), "--nats-nkey")
}

func TestNATSCreds(t *testing.T) {
	t.Parallel()
	operator, err := nkeys.CreateOperator()
	require.NoError(t, err)
	operatorPub, err := operator.PublicKey()
	require.NoError(t, err)
	account, err := nkeys.CreateAccount()
	require.NoError(t, err)
	accountPub, err := account.PublicKey()
	require.NoError(t, err)
	accountJWT, err := jwt.NewAccountClaims(accountPub).Encode(operator)
	require.NoError(t, err)
	operatorClaims := jwt.NewOperatorClaims(operatorPub)
	resolver := &server.MemAccResolver{}
	require.NoError(t, resolver.Store(accountPub, accountJWT))
	url := startSecuredServer(t, func(o *server.Options) {
		o.TrustedOperators = []*jwt.OperatorClaims{operatorClaims}
		o.AccountResolver = resolver
	})

	creds := func(signer nkeys.KeyPair) string {
		user, err := nkeys.CreateUser()
		require.NoError(t, err)
		userPub, err := user.PublicKey()
		require.NoError(t, err)
		userJWT, err := jwt.NewUserClaims(userPub).Encode(signer)
		require.NoError(t, err)
		seed, err := user.Seed()
		require.NoError(t, err)
		data, err := jwt.FormatUserConfig(userJWT, seed)
		require.NoError(t, err)
		return writeFile(t, "user.creds", data)
	}
	require.NoError(t, connectWith(t, url, "--nats-creds", creds(account)))
	require.ErrorIs(t, connectWith(t, url), nats.ErrAuthorization)

	stranger, err := nkeys.CreateAccount() // an account the operator never signed
	require.NoError(t, err)
	require.ErrorIs(t, connectWith(t, url, "--nats-creds", creds(stranger)), nats.ErrAuthorization)
	require.ErrorContains(t, connectWith(t, url, "--nats-creds", writeFile(t, "x.creds", []byte("hello"))), "is not a NATS credentials file")
	require.ErrorContains(t, connectWith(t, url, "--nats-creds", filepath.Join(t.TempDir(), "missing.creds")), "--nats-creds")
}

// testPKI is a CA with a server certificate for 127.0.0.1 and a client
// certificate, all as PEM files.
type testPKI struct {
	caFile, serverCert, serverKey, clientCert, clientKey string
	caPool                                               *x509.CertPool
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	dir := t.TempDir()
	write := func(name string, block *pem.Block) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, pem.EncodeToMemory(block), 0o600))
		return p
	}
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		return k
	}
	serial := int64(0)
	sign := func(tmpl *x509.Certificate, key *ecdsa.PrivateKey, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, []byte) {
		serial++
		tmpl.SerialNumber = big.NewInt(serial)
		tmpl.NotBefore = time.Now().Add(-time.Hour)
		tmpl.NotAfter = time.Now().Add(time.Hour)
		if parent == nil {
			parent, parentKey = tmpl, key
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
		require.NoError(t, err)
		cert, err := x509.ParseCertificate(der)
		require.NoError(t, err)
		return cert, der
	}
	keyBlock := func(k *ecdsa.PrivateKey) *pem.Block {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		require.NoError(t, err)
		return &pem.Block{Type: "PRIVATE KEY", Bytes: der}
	}

	caKey := newKey()
	ca, caDER := sign(&x509.Certificate{
		Subject: pkix.Name{CommonName: "contactstop test CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign,
	}, caKey, nil, nil)
	serverKey := newKey()
	_, serverDER := sign(&x509.Certificate{
		Subject: pkix.Name{CommonName: "nats"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, serverKey, ca, caKey)
	clientKey := newKey()
	_, clientDER := sign(&x509.Certificate{
		Subject: pkix.Name{CommonName: "worker"}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, clientKey, ca, caKey)

	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return testPKI{
		caFile:     write("ca.pem", &pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		serverCert: write("server.pem", &pem.Block{Type: "CERTIFICATE", Bytes: serverDER}),
		serverKey:  write("server-key.pem", keyBlock(serverKey)),
		clientCert: write("client.pem", &pem.Block{Type: "CERTIFICATE", Bytes: clientDER}),
		clientKey:  write("client-key.pem", keyBlock(clientKey)),
		caPool:     pool,
	}
}

func (p testPKI) serverTLS(t *testing.T, mutual bool) func(*server.Options) {
	return func(o *server.Options) {
		cert, err := tls.LoadX509KeyPair(p.serverCert, p.serverKey)
		require.NoError(t, err)
		o.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		if mutual {
			o.TLSConfig.ClientCAs = p.caPool
			o.TLSConfig.ClientAuth = tls.RequireAndVerifyClientCert
			o.TLSVerify = true
		}
		o.TLSTimeout = 5
	}
}

func TestNATSTLS(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	other := newTestPKI(t)
	url := startSecuredServer(t, pki.serverTLS(t, false))

	require.NoError(t, connectWith(t, url, "--tls-ca", pki.caFile))
	var unknownCA x509.UnknownAuthorityError
	require.ErrorAs(t, connectWith(t, url), &unknownCA, "without --tls-ca the server's private CA is not trusted")
	require.ErrorAs(t, connectWith(t, url, "--tls-ca", other.caFile), &unknownCA, "a server certificate from another CA is refused")

	plain := startSecuredServer(t, func(*server.Options) {})
	require.ErrorIs(t, connectWith(t, plain, "--tls-ca", pki.caFile), nats.ErrSecureConnWanted, "TLS asked for is never silently dropped")
}

func TestNATSMutualTLS(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	other := newTestPKI(t)
	url := startSecuredServer(t, pki.serverTLS(t, true))

	require.NoError(t, connectWith(t, url, "--tls-ca", pki.caFile, "--tls-cert", pki.clientCert, "--tls-key", pki.clientKey))
	require.Error(t, connectWith(t, url, "--tls-ca", pki.caFile), "no client certificate")
	require.Error(t, connectWith(t, url, "--tls-ca", pki.caFile, "--tls-cert", other.clientCert, "--tls-key", other.clientKey), "a client certificate from another CA")
}

func TestNATSSecurityFlagErrors(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	notPEM := writeFile(t, "ca.txt", []byte("not a certificate"))
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--nats-user", "u"}, []string{"--nats-user needs --nats-password"}},
		{[]string{"--nats-password", "p"}, []string{"--nats-password needs --nats-user"}},
		{[]string{"--nats-user", "u", "--nats-password", "p", "--nats-token", "t"}, []string{"choose one way to authenticate to NATS, not --nats-user/--nats-password and --nats-token"}},
		{[]string{"--nats-creds", "a", "--nats-nkey", "b"}, []string{"not --nats-creds and --nats-nkey"}},
		{[]string{"--tls-cert", pki.clientCert}, []string{"--tls-cert needs --tls-key"}},
		{[]string{"--tls-key", pki.clientKey}, []string{"--tls-key needs --tls-cert"}},
		{[]string{"--tls-cert", pki.clientCert, "--tls-key", pki.serverKey}, []string{"--tls-cert/--tls-key", "private key does not match"}},
		{[]string{"--tls-ca", notPEM}, []string{"no PEM certificate"}},
		{[]string{"--tls-ca", filepath.Join(t.TempDir(), "missing.pem")}, []string{"--tls-ca", "no such file"}},
		{[]string{"--nats-nkey", filepath.Join(t.TempDir(), "missing.nk")}, []string{"--nats-nkey"}},
	} {
		var s natsSecurity
		fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
		s.register(fs)
		require.NoError(t, fs.Parse(tc.args))
		_, err := s.options()
		for _, w := range tc.want {
			require.ErrorContains(t, err, w, "args %q", tc.args)
		}
	}

	var none natsSecurity
	opts, err := none.options()
	require.NoError(t, err)
	require.Empty(t, opts, "no flags, no options")
	require.False(t, errors.Is(err, nats.ErrAuthorization))
}
