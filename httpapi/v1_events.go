package httpapi

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contactstop/contactstop/events"
	"github.com/contactstop/contactstop/store"
)

// Server-sent event types of /v1/events.
const (
	v1SseStopped       = "stopped"       // data: events.Stopped
	v1SseFailed        = "failed"        // data: events.StopFailed
	v1SseBulkCompleted = "bulkCompleted" // data: events.BulkCompleted
	v1SseBulkProgress  = "bulkProgress"  // data: v1BulkView
)

// events: GET /v1/events?instance=[&access_token=] — results, bulk
// completions and bulk progress as server-sent events (text/event-stream)
// until the client goes away. Results and completions carry their
// results-stream sequence as the event id: a client that reconnects with
// Last-Event-ID (EventSource does) gets what it missed. Progress events
// have no id; they are sent whenever a running bulk request's record
// changes (read every ProgressInterval).
//
// EventSource cannot send headers, so this route alone also accepts the
// token as ?access_token= (RFC 6750 §2.3).
func (a *V1) events(w http.ResponseWriter, r *http.Request) {
	inst := r.URL.Query().Get("instance")
	if inst != "" && !events.ValidInstanceID(inst) {
		v1WriteError(w, http.StatusBadRequest, string(events.ReasonInvalidParameter),
			"instance "+strconv.Quote(v1Short(inst))+": must be 1-100 characters of [A-Za-z0-9_-]", "instance")
		return
	}
	c, ok := a.authenticate(w, r, true)
	if !ok {
		return
	}
	if inst != "" && !c.canRead(inst) {
		v1WriteError(w, http.StatusForbidden, string(events.ReasonUnauthorized), "the token is not granted contact:Read or contact:BulkStop on instance/"+inst, "")
		return
	}
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy}
	if inst != "" {
		cfg.FilterSubjects = []string{events.StoppedSubject(inst), events.StopFailedSubject(inst), events.BulkCompletedSubject(inst)}
	} else {
		cfg.FilterSubjects = []string{events.SubjectStopped + ".>", events.SubjectStopFailed + ".>", events.SubjectBulkCompleted + ".>"}
		if c.canReadAll() {
			cfg.FilterSubjects = append(cfg.FilterSubjects, events.SubjectStopFailed)
		}
	}
	last := r.Header.Get("Last-Event-ID")
	if last == "" {
		last = r.URL.Query().Get("lastEventId")
	}
	if last != "" {
		seq, err := strconv.ParseUint(last, 10, 64)
		if err != nil {
			v1WriteError(w, http.StatusBadRequest, string(events.ReasonInvalidParameter), "Last-Event-ID "+strconv.Quote(v1Short(last))+": must be an event id this stream sent", "Last-Event-ID")
			return
		}
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, seq+1
	}
	ctx := r.Context()
	cons, err := a.cfg.JetStream.OrderedConsumer(ctx, events.StreamResults, cfg)
	if err != nil {
		a.writeUnavailable(w, r, "reading the results stream", err)
		return
	}
	it, err := cons.Messages()
	if err != nil {
		a.writeUnavailable(w, r, "reading the results stream", err)
		return
	}
	defer it.Stop()
	msgs := make(chan jetstream.Msg, 64)
	go func() {
		defer close(msgs)
		for {
			msg, err := it.Next(jetstream.NextContext(ctx))
			if err != nil {
				return // the client went away, or the iterator was stopped
			}
			select {
			case msgs <- msg:
			case <-ctx.Done():
				return
			}
		}
	}()

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	send := func(f func(io.Writer)) bool {
		f(w)
		return rc.Flush() == nil
	}
	if !send(func(w io.Writer) { _, _ = io.WriteString(w, "retry: 3000\n: contactstop events\n\n") }) {
		return
	}

	p := v1Progress{a: a, c: c, instanceID: inst, tracked: map[string]v1BulkView{}}
	heartbeat := time.NewTicker(a.cfg.Heartbeat)
	defer heartbeat.Stop()
	tick := time.NewTicker(a.cfg.ProgressInterval)
	defer tick.Stop()
	// discover: look for new bulk requests at the next tick; at the
	// start, every few ticks, and after a result of a bulk's contact
	// (requestId <bulkId>/<contactId>).
	discover := true
	for n := 1; ; n++ {
		var ok bool
		select {
		case <-ctx.Done():
			return
		case <-a.closing:
			return
		case msg, open := <-msgs:
			if !open {
				return
			}
			ok = send(func(w io.Writer) {
				if v1WriteResultEvent(w, msg, c) {
					discover = true
				}
			})
		case <-tick.C:
			ok = send(func(w io.Writer) { p.poll(r, w, discover || n%5 == 0) })
			discover = false
		case <-heartbeat.C:
			ok = send(func(w io.Writer) { _, _ = io.WriteString(w, ": keep-alive\n\n") })
		}
		if !ok {
			return
		}
	}
}

