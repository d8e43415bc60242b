package httpapi

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/contactstop/contactstop/auth"
	"github.com/contactstop/contactstop/client"
	"github.com/contactstop/contactstop/events"
	"github.com/contactstop/contactstop/store"
)

// v1StopBody is the body of POST /v1/instances/{instanceId}/stops.
type v1StopBody struct {
	ContactID        string `json:"contactId"`
	DisconnectReason string `json:"disconnectReason,omitempty"`
	RequestID        string `json:"requestId,omitempty"`
}

// Statuses of a stop answer.
const (
	v1StopAccepted = "ACCEPTED" // published; no result (yet)
	v1StopStopped  = "STOPPED"
	v1StopFailed   = "FAILED"
)

// v1StopView answers a stop: what was published and, when waited for, its
// result.
type v1StopView struct {
	RequestID  string `json:"requestId"`
	InstanceID string `json:"instanceId"`
	ContactID  string `json:"contactId"`
	// Duplicate: a request with this requestId was published before; this
	// one changes nothing (its result is the first one's).
	Duplicate bool `json:"duplicate"`
	// Status is ACCEPTED (not waited for, or no result within the wait),
	// STOPPED or FAILED.
	Status  string             `json:"status"`
	Stopped *events.Stopped    `json:"stopped,omitempty"`
	Failed  *events.StopFailed `json:"failed,omitempty"`
}

// stop: POST /v1/instances/{instanceId}/stops[?wait=10s] — publish a request
// to stop one contact (the body's securityUser is the caller's token), and
// with ?wait= wait that long for its result.
func (a *V1) stop(w http.ResponseWriter, r *http.Request) {
	id, ok := v1InstanceParam(w, r)
	if !ok {
		return
	}
	var b v1StopBody
	if !v1DecodeBody(w, r, &b) {
		return
	}
	wait, ok := a.waitParam(w, r)
	if !ok {
		return
	}
	req := events.StopRequest{RequestID: b.RequestID, ContactID: b.ContactID, InstanceID: id, DisconnectReason: b.DisconnectReason}
	if err := req.Validate(); err != nil {
		v1WriteRequestError(w, err)
		return
	}
	c, ok := a.authorize(w, r, auth.ActionStop, auth.ContactResource(id, b.ContactID))
	if !ok {
		return
	}
	req.SecurityUser = c.token
	ctx := r.Context()
	if wait > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, wait)
		defer cancel()
	}
	receipt, res, err := a.cfg.Publisher.Stop(ctx, req, client.StopOptions{
		Wait:          wait > 0,
		Traceparent:   r.Header.Get(events.HeaderTraceparent),
		CorrelationID: r.Header.Get(events.HeaderCorrelationID),
	})
	if receipt.RequestID == "" { // not published
		if !v1WriteRequestError(w, err) {
			a.writeUnavailable(w, r, "publishing the request", err)
		}
		return
	}
	v := v1StopView{RequestID: receipt.RequestID, InstanceID: id, ContactID: b.ContactID, Duplicate: receipt.Duplicate, Status: v1StopAccepted}
	switch {
	case err != nil && !errors.Is(err, client.ErrNoResult):
		a.log.Warn("v1: waiting for a stop's result", v1ZapPath(r), v1ZapErr(err))
	case res != nil && res.Stopped != nil:
		v.Status, v.Stopped = v1StopStopped, res.Stopped
	case res != nil && res.Failed != nil:
		v.Status, v.Failed = v1StopFailed, res.Failed
	}
	status := http.StatusOK
	if v.Status == v1StopAccepted {
		status = http.StatusAccepted
	}
	v1WriteJSON(w, status, v)
}

// waitParam reads ?wait=: a duration, "true" (DefaultV1Wait) or "false";
// at most MaxWait.
func (a *V1) waitParam(w http.ResponseWriter, r *http.Request) (time.Duration, bool) {
	switch s := r.URL.Query().Get("wait"); s {
	case "", "false", "0":
		return 0, true
	case "true":
		return min(DefaultV1Wait, a.cfg.MaxWait), true
	}
	return v1DurationParam(w, r, "wait", 0, a.cfg.MaxWait)
}

