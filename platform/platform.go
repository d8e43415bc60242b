// Package platform is the seam between contactstop and the contact-center
// platforms that really hold contacts (Amazon Connect first; CXone, Twilio
// and Genesys Cloud next). An instance bound to a platform (store.Binding)
// has its contacts ended there: the worker records an intent on the
// contact's record, calls Platform.StopContact, records the outcome and
// publishes the result; a redelivery that finds its own intent asks
// Platform.DescribeContact what became of the contact (docs/design.md,
// "Platforms").
//
// Each platform is one package beside this one (platform/amazonconnect)
// whose adapter passes the shared contract suite (platform/platformtest).
package platform

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/contactstop/contactstop/store"
)

// Platform ends contacts on one contact-center platform and says what
// became of them. Implementations are safe for concurrent use. They make
// one attempt per call (contactstop's own backoff retries, within the
// budget) and classify every failure as an *Error.
type Platform interface {
	// StopContact ends an active contact. A nil error means the platform
	// answered that it ended it.
	StopContact(ctx context.Context, contactID, disconnectReason string) error
	// DescribeContact says what the platform knows of a contact now.
	DescribeContact(ctx context.Context, contactID string) (Status, error)
}

// Status is a contact as the platform describes it.
type Status struct {
	// Active is true while the contact is not disconnected.
	Active bool
	// DisconnectedAt is when it was disconnected (zero while active).
	DisconnectedAt time.Time
	// State is the closest store state (QUEUED while it waits in a queue,
	// CONNECTED with an agent, INITIATED otherwise; ENDED once
	// disconnected).
	State   store.State
	Channel store.Channel
	// QueueID and EnqueuedAt are set while or after it waited in a queue.
	QueueID    string
	EnqueuedAt time.Time
}

// Kind classifies a platform's answer for the worker.
type Kind uint8

const (
	// Transient: a timeout, a connection error, a 5xx: retried with
	// backoff; the call may or may not have taken effect.
	Transient Kind = iota
	// Throttled: the platform refused the call for its rate limit; it
	// did not take effect. Retried after RetryAfter (or backoff), and the
	// shared budget slows down.
	Throttled
	// NotFound: the platform has no such active contact.
	NotFound
	// ResourceNotFound: the bound platform instance does not exist.
	ResourceNotFound
	// InvalidParameter, InvalidRequest: the platform refused the request
	// as malformed; permanent.
	InvalidParameter
	InvalidRequest
	// Denied: contactstop's own credentials are missing, wrong or lack a
	// permission. Answered INTERNAL_ERROR (retryable), logged at error
	// level.
	Denied
)

var kindNames = [...]string{"transient", "throttled", "not_found", "resource_not_found", "invalid_parameter", "invalid_request", "denied"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", k)
}

// Error is a platform's failure, classified. Its message never holds a
// credential.
type Error struct {
	Kind Kind
	// Op is the operation (StopContact, DescribeContact).
	Op string
	// Code is the platform's own error code (ContactNotFoundException),
	// and Status its HTTP status, when it answered.
	Code   string
	Status int
	// Message is the platform's message.
	Message string
	// RetryAfter is how long the platform asked to wait (Throttled).
	RetryAfter time.Duration
	// Err is the underlying error, if any.
	Err error
}

func (e *Error) Error() string {
	msg := e.Op + ": " + e.Kind.String()
	if e.Code != "" {
		msg += " (" + e.Code
		if e.Status != 0 {
			msg += fmt.Sprintf(", HTTP %d", e.Status)
		}
		msg += ")"
	}
	if e.Message != "" {
		msg += ": " + e.Message
	} else if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// KindOf is the kind of err: that of an *Error in its chain, else
// Transient.
func KindOf(err error) Kind {
	var pe *Error
	if errors.As(err, &pe) {
		return pe.Kind
	}
	return Transient
}

// Retryable reports whether a call that failed with err may be made again
// by contactstop's backoff.
func Retryable(err error) bool {
	k := KindOf(err)
	return k == Transient || k == Throttled
}

// Lister is a platform that can list its active contacts (CXone's active
// contacts, Twilio's TaskRouter tasks, Genesys Cloud's queued
// conversations; Amazon Connect cannot, its inventory comes from events).
// `contacts sync` and serve's periodic sync keep the store's inventory of
// a bound instance current from it.
type Lister interface {
	// ListActive calls fn for every active contact the platform has now,
	// page by page, until fn returns an error (returned as is) or the
	// list ends. Failures are *Error.
	ListActive(ctx context.Context, fn func(Listed) error) error
}

// Listed is one active contact of a Lister.
type Listed struct {
	ContactID string
	Status
}

// ParseRetryAfter reads a Retry-After header: seconds (fractions
// accepted, at most a day) or an HTTP date (the time left until it, from
// now). ok is false for an empty or unreadable value.
func ParseRetryAfter(v string, now time.Time) (d time.Duration, ok bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseFloat(v, 64); err == nil {
		if secs < 0 || secs > 24*3600 {
			return 0, false
		}
		return time.Duration(secs * float64(time.Second)), true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}