// v1WriteResultEvent writes one message of the results stream as an event,
// unless the caller may not read its instance or it cannot be decoded. It
// reports whether the event was the result of a bulk request's contact.
func v1WriteResultEvent(w io.Writer, msg jetstream.Msg, c *v1Caller) (bulkItem bool) {
	subject := msg.Subject()
	var kind, instanceID string
	switch {
	case strings.HasPrefix(subject, events.SubjectBulkCompleted+"."):
		kind, instanceID = v1SseBulkCompleted, strings.TrimPrefix(subject, events.SubjectBulkCompleted+".")
	case strings.HasPrefix(subject, events.SubjectStopped+"."):
		kind, instanceID = v1SseStopped, strings.TrimPrefix(subject, events.SubjectStopped+".")
	case strings.HasPrefix(subject, events.SubjectStopFailed+"."):
		kind, instanceID = v1SseFailed, strings.TrimPrefix(subject, events.SubjectStopFailed+".")
	case subject == events.SubjectStopFailed:
		kind = v1SseFailed
	default:
		return false
	}
	if (instanceID == "" && !c.canReadAll()) || (instanceID != "" && !c.canRead(instanceID)) {
		return false
	}
	var body any
	if kind == v1SseBulkCompleted {
		var bc events.BulkCompleted
		if json.Unmarshal(msg.Data(), &bc) != nil {
			return false
		}
		body = bc
	} else {
		res, err := events.DecodeResult(subject, msg.Data())
		if err != nil {
			return false
		}
		if res.Stopped != nil {
			body = res.Stopped
		} else {
			body = res.Failed
		}
		bulkItem = strings.Contains(res.RequestID(), "/")
	}
	data, err := json.Marshal(body)
	if err != nil {
		return false
	}
	id := ""
	if md, err := msg.Metadata(); err == nil {
		id = "id: " + strconv.FormatUint(md.Sequence.Stream, 10) + "\n"
	}
	fmt.Fprintf(w, "%sevent: %s\ndata: %s\n\n", id, kind, data)
	return bulkItem
}

// v1Progress sends bulkProgress events for one /v1/events stream: it tracks
// the bulk requests that have not completed and sends each one's view when
// it changes, the last time when it has completed.
type v1Progress struct {
	a          *V1
	c          *v1Caller
	instanceID string
	// tracked holds the last view sent of each bulk request not known to
	// have completed, by instance and bulkId.
	tracked map[string]v1BulkView
}

// poll reads the tracked bulk requests, and with discover also looks for
// new ones, writing an event for each that changed.
func (p *v1Progress) poll(r *http.Request, w io.Writer, discover bool) {
	ctx := r.Context()
	now := p.a.cfg.Now()
	if discover {
		recs, err := p.a.cfg.Store.ListBulks(ctx, p.instanceID)
		if err != nil {
			p.a.log.Debug("v1: events: listing bulk requests", v1ZapErr(err))
		}
		for _, rec := range recs {
			key := rec.InstanceID + "\x00" + rec.BulkID
			if _, ok := p.tracked[key]; ok || !p.c.canRead(rec.InstanceID) {
				continue
			}
			if rec.Status != store.BulkCompleted {
				p.tracked[key] = v1BulkView{}
			}
		}
	}
	for key, sent := range p.tracked {
		inst, bulkID, _ := strings.Cut(key, "\x00")
		rec, err := p.a.cfg.Store.GetBulk(ctx, inst, bulkID)
		if err != nil {
			continue
		}
		v := v1NewBulkView(rec, now)
		if rec.Status == store.BulkCompleted {
			delete(p.tracked, key)
		} else {
			p.tracked[key] = v
		}
		if sent.BulkID != "" && sent.Done == v.Done && sent.Matched == v.Matched && sent.Status == v.Status &&
			sent.Walking == v.Walking && sent.CancelRequested == v.CancelRequested {
			continue
		}
		data, err := json.Marshal(v)
		if err != nil {
			continue
		}
		fmt.Fprintf(w, "event: %s\ndata: %s\n\n", v1SseBulkProgress, data)
	}
}
