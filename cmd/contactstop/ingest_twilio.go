package main

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"os"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/contactstop/contactstop/platform/twilio"
	"github.com/contactstop/contactstop/store"
)

// TaskRouter event callbacks (issue: Twilio's live inventory). serve
// --http --ingest-twilio accepts them at POST /ingest/twilio: the form
// TaskRouter posts to a workspace's Event Callback URL, signed with the
// account's auth token (X-Twilio-Signature), which serve reads from
// TWILIO_AUTH_TOKEN. Each task event brings its task's record up to date.
// Answers: 200 once stored (or known to be older), 4xx for an event that
// can never be applied, 503 for a transient failure.
const (
	ingestPathTwilio = "/ingest/twilio"
	// maxTwilioBody bounds one callback's form.
	maxTwilioBody = 64 << 10
)

// twilioIngest serves POST /ingest/twilio.
type twilioIngest struct {
	authToken string
	log       *zap.Logger
	events    *prometheus.CounterVec
	st        atomic.Pointer[ingestBackend]
}

// newTwilioIngest returns the handler of TaskRouter callbacks when on,
// else nil.
func newTwilioIngest(on bool, httpAddr string, log *zap.Logger) (*twilioIngest, error) {
	if !on {
		return nil, nil
	}
	if httpAddr == "" {
		return nil, errors.New("--ingest-twilio needs --http: the address that serves " + ingestPathTwilio)
	}
	token := os.Getenv("TWILIO_AUTH_TOKEN")
	if token == "" {
		return nil, errors.New("--ingest-twilio needs TWILIO_AUTH_TOKEN in the environment: Twilio signs its callbacks with the account's auth token")
	}
	log.Info("platform event ingest is on: POST "+ingestPathTwilio+" accepts TaskRouter event callbacks signed with the account's auth token", zap.String("http", httpAddr))
	return &twilioIngest{authToken: token, log: log}, nil
}

// signedURL is the URL Twilio called, which its signature covers: the
// scheme and host a proxy in front reports (X-Forwarded-Proto,
// X-Forwarded-Host), else the request's own.
func signedURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p := r.Header.Get("X-Forwarded-Proto"); p != "" {
		scheme, _, _ = strings.Cut(p, ",")
	}
	host := r.Host
	if h := r.Header.Get("X-Forwarded-Host"); h != "" {
		host, _, _ = strings.Cut(h, ",")
	}
	return strings.TrimSpace(scheme) + "://" + strings.TrimSpace(host) + r.URL.RequestURI()
}

func (in *twilioIngest) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		in.reject(w, r, http.StatusMethodNotAllowed, "method "+r.Method+" is not allowed: TaskRouter posts its event callbacks")
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/x-www-form-urlencoded" {
		in.reject(w, r, http.StatusUnsupportedMediaType, "the callback must be a form (application/x-www-form-urlencoded)")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxTwilioBody)
	if err := r.ParseForm(); err != nil {
		in.reject(w, r, http.StatusBadRequest, "reading the callback's form: "+err.Error())
		return
	}
	if !twilio.ValidSignature(in.authToken, signedURL(r), r.PostForm, r.Header.Get("X-Twilio-Signature")) {
		in.count(ingestRejected)
		in.log.Debug("TaskRouter callback refused: its signature does not match", zap.String("remote", r.RemoteAddr))
		writeIngestJSON(w, http.StatusForbidden, map[string]string{"error": "X-Twilio-Signature does not match this request signed with the account's auth token"})
		return
	}
	ev, ok, err := twilio.DecodeTaskEvent(r.PostForm)
	switch {
	case err != nil:
		in.reject(w, r, http.StatusBadRequest, err.Error())
		return
	case !ok:
		in.answer(w, ingestUnchanged, false)
		return
	}
	st := in.st.Load()
	if st == nil {
		w.Header().Set("Retry-After", "5")
		in.fail(w, errors.New("starting: the store is not open yet"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), ingestTimeout)
	defer cancel()
	ws := r.PostForm.Get("WorkspaceSid")
	inst, err := st.InstanceByPlatformID(ctx, store.PlatformTwilio, ws)
	switch {
	case errors.Is(err, store.ErrInstanceNotFound):
		in.reject(w, r, http.StatusNotFound, fmt.Sprintf("no instance is bound to TaskRouter workspace %q: bind one with "+
			"contactstop instances add <instance> --platform twilio --workspace-sid %s", ws, ws))
		return
	case err != nil:
		in.fail(w, err)
		return
	}
	ev.InstanceID = inst.InstanceID
	applied, err := st.ApplyContactEvent(ctx, ev)
	switch {
	case errors.Is(err, store.ErrInvalidContact):
		in.reject(w, r, http.StatusBadRequest, err.Error())
	case errors.Is(err, store.ErrBadRecord):
		in.log.Error("TaskRouter event not applied: the task's stored record is not valid; repair it", zap.Error(err))
		in.reject(w, r, http.StatusConflict, err.Error())
	case err != nil:
		in.fail(w, err)
	case applied:
		in.answer(w, ingestApplied, true)
	default:
		in.answer(w, ingestUnchanged, false)
	}
}

func (in *twilioIngest) answer(w http.ResponseWriter, outcome string, applied bool) {
	in.count(outcome)
	writeIngestJSON(w, http.StatusOK, map[string]bool{"applied": applied})
}

func (in *twilioIngest) reject(w http.ResponseWriter, r *http.Request, status int, msg string) {
	in.count(ingestRejected)
	in.log.Warn("TaskRouter event rejected", zap.Int("status", status), zap.String("error", msg), zap.String("remote", r.RemoteAddr))
	writeIngestJSON(w, status, map[string]string{"error": msg})
}

func (in *twilioIngest) fail(w http.ResponseWriter, err error) {
	in.count(ingestFailed)
	in.log.Warn("TaskRouter event not applied for now; Twilio retries", zap.Error(err))
	writeIngestJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "not applied for now: " + err.Error()})
}

func (in *twilioIngest) count(outcome string) {
	if in.events != nil {
		in.events.WithLabelValues(store.PlatformTwilio, outcome).Inc()
	}
}

// ingests are the platform event endpoints serve has on.
type ingests struct {
	connect *ingestServer
	twilio  *twilioIngest
}

// routes registers the ingest metrics on reg and returns what adds the
// routes that are on to a mux; nil when none is.
func (x ingests) routes(reg prometheus.Registerer) func(*http.ServeMux) {
	if x.connect == nil && x.twilio == nil {
		return nil
	}
	var connectRoutes func(*http.ServeMux)
	if x.connect != nil {
		connectRoutes = x.connect.routes(reg)
	}
	if x.twilio != nil {
		if x.connect != nil {
			x.twilio.events = x.connect.events
		} else {
			x.twilio.events = newIngestEvents()
			reg.MustRegister(x.twilio.events)
		}
		for _, o := range []string{ingestApplied, ingestUnchanged, ingestRejected, ingestFailed} {
			x.twilio.events.WithLabelValues(store.PlatformTwilio, o)
		}
	}
	return func(mux *http.ServeMux) {
		if connectRoutes != nil {
			connectRoutes(mux)
		}
		if x.twilio != nil {
			mux.Handle(ingestPathTwilio, x.twilio)
		}
	}
}

// use makes the endpoints apply events to st.
func (x ingests) use(st *store.KV) {
	x.connect.use(st)
	if x.twilio != nil {
		x.twilio.st.Store(&ingestBackend{KV: st, BindingIndex: store.NewBindingIndex(st)})
	}
}
