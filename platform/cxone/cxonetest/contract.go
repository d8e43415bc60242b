package cxonetest

import (
	"strconv"
	"testing"
	"time"

	"github.com/contactstop/contactstop/platform"
	"github.com/contactstop/contactstop/platform/platformtest"
	"github.com/contactstop/contactstop/store"
)

// ContractFake is platformtest's vendor-neutral control of a Server, for
// the adapters' contract suite (platformtest.Run).
type ContractFake struct {
	T testing.TB
	S *Server
}

var _ platformtest.Fake = ContractFake{}

// mediaTypes maps the store's channels to CXone's media types.
var mediaTypes = map[store.Channel]MediaType{
	"":                     MediaPhoneCall,
	store.ChannelVoice:     MediaPhoneCall,
	store.ChannelChat:      MediaChat,
	store.ChannelEmail:     MediaEmail,
	store.ChannelWorkItem:  MediaWorkItem,
	store.ChannelSMS:       MediaSMS,
	store.ChannelVoicemail: MediaVoicemail,
}

// AddContact adds an active contact; its queue is its skill.
func (f ContractFake) AddContact(c platformtest.Contact) {
	f.T.Helper()
	m, ok := mediaTypes[c.Channel]
	if !ok {
		f.T.Fatalf("cxonetest: CXone has no media type for channel %s", c.Channel)
	}
	f.S.AddContact(Contact{ID: c.ID, MediaType: m, SkillID: c.QueueID, EnqueuedAt: c.EnqueuedAt, AgentConnected: c.AgentConnected})
}

// HangUp ends an active contact as the customer would.
func (f ContractFake) HangUp(contactID string) {
	f.T.Helper()
	if !f.S.Disconnect(contactID) {
		f.T.Fatalf("cxonetest: contact %s is not active", contactID)
	}
}

// FailNext makes the next call of op answer the failure: Throttled 429
// (with Retry-After in seconds when given), Transient 500, Denied 403,
// InvalidParameter 400, InvalidRequest 409.
func (f ContractFake) FailNext(op string, fl platformtest.Failure) {
	f.T.Helper()
	var fault Fault
	switch fl.Kind {
	case platform.Throttled:
		var after string
		if fl.RetryAfter > 0 {
			after = strconv.Itoa(int(fl.RetryAfter / time.Second))
		}
		fault = Throttling(after)
	case platform.Transient:
		fault = InternalError()
	case platform.Denied:
		fault = Forbidden()
	case platform.InvalidParameter:
		fault = InvalidParameter()
	case platform.InvalidRequest:
		fault = InvalidRequest()
	default:
		f.T.Fatalf("cxonetest cannot fail a call with %v", fl)
	}
	f.S.FailNext(Op(op), 1, fault)
}

// LoseNextAnswer makes the next call of op take effect and lose its
// answer.
func (f ContractFake) LoseNextAnswer(op string) { f.S.LoseNext(Op(op), 1) }

// StopEffects is how many end calls ended the contact.
func (f ContractFake) StopEffects(contactID string) int { return f.S.StopEffects(contactID) }

// DisconnectReason is the reason the end call that ended the contact
// carried (platform/cxone's DisconnectReasonHeader; CXone's API has none).
func (f ContractFake) DisconnectReason(contactID string) string {
	c, _ := f.S.Contact(contactID)
	return c.DisconnectReason
}
