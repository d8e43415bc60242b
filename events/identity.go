package events

import "strconv"

// RequestIdentity is the identity of a stop request, the key of everything
// idempotent about it: its requestId when it has one, else its
// Nats-Msg-Id header, else "seq-<stream sequence>" (a message published
// without either is a request of its own each time). The result's
// requestId is the identity, and the contact's endedBy records it.
//
// A bulk request is identified the same way by its bulkId.
func RequestIdentity(requestID, msgID string, streamSeq uint64) string {
	switch {
	case requestID != "":
		return requestID
	case msgID != "":
		return msgID
	}
	return "seq-" + strconv.FormatUint(streamSeq, 10)
}
