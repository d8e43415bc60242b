package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contactstop/contactstop/events"
)

// v1MaxScan bounds the messages one read of a stream looks at.
const v1MaxScan = 100_000

// scan calls fn with every message of stream on subjects (all when none)
// stored since the given time, oldest first, up to v1MaxScan of them, and
// reports how many it saw and whether more were stored. It reads through
// an ephemeral, unacknowledged consumer that it deletes on return.
func (a *V1) scan(ctx context.Context, stream string, subjects []string, since time.Time, fn func(jetstream.Msg)) (scanned int, truncated bool, err error) {
	cons, err := a.cfg.JetStream.CreateConsumer(ctx, stream, jetstream.ConsumerConfig{
		FilterSubjects:    subjects,
		DeliverPolicy:     jetstream.DeliverByStartTimePolicy,
		OptStartTime:      &since,
		AckPolicy:         jetstream.AckNonePolicy,
		MemoryStorage:     true,
		InactiveThreshold: time.Minute,
	})
	if err != nil {
		return 0, false, fmt.Errorf("read %s: %w", stream, err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = a.cfg.JetStream.DeleteConsumer(ctx, stream, cons.CachedInfo().Name)
	}()
	pending := cons.CachedInfo().NumPending
	want := int(min(pending, v1MaxScan))
	for scanned < want {
		batch, err := cons.Fetch(min(want-scanned, 256), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return scanned, false, fmt.Errorf("read %s: %w", stream, err)
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			scanned++
			fn(msg)
		}
		if err := batch.Error(); err != nil {
			return scanned, false, fmt.Errorf("read %s: %w", stream, err)
		}
		if got == 0 {
			break // removed meanwhile (limits, max age)
		}
	}
	return scanned, pending > v1MaxScan, nil
}

// Limits of the failure and dead-letter reads.
const (
	v1DefaultFailuresSince = time.Hour
	v1DefaultDeadSince     = 24 * time.Hour
	v1MaxSince             = 30 * 24 * time.Hour
	v1DefaultRecent        = 20
	v1MaxRecent            = 1000
)

// v1FailuresView counts an instance's recent failures.
type v1FailuresView struct {
	InstanceID string    `json:"instanceId"`
	Since      time.Time `json:"since"`
	// Total failures found since Since; ByReasonCode splits them.
	Total        int            `json:"total"`
	ByReasonCode map[string]int `json:"byReasonCode"`
	// Recent are the last failures, newest first.
	Recent []events.StopFailed `json:"recent"`
	// Truncated: more than 100000 failures were stored since Since; the
	// counts are of the first 100000.
	Truncated bool `json:"truncated"`
}

// failures: GET /v1/instances/{instanceId}/failures?since=1h&limit=20 —
// the instance's failures (contact.stop.failed.<instanceId> in the results
// stream) since a while ago, counted by reason code, and the last few.
func (a *V1) failures(w http.ResponseWriter, r *http.Request) {
	id, ok := v1InstanceParam(w, r)
	if !ok {
		return
	}
	if _, ok := a.readable(w, r, id); !ok {
		return
	}
	since, ok := v1DurationParam(w, r, "since", v1DefaultFailuresSince, v1MaxSince)
	if !ok {
		return
	}
	limit, ok := v1IntParam(w, r, "limit", v1DefaultRecent, 0, v1MaxRecent)
	if !ok {
		return
	}
	v := v1FailuresView{InstanceID: id, Since: a.cfg.Now().Add(-since).UTC(), ByReasonCode: map[string]int{}, Recent: []events.StopFailed{}}
	var recent []events.StopFailed
	_, truncated, err := a.scan(r.Context(), events.StreamResults, []string{events.StopFailedSubject(id)}, v.Since, func(msg jetstream.Msg) {
		res, err := events.DecodeResult(msg.Subject(), msg.Data())
		if err != nil || res.Failed == nil {
			return
		}
		v.Total++
		v.ByReasonCode[string(res.Failed.ReasonCode)]++
		if limit > 0 {
			if len(recent) == limit {
				recent = recent[1:]
			}
			recent = append(recent, *res.Failed)
		}
	})
	if err != nil {
		a.writeInternal(w, r, "reading the results stream", err)
		return
	}
	slices.Reverse(recent)
	v.Recent = append(v.Recent, recent...)
	v.Truncated = truncated
	v1WriteJSON(w, http.StatusOK, v)
}

// v1DeadLetterView is one dead-lettered request: a copy of a request that
// ended INTERNAL_ERROR after its retries.
type v1DeadLetterView struct {
	Sequence uint64 `json:"sequence"`
	Subject  string `json:"subject"`
	// InstanceID is "" for a request whose instance could not be read.
	InstanceID string    `json:"instanceId"`
	StoredAt   time.Time `json:"storedAt"`
	// Error is the last transient error; Deliveries how often the request
	// was delivered; OriginalSubject and OriginalSequence where it was.
	Error            string `json:"error,omitempty"`
	Deliveries       int    `json:"deliveries,omitempty"`
	OriginalSubject  string `json:"originalSubject,omitempty"`
	OriginalSequence uint64 `json:"originalSequence,omitempty"`
	// Request is the request's JSON body with its securityUser replaced by
	// "[redacted]"; Body is the text of a body that is not a JSON object
	// (its first 1024 bytes).
	Request map[string]any `json:"request,omitempty"`
	Body    string         `json:"body,omitempty"`
}

type v1DeadLettersView struct {
	DeadLetters []v1DeadLetterView `json:"deadLetters"`
	Since       time.Time          `json:"since"`
	Truncated   bool               `json:"truncated"`
}

// deadLetters: GET /v1/deadletters?instance=&since=24h&limit=20 — the last
// dead letters (newest first) of one instance or of every instance the
// v1Caller may read. Those of requests whose instance could not be read are
// shown only with authorization off.
func (a *V1) deadLetters(w http.ResponseWriter, r *http.Request) {
	inst := r.URL.Query().Get("instance")
	if inst != "" && !events.ValidInstanceID(inst) {
		v1WriteError(w, http.StatusBadRequest, string(events.ReasonInvalidParameter),
			"instance "+strconv.Quote(v1Short(inst))+": must be 1-100 characters of [A-Za-z0-9_-]", "instance")
		return
	}
	since, ok := v1DurationParam(w, r, "since", v1DefaultDeadSince, v1MaxSince)
	if !ok {
		return
	}
	limit, ok := v1IntParam(w, r, "limit", v1DefaultRecent, 1, v1MaxRecent)
	if !ok {
		return
	}
	var c *v1Caller
	var subjects []string
	if inst != "" {
		c, ok = a.readable(w, r, inst)
		subjects = []string{events.DeadLetterSubject(inst)}
	} else {
		c, ok = a.authenticate(w, r, false)
	}
	if !ok {
		return
	}
	v := v1DeadLettersView{DeadLetters: []v1DeadLetterView{}, Since: a.cfg.Now().Add(-since).UTC()}
	var recent []v1DeadLetterView
	_, truncated, err := a.scan(r.Context(), events.StreamDeadLetter, subjects, v.Since, func(msg jetstream.Msg) {
		id, _ := strings.CutPrefix(msg.Subject(), events.SubjectDeadLetter+".")
		if id == msg.Subject() || !events.ValidInstanceID(id) {
			id = ""
		}
		if (id == "" && !c.canReadAll()) || (id != "" && !c.canRead(id)) {
			return
		}
		if len(recent) == limit {
			recent = recent[1:]
		}
		recent = append(recent, v1NewDeadLetterView(msg, id))
	})
	if err != nil {
		a.writeInternal(w, r, "reading the dead-letter stream", err)
		return
	}
	slices.Reverse(recent)
	v.DeadLetters = append(v.DeadLetters, recent...)
	v.Truncated = truncated
	v1WriteJSON(w, http.StatusOK, v)
}

// Headers the worker sets on a dead letter (worker/settle.go).
const (
	v1HeaderDeadError      = "Contactstop-Error"
	v1HeaderDeadDeliveries = "Contactstop-Deliveries"
	v1HeaderDeadSubject    = "Contactstop-Subject"
	v1HeaderDeadSequence   = "Contactstop-Stream-Sequence"
)

func v1NewDeadLetterView(msg jetstream.Msg, instanceID string) v1DeadLetterView {
	v := v1DeadLetterView{Subject: msg.Subject(), InstanceID: instanceID}
	if md, err := msg.Metadata(); err == nil {
		v.Sequence, v.StoredAt = md.Sequence.Stream, md.Timestamp.UTC()
	}
	h := msg.Headers()
	v.Error = h.Get(v1HeaderDeadError)
	v.Deliveries, _ = strconv.Atoi(h.Get(v1HeaderDeadDeliveries))
	v.OriginalSubject = h.Get(v1HeaderDeadSubject)
	v.OriginalSequence, _ = strconv.ParseUint(h.Get(v1HeaderDeadSequence), 10, 64)
	var body map[string]any
	if json.Unmarshal(msg.Data(), &body) == nil && body != nil {
		if _, ok := body["securityUser"]; ok {
			body["securityUser"] = "[redacted]"
		}
		v.Request = body
	} else {
		b := msg.Data()
		if len(b) > 1024 {
			b = b[:1024]
		}
		v.Body = strings.ToValidUTF8(string(b), "\uFFFD")
	}
	return v
}
