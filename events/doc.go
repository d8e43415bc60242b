// Package events is contactstop's wire contract: the NATS subjects, the JSON
// messages exchanged on them, the reason codes of failures, and the rules by
// which a stop request is decoded and validated. Other services import it to
// publish requests and read results exactly as the worker does.
//
// A publisher sends a [StopRequest] with a [Publisher]; the worker decodes it
// with [DecodeStopRequest], checks it against the subject it arrived on with
// [StopRequest.CheckSubject], and answers with a [Stopped] or a [StopFailed]
// event whose Nats-Msg-Id is [ResultMsgID], so that JetStream drops a repeated
// result. A consumer of results decodes either kind with [DecodeResult].
//
// # Characters and text
//
// Lengths given in characters ("1 to 256 characters") count Unicode code
// points, not bytes. Message bodies must be UTF-8 JSON (RFC 8259). A value
// that cannot be read faithfully as text is INVALID_REQUEST, like a value of
// the wrong JSON type: a body holding bytes that are not UTF-8, a known string
// field holding a \u escape of an unpaired UTF-16 surrogate, or (for requests
// built in Go) a field that is not valid UTF-8. INVALID_PARAMETER is kept for
// values that were read and break a constraint: missing, empty, too long, or
// with characters outside the allowed set.
package events
