package twilio

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twilio/twilio-go/client"

	"github.com/contactstop/contactstop/store"
)

// ValidSignature reports whether signature, a request's X-Twilio-Signature
// header, is Twilio's signature of a POST to fullURL (the URL Twilio was
// given, scheme, host, port, path and query as configured) with the form
// parameters form, made with the account's authToken: base64 of
// HMAC-SHA1(authToken, fullURL followed by every parameter's name and
// value, sorted by name)
// (https://www.twilio.com/docs/usage/webhooks/webhooks-security). As
// Twilio's libraries do, it accepts the signature computed with or without
// the URL's default port.
//
// It uses twilio-go's client.RequestValidator, which takes one value per
// parameter. For a form that repeats a parameter it computes the signature
// itself, as Twilio's other helper libraries do (twilio-python's
// RequestValidator.compute_signature: every distinct value, sorted, after
// its name). An empty authToken or signature is never valid.
func ValidSignature(authToken, fullURL string, form url.Values, signature string) bool {
	if authToken == "" || signature == "" {
		return false
	}
	params := make(map[string]string, len(form))
	repeated := false
	for k, vs := range form {
		switch len(vs) {
		case 0:
		case 1:
			params[k] = vs[0]
		default:
			repeated = true
		}
	}
	if !repeated {
		rv := client.NewRequestValidator(authToken)
		return rv.Validate(fullURL, params, signature)
	}
	for _, u := range urlVariants(fullURL) {
		if subtle.ConstantTimeCompare([]byte(signatureOf(authToken, u, form)), []byte(signature)) == 1 {
			return true
		}
	}
	return false
}

