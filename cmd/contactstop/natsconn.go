package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/spf13/pflag"
)

// natsSecurity holds the flags that authenticate a connection to NATS and
// secure it with TLS. Every command that connects registers them, so every
// one takes the same credentials (and, through main's environment binding,
// the same CONTACTSTOP_NATS_* and CONTACTSTOP_TLS_* variables).
type natsSecurity struct {
	creds    string
	nkey     string
	user     string
	password string
	token    string
	tlsCA    string
	tlsCert  string
	tlsKey   string
}

// register adds the credential and TLS flags to fs.
func (s *natsSecurity) register(fs *pflag.FlagSet) {
	fs.StringVar(&s.creds, "nats-creds", "", "NATS credentials file (.creds: user JWT and NKey seed), for servers in operator/JWT mode")
	fs.StringVar(&s.nkey, "nats-nkey", "", "file holding a NATS user NKey seed (SU…)")
	fs.StringVar(&s.user, "nats-user", "", "NATS user name (with --nats-password)")
	fs.StringVar(&s.password, "nats-password", "", "NATS password (prefer the environment variable CONTACTSTOP_NATS_PASSWORD: flags show in ps)")
	fs.StringVar(&s.token, "nats-token", "", "NATS authentication token (prefer CONTACTSTOP_NATS_TOKEN)")
	fs.StringVar(&s.tlsCA, "tls-ca", "", "PEM file of the CA certificates that sign the NATS server's certificate; turns TLS on")
	fs.StringVar(&s.tlsCert, "tls-cert", "", "PEM client certificate for mutual TLS (with --tls-key); turns TLS on")
	fs.StringVar(&s.tlsKey, "tls-key", "", "PEM private key of --tls-cert")
}

// args returns the flags that reproduce these settings, for a child
// process.
func (s *natsSecurity) args() []string {
	var out []string
	for _, f := range []struct{ name, v string }{
		{"--nats-creds", s.creds}, {"--nats-nkey", s.nkey}, {"--nats-user", s.user}, {"--nats-password", s.password},
		{"--nats-token", s.token}, {"--tls-ca", s.tlsCA}, {"--tls-cert", s.tlsCert}, {"--tls-key", s.tlsKey},
	} {
		if f.v != "" {
			out = append(out, f.name, f.v)
		}
	}
	return out
}

// methods lists the authentication methods set, by flag.
func (s *natsSecurity) methods() []string {
	var set []string
	if s.creds != "" {
		set = append(set, "--nats-creds")
	}
	if s.nkey != "" {
		set = append(set, "--nats-nkey")
	}
	if s.user != "" || s.password != "" {
		set = append(set, "--nats-user/--nats-password")
	}
	if s.token != "" {
		set = append(set, "--nats-token")
	}
	return set
}

// validate reports every inconsistent combination of flags, without
// reading any file.
func (s *natsSecurity) validate() error {
	var errs []error
	if m := s.methods(); len(m) > 1 {
		errs = append(errs, fmt.Errorf("choose one way to authenticate to NATS, not %s", strings.Join(m, " and ")))
	}
	if s.user != "" && s.password == "" {
		errs = append(errs, errors.New("--nats-user needs --nats-password"))
	}
	if s.password != "" && s.user == "" {
		errs = append(errs, errors.New("--nats-password needs --nats-user"))
	}
	if s.tlsCert != "" && s.tlsKey == "" {
		errs = append(errs, errors.New("--tls-cert needs --tls-key"))
	}
	if s.tlsKey != "" && s.tlsCert == "" {
		errs = append(errs, errors.New("--tls-key needs --tls-cert"))
	}
	return errors.Join(errs...)
}

// options returns the nats.go options for the flags: credentials and TLS.
// It checks the combination of flags and reads every file named now, so
// that a wrong path or a malformed file is reported by its flag before any
// connection is tried. Certificates and the credentials file are read
// again at each (re)connection, so renewed files are picked up. With no
// flag set it returns no options.
func (s *natsSecurity) options() ([]nats.Option, error) {
	opts, err := s.authOptions()
	if err != nil {
		return nil, err
	}
	tlsOpts, err := s.tlsOptions()
	if err != nil {
		return nil, err
	}
	return append(opts, tlsOpts...), nil
}

// authOptions returns the credential options only, without TLS: what a
// connection to an in-process server needs, since such a connection never
// crosses a network.
func (s *natsSecurity) authOptions() ([]nats.Option, error) {
	if err := s.validate(); err != nil {
		return nil, err
	}
	switch {
	case s.creds != "":
		if err := checkCredsFile(s.creds); err != nil {
			return nil, fmt.Errorf("--nats-creds: %w", err)
		}
		return []nats.Option{nats.UserCredentials(s.creds)}, nil
	case s.nkey != "":
		opt, err := nats.NkeyOptionFromSeed(s.nkey)
		if err != nil {
			return nil, fmt.Errorf("--nats-nkey %s: %w", s.nkey, err)
		}
		return []nats.Option{opt}, nil
	case s.user != "":
		return []nats.Option{nats.UserInfo(s.user, s.password)}, nil
	case s.token != "":
		return []nats.Option{nats.Token(s.token)}, nil
	}
	return nil, nil
}

// tlsOptions returns the TLS options, after checking that the files load.
func (s *natsSecurity) tlsOptions() ([]nats.Option, error) {
	if err := s.validate(); err != nil {
		return nil, err
	}
	var opts []nats.Option
	if s.tlsCA != "" {
		pem, err := os.ReadFile(s.tlsCA)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca: %w", err)
		}
		if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-ca %s: no PEM certificate in it", s.tlsCA)
		}
		opts = append(opts, nats.RootCAs(s.tlsCA))
	}
	if s.tlsCert != "" {
		if _, err := tls.LoadX509KeyPair(s.tlsCert, s.tlsKey); err != nil {
			return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		opts = append(opts, nats.ClientCert(s.tlsCert, s.tlsKey))
	}
	return opts, nil
}

// checkCredsFile checks that path is readable and looks like a NATS
// credentials file, so that a wrong file fails with its name rather than
// as an authorization error from the server.
func checkCredsFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	ok := bytes.Contains(data, []byte("BEGIN NATS USER JWT")) && bytes.Contains(data, []byte("BEGIN USER NKEY SEED"))
	clear(data) // it holds a seed
	if !ok {
		return fmt.Errorf("%s is not a NATS credentials file (it needs a user JWT and a user NKey seed block)", path)
	}
	return nil
}