// v1WriteRequestError answers 400 for an error holding a validation error
// and reports whether it did.
func v1WriteRequestError(w http.ResponseWriter, err error) bool {
	var ve *events.ValidationError
	if errors.As(err, &ve) {
		v1WriteValidation(w, ve)
		return true
	}
	return false
}

// writeUnavailable answers 503 when NATS did not take a request.
func (a *V1) writeUnavailable(w http.ResponseWriter, r *http.Request, what string, err error) {
	a.log.Warn("v1: "+what, v1ZapPath(r), v1ZapErr(err))
	w.Header().Set("Retry-After", "1")
	v1WriteError(w, http.StatusServiceUnavailable, v1CodeUnavailable,
		what+" failed: JetStream did not acknowledge it; sending it again with the same id is safe", "")
}

// v1ClearBody is the body of POST /v1/instances/{instanceId}/clears.
type v1ClearBody struct {
	BulkID           string            `json:"bulkId,omitempty"`
	Filter           events.BulkFilter `json:"filter"`
	DisconnectReason string            `json:"disconnectReason,omitempty"`
	// DryRun counts what the filter matches now and publishes nothing.
	DryRun bool `json:"dryRun,omitempty"`
}

// v1DryRunView answers a dry run.
type v1DryRunView struct {
	InstanceID string         `json:"instanceId"`
	DryRun     bool           `json:"dryRun"`
	Matched    int            `json:"matched"`
	ByQueue    map[string]int `json:"byQueue"`
	ByState    map[string]int `json:"byState"`
	Unreadable int            `json:"unreadable"`
}

// v1ClearView answers a published clear.
type v1ClearView struct {
	BulkID     string `json:"bulkId"`
	InstanceID string `json:"instanceId"`
	// Duplicate: a clear with this bulkId was published before; this one
	// changes nothing.
	Duplicate bool `json:"duplicate"`
	// Progress is where to follow it: GET this URL (or /v1/events).
	Progress string `json:"progress"`
}

// clear: POST /v1/instances/{instanceId}/clears — publish a bulk request
// (contact:BulkStop on the instance), or with dryRun count what it would
// match now (contact:Read suffices) and publish nothing.
func (a *V1) clear(w http.ResponseWriter, r *http.Request) {
	id, ok := v1InstanceParam(w, r)
	if !ok {
		return
	}
	var b v1ClearBody
	if !v1DecodeBody(w, r, &b) {
		return
	}
	req := events.BulkRequest{BulkID: b.BulkID, InstanceID: id, Filter: b.Filter, DisconnectReason: b.DisconnectReason}
	if err := req.Validate(); err != nil {
		v1WriteRequestError(w, err)
		return
	}
	if b.DryRun {
		if _, ok := a.readable(w, r, id); !ok {
			return
		}
		n, err := a.cfg.Store.CountMatching(r.Context(), id, b.Filter)
		switch {
		case v1WriteRequestError(w, err):
		case errors.Is(err, store.ErrInstanceNotFound):
			v1WriteError(w, http.StatusNotFound, string(events.ReasonResourceNotFound), "instance "+id+" is not registered", "instanceId")
		case err != nil:
			a.writeInternal(w, r, "counting the matching contacts", err)
		default:
			v1WriteJSON(w, http.StatusOK, v1DryRunView{InstanceID: id, DryRun: true, Matched: n.Matched,
				ByQueue: v1NonNil(n.ByQueue), ByState: v1NonNil(n.ByState), Unreadable: n.Unreadable})
		}
		return
	}
	c, ok := a.authorize(w, r, auth.ActionBulkStop, auth.InstanceResource(id))
	if !ok {
		return
	}
	req.SecurityUser = c.token
	receipt, err := a.cfg.Publisher.Clear(r.Context(), req)
	if err != nil {
		if !v1WriteRequestError(w, err) {
			a.writeUnavailable(w, r, "publishing the clear", err)
		}
		return
	}
	progress := v1BulkPath(id, receipt.RequestID)
	w.Header().Set("Location", progress)
	v1WriteJSON(w, http.StatusAccepted, v1ClearView{BulkID: receipt.RequestID, InstanceID: id, Duplicate: receipt.Duplicate, Progress: progress})
}