// signatureOf computes Twilio's signature of a form that may repeat
// parameters.
func signatureOf(authToken, fullURL string, form url.Values) string {
	var b strings.Builder
	b.WriteString(fullURL)
	keys := make([]string, 0, len(form))
	for k := range form {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		vs := slices.Clone(form[k])
		slices.Sort(vs)
		for _, v := range slices.Compact(vs) {
			b.WriteString(k)
			b.WriteString(v)
		}
	}
	mac := hmac.New(sha1.New, []byte(authToken))
	mac.Write([]byte(b.String()))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// urlVariants is the URL as given, with its scheme's default port and
// without any port.
func urlVariants(raw string) []string {
	u, err := url.Parse(raw)
	if err != nil {
		return []string{raw}
	}
	out := []string{raw}
	if u.Port() == "" {
		port := "80"
		if u.Scheme == "https" {
			port = "443"
		}
		with := *u
		with.Host = u.Host + ":" + port
		out = append(out, with.String())
	} else {
		without := *u
		without.Host = u.Hostname()
		out = append(out, without.String())
	}
	return out
}

// ErrInvalidEvent marks a TaskRouter event callback that can never be
// applied: DecodeTaskEvent's errors wrap it.
var ErrInvalidEvent = errors.New("twilio: invalid TaskRouter event")

// DecodeTaskEvent reads a TaskRouter event callback (the form TaskRouter
// POSTs to the workspace's EventCallbackUrl,
// https://www.twilio.com/docs/taskrouter/api/event/reference) into the
// event of its task for the store's inventory. The event's InstanceID is
// left empty: it is the contactstop instance bound to the form's
// WorkspaceSid, which the caller resolves (the form's WorkspaceSid is
// checked to be one).
//
// ok is false, with no error, for an event about no task (worker.*,
// activity.*, workspace.*, a task queue or workflow changed): answer it
// 2xx and drop it. An event about a task is decoded:
//
//   - ContactID is TaskSid; Channel is TaskChannelUniqueName's (voice,
//     chat, sms, email; any other, or none, is WORK_ITEM); QueueID is
//     TaskQueueSid, EnqueuedAt TaskQueueEnteredDate (or the event's time
//     for task-queue.entered and task-queue.moved).
//   - State: task.canceled, task.completed, task.wrapup, task.deleted and
//     task.system-deleted are ENDED (a task wrapping up is no longer an
//     active contact); reservation.accepted is CONNECTED; any other
//     follows TaskAssignmentStatus: pending and reserved are QUEUED (in a
//     queue) or INITIATED (not yet), assigned CONNECTED, wrapping,
//     completed and canceled ENDED.
//   - At is TimestampMs (milliseconds since the epoch, sent since 2018),
//     else Timestamp (seconds since the epoch, or RFC 3339), else EventDate
//     (RFC 3339). DisconnectedAt is At for an ENDED event.
//
// An event about a task without what that needs (TaskSid, WorkspaceSid, a
// time, TaskAssignmentStatus where the event type does not decide) is an
// error wrapping ErrInvalidEvent.
func DecodeTaskEvent(form url.Values) (store.ContactEvent, bool, error) {
	et := form.Get("EventType")
	if et == "" {
		return store.ContactEvent{}, false, fmt.Errorf("%w: no EventType", ErrInvalidEvent)
	}
	family, _, _ := strings.Cut(et, ".")
	switch family {
	case "task", "reservation", "task-queue", "workflow":
	default:
		return store.ContactEvent{}, false, nil
	}
	sid := form.Get("TaskSid")
	if sid == "" {
		if family == "task" || family == "reservation" {
			return store.ContactEvent{}, false, fmt.Errorf("%w: %s without TaskSid", ErrInvalidEvent, et)
		}
		return store.ContactEvent{}, false, nil // a queue's or a workflow's own event
	}
	if !taskSID.MatchString(sid) {
		return store.ContactEvent{}, false, fmt.Errorf("%w: %s: TaskSid %q is not WT and 32 hex digits", ErrInvalidEvent, et, sid)
	}
	if ws := form.Get("WorkspaceSid"); !workspaceSID.MatchString(ws) {
		return store.ContactEvent{}, false, fmt.Errorf("%w: %s of %s: WorkspaceSid %q is not WS and 32 hex digits", ErrInvalidEvent, et, sid, ws)
	}
	at, err := eventTime(form)
	if err != nil {
		return store.ContactEvent{}, false, fmt.Errorf("%w: %s of %s: %w", ErrInvalidEvent, et, sid, err)
	}
	e := store.ContactEvent{ContactID: sid, Channel: channelOf(form.Get("TaskChannelUniqueName")),
		QueueID: form.Get("TaskQueueSid"), At: at}
	if e.QueueID != "" {
		if v := form.Get("TaskQueueEnteredDate"); v != "" {
			if e.EnqueuedAt, err = parseEventTime(v, time.Second); err != nil {
				return store.ContactEvent{}, false, fmt.Errorf("%w: %s of %s: TaskQueueEnteredDate: %w", ErrInvalidEvent, et, sid, err)
			}
		} else if et == "task-queue.entered" || et == "task-queue.moved" {
			e.EnqueuedAt = at
		}
	}
	switch et {
	case "task.canceled", "task.completed", "task.wrapup", "task.deleted", "task.system-deleted":
		e.State = store.StateEnded
	case "reservation.accepted":
		e.State = store.StateConnected
	default:
		switch st := form.Get("TaskAssignmentStatus"); st {
		case taskPending, taskReserved:
			e.State = store.StateInitiated
			if e.QueueID != "" {
				e.State = store.StateQueued
			}
		case taskAssigned:
			e.State = store.StateConnected
		case taskWrapping, taskCompleted, taskCanceled:
			e.State = store.StateEnded
		case "":
			return store.ContactEvent{}, false, fmt.Errorf("%w: %s of %s without TaskAssignmentStatus", ErrInvalidEvent, et, sid)
		default:
			return store.ContactEvent{}, false, fmt.Errorf("%w: %s of %s: unknown TaskAssignmentStatus %q", ErrInvalidEvent, et, sid, st)
		}
	}
	if e.State == store.StateEnded {
		e.DisconnectedAt = at
	}
	return e, true, nil
}

// eventTime is when the event happened.
func eventTime(form url.Values) (time.Time, error) {
	if v := form.Get("TimestampMs"); v != "" {
		return parseEventTime(v, time.Millisecond)
	}
	if v := form.Get("Timestamp"); v != "" {
		return parseEventTime(v, time.Second)
	}
	if v := form.Get("EventDate"); v != "" {
		return parseEventTime(v, time.Second)
	}
	return time.Time{}, errors.New("no TimestampMs, Timestamp or EventDate")
}

// maxEpoch bounds a time in milliseconds since the epoch (the year 9999).
const maxEpoch = 253402300799999

// parseEventTime reads a number of units (time.Second or
// time.Millisecond) since the epoch, or an RFC 3339 time.
func parseEventTime(v string, unit time.Duration) (time.Time, error) {
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 || n > maxEpoch/int64(unit/time.Millisecond) {
			return time.Time{}, fmt.Errorf("time %q is out of range", v)
		}
		if unit == time.Millisecond {
			return time.UnixMilli(n).UTC(), nil
		}
		return time.Unix(n, 0).UTC(), nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("time %q is neither a number nor RFC 3339", v)
	}
	return t.UTC(), nil
}
