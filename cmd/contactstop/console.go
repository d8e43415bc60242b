package main

import (
	"net/http"
	"sync/atomic"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/contactstop/contactstop/auth"
	csclient "github.com/contactstop/contactstop/client"
	"github.com/contactstop/contactstop/httpapi"
	"github.com/contactstop/contactstop/httpapi/console"
	"github.com/contactstop/contactstop/store"
)

// webAPI serves the JSON API (/v1/) and the web console (/) on --http. The
// routes exist from the start; /v1/ answers 503 until the store is open.
type webAPI struct {
	verifier *auth.Verifier // nil: authorization off
	log      *zap.Logger
	h        atomic.Pointer[httpapi.V1]
}

func newWebAPI(verifier *auth.Verifier, httpAddr string, log *zap.Logger) *webAPI {
	if verifier == nil && httpAddr != "" {
		log.Warn("the JSON API (/v1/) and the web console (/) are open: with authorization off, anyone who reaches --http can stop and clear contacts; keep it on loopback or turn authorization on",
			zap.String("http", httpAddr))
	}
	return &webAPI{verifier: verifier, log: log}
}

// routes adds the console and the JSON API to a mux.
func (a *webAPI) routes() func(*http.ServeMux) {
	return func(mux *http.ServeMux) {
		console.New().Register(mux)
		mux.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
			if h := a.h.Load(); h != nil {
				h.ServeHTTP(w, r)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"error":{"code":"UNAVAILABLE","message":"contactstop is starting; try again"}}` + "\n"))
		})
	}
}

// use starts serving /v1/ with the store open.
func (a *webAPI) use(js jetstream.JetStream, st *store.KV) error {
	h, err := httpapi.NewV1(httpapi.V1Config{JetStream: js, Store: st, Publisher: csclient.New(js, st), Verifier: a.verifier, Logger: a.log})
	if err != nil {
		return err
	}
	a.h.Store(h)
	return nil
}

// stop ends the console's event streams, so that the HTTP server's shutdown
// does not wait for them.
func (a *webAPI) stop() {
	if h := a.h.Load(); h != nil {
		h.Close()
	}
}