func v1BulkPath(instanceID, bulkID string) string {
	return "/v1/instances/" + instanceID + "/bulks/" + url.PathEscape(bulkID)
}

func v1NonNil(m map[string]int) map[string]int {
	if m == nil {
		return map[string]int{}
	}
	return m
}

// v1BulkView is a bulk request's v1Progress.
type v1BulkView struct {
	BulkID     string `json:"bulkId"`
	InstanceID string `json:"instanceId"`
	// Status: WAITING, RUNNING, COMPLETING or COMPLETED.
	Status string `json:"status"`
	// Matched may still grow while Walking.
	Matched     int            `json:"matched"`
	Done        int            `json:"done"`
	Stopped     int            `json:"stopped"`
	Failed      int            `json:"failed"`
	Skipped     int            `json:"skipped"`
	Unreadable  int            `json:"unreadable"`
	ReasonCodes map[string]int `json:"reasonCodes"`
	Walking     bool           `json:"walking"`
	Run         int            `json:"run"`
	// CancelRequested: a cancel was asked; Cancelled: it completed
	// cancelled.
	CancelRequested bool `json:"cancelRequested"`
	Cancelled       bool `json:"cancelled"`
	// Rate is contacts done per second since the run started; ETASeconds
	// the time left at that rate, null while unknown (still walking, or
	// nothing done yet) and 0 once finished.
	Rate        float64    `json:"rate"`
	ETASeconds  *float64   `json:"etaSeconds"`
	StartedAt   *time.Time `json:"startedAt"`
	UpdatedAt   time.Time  `json:"updatedAt"`
	CompletedAt *time.Time `json:"completedAt"`
}

func v1NewBulkView(rec store.BulkRecord, now time.Time) v1BulkView {
	v := v1BulkView{
		BulkID: rec.BulkID, InstanceID: rec.InstanceID, Status: string(rec.Status),
		Matched: rec.Matched, Done: rec.Done, Stopped: rec.Stopped, Failed: rec.Failed, Skipped: rec.Skipped,
		Unreadable: rec.Unreadable, ReasonCodes: v1NonNil(rec.ReasonCodes), Walking: rec.Walking, Run: rec.Run,
		CancelRequested: rec.CancelRequested, Cancelled: rec.Cancelled, UpdatedAt: rec.UpdatedAt,
	}
	finished := rec.Status == store.BulkCompleted || rec.Status == store.BulkCompleting
	if !rec.StartedAt.IsZero() {
		t := rec.StartedAt
		v.StartedAt = &t
		end := now
		if finished {
			end = rec.UpdatedAt
		}
		if !rec.CompletedAt.IsZero() {
			end = rec.CompletedAt
		}
		if el := end.Sub(rec.StartedAt).Seconds(); el > 0 && rec.Done > 0 {
			v.Rate = float64(rec.Done) / el
		}
	}
	if !rec.CompletedAt.IsZero() {
		t := rec.CompletedAt
		v.CompletedAt = &t
	}
	switch {
	case finished:
		zero := 0.0
		v.ETASeconds = &zero
	case !rec.Walking && v.Rate > 0:
		eta := float64(max(rec.Matched-rec.Done, 0)) / v.Rate
		v.ETASeconds = &eta
	}
	return v
}

type v1BulksView struct {
	Bulks []v1BulkView `json:"bulks"`
}

// Limits of GET /v1/bulks.
const (
	v1DefaultBulksLimit = 50
	v1MaxBulksLimit     = 1000
)

