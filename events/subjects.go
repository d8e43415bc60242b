package events

import (
	"fmt"
	"strings"
)

// Subjects of the messages contactstop consumes and produces. A subject that
// takes an instance ID appends it as one more token, e.g.
// "contact.stopped.acme-prod"; use the builder functions below rather than
// concatenating, so that a missing or invalid instance ID goes where the
// contract says.
const (
	// SubjectStopRequested carries a StopRequest. Publishers may use the bare
	// subject or StopRequestedSubject(instanceID); with the latter the worker
	// requires the body's instanceId to match the subject (see
	// StopRequest.CheckSubject), so that NATS subject permissions can confine
	// a publisher to its own instances. Streams capture both
	// "contact.stop.requested" and "contact.stop.requested.>".
	SubjectStopRequested = "contact.stop.requested"

	// SubjectStopped is the prefix of StoppedSubject: the contact was
	// stopped by the request named in the Stopped event. Subscribe to
	// "contact.stopped.>".
	SubjectStopped = "contact.stopped"

	// SubjectStopFailed carries a StopFailed event. It is followed by the
	// instance ID, or used bare when the request's instance ID was missing or
	// invalid (see StopFailedSubject). Subscribe to both
	// "contact.stop.failed" and "contact.stop.failed.>".
	SubjectStopFailed = "contact.stop.failed"

	// SubjectBulkRequested carries a request to stop every contact of an
	// instance that matches a filter. Publishers may use the bare subject
	// or BulkRequestedSubject(instanceID); with the latter the body's
	// instanceId must match (BulkRequest.CheckSubject), so that NATS subject
	// permissions can confine a publisher to its own instances. Streams
	// capture both.
	SubjectBulkRequested = "contact.stop.bulk.requested"

	// SubjectBulkCompleted, followed by the instance ID, carries the summary
	// of one bulk request once every matched contact has its result.
	SubjectBulkCompleted = "contact.stop.bulk.completed"

	// SubjectEmergencyBroadcast, followed by the instance ID, is published by
	// an emergency or alerting system; when enabled, the worker clears the
	// instance's queued contacts.
	SubjectEmergencyBroadcast = "emergency.broadcast"

	// SubjectDeadLetter is contactstop's own addition to the specification:
	// a request that kept failing with a transient error and was answered
	// with INTERNAL_ERROR is copied here, followed by the instance ID, or on
	// the bare subject when the instance ID could not be read (see
	// DeadLetterSubject), as for SubjectStopFailed. The
	// copy keeps the request's body and headers, so an operator can inspect
	// it and publish it again.
	SubjectDeadLetter = "contact.stop.deadletter"
)

// Message headers that contactstop reads and writes.
const (
	// HeaderMsgID is JetStream's deduplication header. Requests published by
	// Publisher carry RequestMsgID; results carry ResultMsgID.
	HeaderMsgID = "Nats-Msg-Id"

	// HeaderTraceparent is the W3C Trace Context header. The worker copies
	// it from a request to its result.
	HeaderTraceparent = "traceparent"

	// HeaderCorrelationID is copied from a request to its result, for
	// callers that correlate by their own ID rather than by requestId.
	HeaderCorrelationID = "Correlation-Id"
)

// StopRequestedSubject returns "contact.stop.requested.<instanceID>". The
// instance ID must be valid (see ValidInstanceID); otherwise the result is
// not a subject the worker accepts requests on.
func StopRequestedSubject(instanceID string) string {
	return SubjectStopRequested + "." + instanceID
}

// StoppedSubject returns "contact.stopped.<instanceID>". The instance ID must
// be valid (see ValidInstanceID): a Stopped event is only ever published for
// a valid request.
func StoppedSubject(instanceID string) string {
	return SubjectStopped + "." + instanceID
}

// StopFailedSubject returns "contact.stop.failed.<instanceID>", or the bare
// "contact.stop.failed" when instanceID is empty or otherwise invalid (see
// ValidInstanceID), so that an unreadable instance ID can never produce a
// subject with extra tokens or wildcards.
func StopFailedSubject(instanceID string) string {
	if !ValidInstanceID(instanceID) {
		return SubjectStopFailed
	}
	return SubjectStopFailed + "." + instanceID
}

// DeadLetterSubject returns "contact.stop.deadletter.<instanceID>", or the
// bare "contact.stop.deadletter" when instanceID is empty or otherwise
// invalid (see ValidInstanceID).
func DeadLetterSubject(instanceID string) string {
	if !ValidInstanceID(instanceID) {
		return SubjectDeadLetter
	}
	return SubjectDeadLetter + "." + instanceID
}

// SubjectInstance reports the instance token of a request subject: ("acme",
// true) for "contact.stop.requested.acme" and ("", false) for the bare
// "contact.stop.requested" or any subject that is not a request subject.
// Everything after the prefix is returned, unvalidated: for
// "contact.stop.requested.a.b" it is ("a.b", true), which ValidInstanceID
// then rejects.
func SubjectInstance(subject string) (string, bool) {
	return instanceToken(subject, SubjectStopRequested)
}

// instanceToken returns what follows prefix and a dot in subject,
// unvalidated, or ("", false) when subject is not prefix + "." + something.
func instanceToken(subject, prefix string) (string, bool) {
	rest, ok := strings.CutPrefix(subject, prefix)
	if !ok || rest == "" || rest[0] != '.' {
		return "", false
	}
	return rest[1:], true
}

// checkSubjectInstance checks the instance a message names in its body
// against the one its subject names, if any (onInstance): it must be a
// valid instance ID equal to bodyInstance, else a *ValidationError
// (INVALID_PARAMETER, field "instanceId").
func checkSubjectInstance(subject, subjectInstance string, onInstance bool, bodyInstance string) error {
	switch {
	case !onInstance:
		return nil
	case !ValidInstanceID(subjectInstance):
		return invalidParameter("instanceId", fmt.Sprintf("subject %q does not end in a valid instance ID", subject))
	case subjectInstance != bodyInstance:
		return invalidParameter("instanceId", fmt.Sprintf("is %q but the message was published for instance %q", bodyInstance, subjectInstance))
	}
	return nil
}
