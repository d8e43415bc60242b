package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/contactstop/contactstop/platform/amazonconnect"
	"github.com/contactstop/contactstop/store"
)

// Platform events (SPEC, Platforms: Inventory). serve --http with
// --ingest-key accepts Amazon Connect contact events at
// POST /ingest/amazon-connect, one EventBridge event per request, as an
// EventBridge API destination sends them, and brings the contacts' records
// up to date with them. Its answers tell EventBridge what to do: 2xx once
// the event is stored (or known to be older than, or the same as, what is
// stored), 4xx for an event that can never be applied (EventBridge does
// not retry those), 5xx for a transient failure (it retries those, by
// default for 24 hours).
const (
	ingestPathAmazonConnect = "/ingest/amazon-connect"
	// maxIngestBody bounds one event: EventBridge events are at most
	// 256 KiB.
	maxIngestBody = 256 << 10
	// minIngestKey is the shortest key accepted.
	minIngestKey = 16
	// ingestTimeout bounds the handling of one event: an API destination
	// waits 5 s for an answer, then counts the request as failed. An
	// answer of 503 within the time is better than none.
	ingestTimeout = 4 * time.Second
	// ingestReadTimeout bounds reading one request's body.
	ingestReadTimeout = 10 * time.Second
)

// Outcomes of contactstop_ingest_events_total.
const (
	ingestApplied   = "applied"   // stored
	ingestUnchanged = "unchanged" // older than or the same as what is stored, or a type that changes nothing
	ingestRejected  = "rejected"  // 4xx: never applicable (or not authenticated)
	ingestFailed    = "failed"    // 5xx: transient; the sender retries
)

// loadIngestKey reads the key that senders of platform events present,
// once: the file's contents without a trailing newline, at least 16 bytes
// of visible ASCII (an HTTP header carries it as it is).
func loadIngestKey(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	key := bytes.TrimSuffix(bytes.TrimSuffix(data, []byte("\n")), []byte("\r"))
	if len(key) < minIngestKey {
		return nil, fmt.Errorf("%s: the key is %d bytes; at least %d are required (for example: openssl rand -hex 32 > %s)",
			path, len(key), minIngestKey, path)
	}
	for _, b := range key {
		if b <= ' ' || b > '~' {
			return nil, fmt.Errorf("%s: the key must be visible ASCII characters only (no spaces, control characters or more than one line)", path)
		}
	}
	return key, nil
}

// ingestBackend is the store behind ingest: the contacts' records and an
// index of the instances' platform bindings.
type ingestBackend struct {
	*store.KV
	*store.BindingIndex
}

// ingestServer serves POST /ingest/amazon-connect. It answers 503 until the
// store is open (use).
type ingestServer struct {
	keySum [sha256.Size]byte
	log    *zap.Logger
	events *prometheus.CounterVec
	st     atomic.Pointer[ingestBackend]
}

// newIngest returns the ingest server for the key in keyFile, or nil (and
// logs that ingest is off) when keyFile is empty. A key file needs an
// address to serve on (httpAddr, --http).
func newIngest(keyFile, httpAddr string, log *zap.Logger) (*ingestServer, error) {
	if keyFile == "" {
		log.Info("platform event ingest is off: no --ingest-key, so " + ingestPathAmazonConnect + " is not served")
		return nil, nil
	}
	if httpAddr == "" {
		return nil, errors.New("--ingest-key needs --http: the address that serves " + ingestPathAmazonConnect)
	}
	key, err := loadIngestKey(keyFile)
	if err != nil {
		return nil, fmt.Errorf("--ingest-key: %w", err)
	}
	in := &ingestServer{keySum: sha256.Sum256(key), log: log}
	log.Info("platform event ingest is on: POST "+ingestPathAmazonConnect+" accepts Amazon Connect contact events", zap.String("http", httpAddr))
	return in, nil
}

// routes registers the ingest metrics on reg and returns what adds the
// ingest routes to a mux; nil for a nil server (ingest off).
func (in *ingestServer) routes(reg prometheus.Registerer) func(*http.ServeMux) {
	if in == nil {
		return nil
	}
	in.events = newIngestEvents()
	for _, o := range []string{ingestApplied, ingestUnchanged, ingestRejected, ingestFailed} {
		in.events.WithLabelValues(store.PlatformAmazonConnect, o)
	}
	reg.MustRegister(in.events)
	return func(mux *http.ServeMux) { mux.Handle(ingestPathAmazonConnect, in) }
}

// newIngestEvents is contactstop_ingest_events_total.
func newIngestEvents() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "contactstop_ingest_events_total",
		Help: "Platform events received at POST /ingest/…, by platform and outcome: applied (stored), unchanged (older than or the same as what is stored, or a type that changes nothing), rejected (4xx: never applicable, or not authenticated), failed (5xx: transient; the sender retries).",
	}, []string{"platform", "outcome"})
}

// use makes the server apply events to st; until then it answers 503. It
// does nothing on a nil server.
func (in *ingestServer) use(st *store.KV) {
	if in == nil {
		return
	}
	in.st.Store(&ingestBackend{KV: st, BindingIndex: store.NewBindingIndex(st)})
}

// authorized reports whether r carries the key, as Authorization: Bearer
// <key> or X-Api-Key: <key>. Keys are compared by their SHA-256 in
// constant time, so that neither their contents nor their length leaks.
func (in *ingestServer) authorized(r *http.Request) bool {
	var presented []string
	if v := r.Header.Get("X-Api-Key"); v != "" {
		presented = append(presented, v)
	}
	if scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") {
		presented = append(presented, strings.TrimSpace(token))
	}
	ok := 0
	for _, p := range presented {
		sum := sha256.Sum256([]byte(p))
		ok |= subtle.ConstantTimeCompare(sum[:], in.keySum[:])
	}
	return ok == 1
}

