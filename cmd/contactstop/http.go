package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// opsServer serves /metrics, /healthz and /readyz, and the routes added by
// startOps's caller.
type opsServer struct {
	srv *http.Server
	ln  net.Listener
	log *zap.Logger
}

// startOps listens on addr and serves in the background. /healthz answers
// 200 while the process runs; /readyz answers 200 only while ready reports
// nil and the NATS connection is up, else 503 with the reason. routes, when
// not nil, adds further routes to the server's mux (POST /ingest/…).
func startOps(addr string, reg *prometheus.Registry, nc *nats.Conn, ready func(context.Context) error, log *zap.Logger,
	routes func(*http.ServeMux)) (*opsServer, error) {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		err := ready(ctx)
		if err == nil && !nc.IsConnected() {
			err = fmt.Errorf("not connected to NATS (%s)", nc.Status())
		}
		if err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	if routes != nil {
		routes(mux)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--http %s: %w", addr, err)
	}
	s := &opsServer{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}, ln: ln, log: log}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics and health server failed", zap.Error(err))
		}
	}()
	log.Info("serving metrics and health", zap.String("http", ln.Addr().String()))
	return s, nil
}

// Addr is the address listened on.
func (s *opsServer) Addr() string { return s.ln.Addr().String() }

func (s *opsServer) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
}
