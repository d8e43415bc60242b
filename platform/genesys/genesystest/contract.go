package genesystest

import (
	"strconv"
	"testing"
	"time"

	"github.com/contactstop/contactstop/platform"
	"github.com/contactstop/contactstop/platform/platformtest"
	"github.com/contactstop/contactstop/store"
)

// ContractFake is platformtest's vendor-neutral control of a Server, for
// the contract suite (platformtest.Run).
//
// Two of the suite's expectations have no Genesys counterpart, and a
// harness skips them: the disconnect operation takes no reason, so
// DisconnectReason is always ""; and conversations have no work item
// media, so AddContact fails the test for the WORK_ITEM channel.
type ContractFake struct {
	T      testing.TB
	Server *Server
}

var _ platformtest.Fake = ContractFake{}

// contractOps maps platformtest's operations to the fake's.
var contractOps = map[string]Op{
	platformtest.OpStopContact:     OpDisconnect,
	platformtest.OpDescribeContact: OpGetConversation,
}

// ChannelMedia maps the store's channels to conversation media.
var ChannelMedia = map[store.Channel]string{
	store.ChannelVoice: MediaVoice, store.ChannelChat: MediaChat, store.ChannelEmail: MediaEmail,
}

func (f ContractFake) op(op string) Op {
	f.T.Helper()
	o, ok := contractOps[op]
	if !ok {
		f.T.Fatalf("genesystest: no operation %q", op)
	}
	return o
}

// AddContact adds an active conversation (VOICE by default).
func (f ContractFake) AddContact(c platformtest.Contact) {
	f.T.Helper()
	if c.Channel == "" {
		c.Channel = store.ChannelVoice
	}
	media, ok := ChannelMedia[c.Channel]
	if !ok {
		f.T.Fatalf("genesystest: Genesys Cloud conversations have no media for channel %s", c.Channel)
	}
	f.Server.AddConversation(Conversation{ID: c.ID, MediaType: media, QueueID: c.QueueID, EnqueuedAt: c.EnqueuedAt,
		AgentConnected: c.AgentConnected})
}

// HangUp ends an active conversation as the customer would.
func (f ContractFake) HangUp(contactID string) {
	f.T.Helper()
	if !f.Server.Disconnect(contactID) {
		f.T.Fatalf("genesystest: conversation %s is not active", contactID)
	}
}

// FailNext answers the next call of op with the Genesys answer of f's
// kind: 429 too.many.requests.retry.after (Retry-After in whole seconds,
// none when f has no RetryAfter), 500 internal.server.error, 403
// missing.permissions, 400 invalid.value or 400 bad.request.
func (f ContractFake) FailNext(op string, fl platformtest.Failure) {
	f.T.Helper()
	var fault Fault
	switch fl.Kind {
	case platform.Throttled:
		fault = TooManyRequests("")
		if fl.RetryAfter > 0 {
			fault = TooManyRequests(strconv.Itoa(int(fl.RetryAfter / time.Second)))
		}
	case platform.Transient:
		fault = InternalServerError()
	case platform.Denied:
		fault = MissingPermissions("conversation:communication:disconnect")
	case platform.InvalidParameter:
		fault = InvalidValue()
	case platform.InvalidRequest:
		fault = BadRequest()
	default:
		f.T.Fatalf("genesystest cannot fail a call with %v", fl)
	}
	f.Server.FailNext(f.op(op), 1, fault)
}

// LoseNextAnswer loses the answer of the next call of op after its effect.
func (f ContractFake) LoseNextAnswer(op string) { f.Server.LoseNext(f.op(op), 1) }

// StopEffects is how many disconnects ended the conversation.
func (f ContractFake) StopEffects(contactID string) int { return f.Server.StopEffects(contactID) }

// DisconnectReason is always "": Genesys's disconnect takes no reason.
func (f ContractFake) DisconnectReason(string) string { return "" }