// listBulks: GET /v1/bulks?instance=&limit= — running and recent bulk
// requests, newest first, of one instance or of every instance the caller
// may read.
func (a *V1) listBulks(w http.ResponseWriter, r *http.Request) {
	inst := r.URL.Query().Get("instance")
	if inst != "" && !events.ValidInstanceID(inst) {
		v1WriteError(w, http.StatusBadRequest, string(events.ReasonInvalidParameter),
			"instance "+strconv.Quote(v1Short(inst))+": must be 1-100 characters of [A-Za-z0-9_-]", "instance")
		return
	}
	limit, ok := v1IntParam(w, r, "limit", v1DefaultBulksLimit, 1, v1MaxBulksLimit)
	if !ok {
		return
	}
	var c *v1Caller
	if inst != "" {
		c, ok = a.readable(w, r, inst)
	} else {
		c, ok = a.authenticate(w, r, false)
	}
	if !ok {
		return
	}
	recs, err := a.cfg.Store.ListBulks(r.Context(), inst)
	if err != nil {
		a.writeInternal(w, r, "listing the bulk requests", err)
		return
	}
	now := a.cfg.Now()
	out := v1BulksView{Bulks: []v1BulkView{}}
	for _, rec := range recs {
		if len(out.Bulks) == limit {
			break
		}
		if c.canRead(rec.InstanceID) {
			out.Bulks = append(out.Bulks, v1NewBulkView(rec, now))
		}
	}
	v1WriteJSON(w, http.StatusOK, out)
}

// getBulk: GET /v1/instances/{instanceId}/bulks/{bulkId} — one bulk
// request's v1Progress.
func (a *V1) getBulk(w http.ResponseWriter, r *http.Request) {
	id, ok := v1InstanceParam(w, r)
	if !ok {
		return
	}
	if _, ok := a.readable(w, r, id); !ok {
		return
	}
	rec, err := a.cfg.Store.GetBulk(r.Context(), id, r.PathValue("bulkId"))
	if a.bulkError(w, r, err) {
		return
	}
	v1WriteJSON(w, http.StatusOK, v1NewBulkView(rec, a.cfg.Now()))
}

// cancelBulk: POST /v1/instances/{instanceId}/bulks/{bulkId}/cancel — ask a
// running bulk request to stop (contact:BulkStop on the instance). It
// answers 202 with the record once the cancel is recorded (again for a
// bulk already cancelled), 409 BULK_FINISHED when it had completed.
func (a *V1) cancelBulk(w http.ResponseWriter, r *http.Request) {
	id, ok := v1InstanceParam(w, r)
	if !ok {
		return
	}
	if _, ok := a.authorize(w, r, auth.ActionBulkStop, auth.InstanceResource(id)); !ok {
		return
	}
	rec, err := a.cfg.Store.CancelBulk(r.Context(), id, r.PathValue("bulkId"))
	if a.bulkError(w, r, err) {
		return
	}
	if !rec.CancelRequested {
		v1WriteError(w, http.StatusConflict, v1CodeBulkFinished, "bulk request "+strconv.Quote(rec.BulkID)+" has completed: there is nothing left to cancel", "bulkId")
		return
	}
	v1WriteJSON(w, http.StatusAccepted, v1NewBulkView(rec, a.cfg.Now()))
}

// bulkError answers for an error of GetBulk or CancelBulk and reports
// whether there was one.
func (a *V1) bulkError(w http.ResponseWriter, r *http.Request, err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, store.ErrBulkNotFound):
		v1WriteError(w, http.StatusNotFound, v1CodeBulkNotFound,
			"no bulk request "+strconv.Quote(v1Short(r.PathValue("bulkId")))+" of instance "+r.PathValue("instanceId")+" (not taken on yet, or unknown)", "bulkId")
	default:
		a.writeInternal(w, r, "reading the bulk request", err)
	}
	return true
}
