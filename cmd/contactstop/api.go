package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/contactstop/contactstop/auth"
	csclient "github.com/contactstop/contactstop/client"
	"github.com/contactstop/contactstop/httpapi"
	"github.com/contactstop/contactstop/store"
)

// apiOptions are serve's flags of the StopContact API (POST /contact/stop).
type apiOptions struct {
	keys       string
	wait       time.Duration
	tokenKey   string
	tokenHS256 string
	tokenTTL   time.Duration
	region     string
}

func (o *apiOptions) register(f *pflag.FlagSet) {
	f.StringVar(&o.keys, "api-keys", "", "with --http: serve Amazon Connect's StopContact at POST /contact/stop for requests signed (AWS SigV4) by the access keys in this YAML file, each with its grants (see README); empty: off")
	f.DurationVar(&o.wait, "api-wait", httpapi.DefaultAPIWait, "how long POST /contact/stop waits for a request's result before answering 500 InternalServiceException (the request goes on; a resend is safe)")
	f.StringVar(&o.tokenKey, "api-token-key", "", "PEM Ed25519 private key with which POST /contact/stop mints each request's security-user token; needed when authorization is on (its public key must be an --auth-key)")
	f.StringVar(&o.tokenHS256, "api-token-hs256-secret", "", "HS256 secret file with which POST /contact/stop mints each request's security-user token (one of the --auth-hs256-secret files), instead of --api-token-key")
	f.DurationVar(&o.tokenTTL, "api-token-ttl", httpapi.DefaultAPITokenTTL, "lifetime of the tokens POST /contact/stop mints")
	f.StringVar(&o.region, "api-region", "", "the only AWS region POST /contact/stop accepts in signatures' credential scope; empty: any")
}

// stopContactAPI serves POST /contact/stop once the store is open (use);
// before, it answers 500 InternalServiceException, which the SDKs retry.
type stopContactAPI struct {
	cfg httpapi.StopContactConfig
	h   atomic.Pointer[httpapi.StopContact]
}

// newStopContactAPI returns the API of o, or nil (and logs that it is off)
// without --api-keys. authz is the workers' verifier when authorization is
// on: the API must then mint tokens it accepts, which is checked here.
func newStopContactAPI(o apiOptions, httpAddr string, authz *auth.Verifier, log *zap.Logger) (*stopContactAPI, error) {
	if o.keys == "" {
		if o.tokenKey != "" || o.tokenHS256 != "" {
			return nil, errors.New("--api-token-key and --api-token-hs256-secret need --api-keys")
		}
		log.Info("the StopContact API is off: no --api-keys, so " + httpapi.StopContactPath + " is not served")
		return nil, nil
	}
	if httpAddr == "" {
		return nil, errors.New("--api-keys needs --http: the address that serves " + httpapi.StopContactPath)
	}
	keys, err := httpapi.LoadAPIKeys(o.keys)
	if err != nil {
		return nil, fmt.Errorf("--api-keys: %w", err)
	}
	var tokenKey *auth.SigningKey
	switch {
	case o.tokenKey != "" && o.tokenHS256 != "":
		return nil, errors.New("give one of --api-token-key and --api-token-hs256-secret, not both")
	case o.tokenKey != "":
		k, err := auth.LoadPrivateKeyFile(o.tokenKey)
		if err != nil {
			return nil, fmt.Errorf("--api-token-key: %w", err)
		}
		tokenKey = &k
	case o.tokenHS256 != "":
		k, err := auth.LoadHS256SigningSecretFile(o.tokenHS256)
		if err != nil {
			return nil, fmt.Errorf("--api-token-hs256-secret: %w", err)
		}
		tokenKey = &k
	}
	if authz != nil {
		if tokenKey == nil {
			return nil, errors.New("--api-keys with authorization on needs --api-token-key (an Ed25519 private key whose public key is an --auth-key) " +
				"or --api-token-hs256-secret (one of the --auth-hs256-secret files): the workers refuse requests without a security-user token")
		}
		if err := httpapi.CheckTokenKey(*tokenKey, authz); err != nil {
			return nil, fmt.Errorf("--api-token-key/--api-token-hs256-secret: %w", err)
		}
	}
	a := &stopContactAPI{cfg: httpapi.StopContactConfig{
		Keys: keys, TokenKey: tokenKey, TokenTTL: o.tokenTTL, Wait: o.wait, Region: o.region, Logger: log,
	}}
	log.Info("the StopContact API is on: POST "+httpapi.StopContactPath+" accepts Amazon Connect StopContact calls signed by the --api-keys",
		zap.String("http", httpAddr), zap.Int("keys", keys.Len()), zap.Bool("mints_tokens", tokenKey != nil), zap.Duration("wait", o.wait))
	return a, nil
}

// routes returns what adds POST /contact/stop to a mux; nil when off.
func (a *stopContactAPI) routes() func(*http.ServeMux) {
	if a == nil {
		return nil
	}
	return func(mux *http.ServeMux) {
		mux.HandleFunc(http.MethodPost+" "+httpapi.StopContactPath, func(w http.ResponseWriter, r *http.Request) {
			if h := a.h.Load(); h != nil {
				h.ServeHTTP(w, r)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("X-Amzn-Errortype", "InternalServiceException")
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = io.WriteString(w, `{"message":"contactstop is starting; try again"}`)
		})
	}
}

// use starts serving with the store open.
func (a *stopContactAPI) use(js jetstream.JetStream, st *store.KV) error {
	if a == nil {
		return nil
	}
	cfg := a.cfg
	cfg.Client = csclient.New(js, st)
	h, err := httpapi.NewStopContact(cfg)
	if err != nil {
		return err
	}
	a.h.Store(h)
	return nil
}

// joinRoutes returns what adds every given set of routes (nil ones
// skipped) to a mux.
func joinRoutes(routes ...func(*http.ServeMux)) func(*http.ServeMux) {
	return func(mux *http.ServeMux) {
		for _, r := range routes {
			if r != nil {
				r(mux)
			}
		}
	}
}