// ServeHTTP handles one event.
func (in *ingestServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !in.authorized(r) {
		// Counted, and logged at debug level only: anyone who reaches the
		// address can send these.
		in.count(ingestRejected)
		in.log.Debug("platform event refused: no valid key", zap.String("remote", r.RemoteAddr))
		w.Header().Set("WWW-Authenticate", `Bearer realm="contactstop ingest"`)
		writeIngestJSON(w, http.StatusUnauthorized, map[string]string{
			"error": "a valid key is required: Authorization: Bearer <key> or X-Api-Key: <key> (serve --ingest-key)"})
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		in.reject(w, r, http.StatusMethodNotAllowed, "method "+r.Method+" is not allowed: POST one EventBridge event")
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			in.reject(w, r, http.StatusUnsupportedMediaType, fmt.Sprintf("content type %q: the event must be application/json", ct))
			return
		}
	}
	if r.ContentLength > maxIngestBody {
		in.reject(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("the event is %d bytes; at most %d are accepted", r.ContentLength, maxIngestBody))
		return
	}
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(ingestReadTimeout))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxIngestBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			in.reject(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("the event is over %d bytes", maxIngestBody))
			return
		}
		in.reject(w, r, http.StatusBadRequest, "reading the event: "+err.Error())
		return
	}
	ev, err := amazonconnect.DecodeEvent(body)
	if err != nil {
		in.reject(w, r, http.StatusBadRequest, err.Error())
		return
	}
	log := in.log.With(zap.String("eventId", ev.ID), zap.String("eventType", ev.Detail.EventType), zap.String("contactId", ev.Detail.ContactID))
	change, err := ev.Change()
	if err != nil {
		in.reject(w, r, http.StatusBadRequest, err.Error(), zap.String("eventId", ev.ID))
		return
	}
	if !change.Applies {
		in.answer(w, ingestUnchanged, false)
		log.Debug("platform event changes no contact's state")
		return
	}
	st := in.st.Load()
	if st == nil {
		w.Header().Set("Retry-After", "5")
		in.fail(w, log, errors.New("starting: the store is not open yet"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), ingestTimeout)
	defer cancel()
	log = log.With(zap.String("connectInstanceId", change.ConnectInstanceID))
	inst, err := st.InstanceByConnectID(ctx, change.ConnectInstanceID)
	switch {
	case errors.Is(err, store.ErrInstanceNotFound):
		in.reject(w, r, http.StatusNotFound, fmt.Sprintf("no instance is bound to Amazon Connect instance %q: bind one with "+
			"contactstop instances add <instance> --platform amazon-connect --connect-instance-id %s --region <region>",
			change.ConnectInstanceID, change.ConnectInstanceID), zap.String("eventId", ev.ID))
		return
	case err != nil:
		in.fail(w, log, err)
		return
	}
	log = log.With(zap.String("instanceId", inst.InstanceID))
	c := change.Contact
	c.InstanceID = inst.InstanceID
	applied, err := st.ApplyContactEvent(ctx, c)
	switch {
	case errors.Is(err, store.ErrInvalidContact):
		in.reject(w, r, http.StatusBadRequest, err.Error(), zap.String("eventId", ev.ID), zap.String("instanceId", inst.InstanceID))
		return
	case errors.Is(err, store.ErrBadRecord):
		// Permanent until someone repairs the record: EventBridge does
		// not retry a 4xx (its dead-letter queue keeps the event).
		log.Error("platform event not applied: the contact's stored record is not valid; repair it", zap.Error(err))
		in.reject(w, r, http.StatusConflict, err.Error(), zap.String("eventId", ev.ID), zap.String("instanceId", inst.InstanceID))
		return
	case err != nil:
		in.fail(w, log, err)
		return
	}
	if applied {
		in.answer(w, ingestApplied, true)
		log.Debug("platform event applied", zap.String("state", string(c.State)))
		return
	}
	in.answer(w, ingestUnchanged, false)
	log.Debug("platform event older than, or the same as, the contact's record: nothing changed")
}

// answer writes 200 {"applied": applied} and counts the outcome.
func (in *ingestServer) answer(w http.ResponseWriter, outcome string, applied bool) {
	in.count(outcome)
	writeIngestJSON(w, http.StatusOK, map[string]bool{"applied": applied})
}

// reject answers a 4xx: the event can never be applied as it is.
func (in *ingestServer) reject(w http.ResponseWriter, r *http.Request, status int, msg string, fields ...zap.Field) {
	in.count(ingestRejected)
	in.log.Warn("platform event rejected", append(fields, zap.Int("status", status), zap.String("error", msg),
		zap.String("remote", r.RemoteAddr))...)
	writeIngestJSON(w, status, map[string]string{"error": msg})
}

// fail answers 503 for a transient failure: the sender retries.
func (in *ingestServer) fail(w http.ResponseWriter, log *zap.Logger, err error) {
	in.count(ingestFailed)
	log.Warn("platform event not applied for now; the sender retries", zap.Error(err))
	writeIngestJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "not applied for now; send it again: " + err.Error()})
}

func (in *ingestServer) count(outcome string) {
	if in.events != nil {
		in.events.WithLabelValues(store.PlatformAmazonConnect, outcome).Inc()
	}
}

func writeIngestJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
