package twiliotest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/contactstop/contactstop/platform"
	"github.com/contactstop/contactstop/platform/platformtest"
	"github.com/contactstop/contactstop/store"
)

// ContractFake is the control of a Server for the platform contract suite
// (platformtest.Fake), for the adapter bound to one workspace. The suite's
// contacts are TaskRouter tasks of that workspace.
//
// The suite speaks its own contact ids ("c-1"), which are not Twilio sids:
// each is mapped to a task sid (WT and 32 hex digits derived from it), and
// [ContractFake.Wrap] makes the adapter under test see the mapped ids.
// The suite's failures are scripted on the Twilio request that carries
// each of its operations: a stop's on UpdateTask (after the adapter
// fetched the task), a description's on FetchTask. Since a stop fetches
// the task too, Wrap arms a failure only when the adapter's operation it
// was meant for begins, so that a stop never consumes a description's
// failure.
type ContractFake struct {
	t             testing.TB
	srv           *Server
	workspace     string
	defaultReason string

	mu      sync.Mutex
	pending map[string][]func() // by the suite's op: scripts to arm when it begins
}

var _ platformtest.Fake = (*ContractFake)(nil)

// NewContractFake controls srv for the suite; workspaceSID is the
// adapter's workspace, defaultReason the Reason the adapter sends when a
// stop has no disconnect reason (DisconnectReason reports it as none).
func NewContractFake(t testing.TB, srv *Server, workspaceSID, defaultReason string) *ContractFake {
	srv.AddWorkspace(workspaceSID)
	return &ContractFake{t: t, srv: srv, workspace: workspaceSID, defaultReason: defaultReason, pending: map[string][]func(){}}
}

// SID is the task sid a suite contact id maps to.
func SID(contactID string) string {
	sum := sha256.Sum256([]byte(contactID))
	return "WT" + hex.EncodeToString(sum[:16])
}

// channels maps the store's channels to TaskRouter task channels.
var channels = map[store.Channel]string{
	"": "voice", store.ChannelVoice: "voice", store.ChannelChat: "chat", store.ChannelSMS: "sms",
	store.ChannelEmail: "email", store.ChannelWorkItem: "default",
}

// AddContact adds a task: pending (in its queue, if it has one), or
// assigned when an agent took it.
func (f *ContractFake) AddContact(c platformtest.Contact) {
	ch, ok := channels[c.Channel]
	if !ok {
		f.t.Fatalf("twiliotest: no task channel for %s", c.Channel)
	}
	status := TaskPending
	if c.AgentConnected {
		status = TaskAssigned
	}
	f.srv.AddTask(f.workspace, Task{SID: SID(c.ID), AssignmentStatus: status, Channel: ch,
		TaskQueueSID: c.QueueID, TaskQueueEnteredAt: c.EnqueuedAt})
}

// HangUp ends the task as if the customer hung up.
func (f *ContractFake) HangUp(contactID string) {
	if !f.srv.Disconnect(SID(contactID)) {
		f.t.Fatalf("twiliotest: contact %s is not active", contactID)
	}
}

// FailNext fails the next op of the adapter with f.
func (f *ContractFake) FailNext(op string, fl platformtest.Failure) {
	var fault Fault
	switch fl.Kind {
	case platform.Throttled:
		fault = TooManyRequests("")
		if fl.RetryAfter > 0 {
			fault.RetryAfter = strconv.Itoa(int(fl.RetryAfter / time.Second))
		}
	case platform.Transient:
		fault = InternalError()
	case platform.Denied:
		fault = Forbidden()
	case platform.InvalidParameter:
		fault = InvalidParameter()
	case platform.InvalidRequest:
		fault = MethodNotAllowed()
	default:
		f.t.Fatalf("twiliotest cannot fail a call with %v", fl)
	}
	twOp := opOf(f.t, op)
	f.queue(op, func() { f.srv.FailNext(twOp, 1, fault) })
}

// LoseNextAnswer makes the next op of the adapter take effect and lose
// its answer.
func (f *ContractFake) LoseNextAnswer(op string) {
	twOp := opOf(f.t, op)
	f.queue(op, func() { f.srv.LoseNext(twOp, 1) })
}

// StopEffects is how many updates ended the contact's task.
func (f *ContractFake) StopEffects(contactID string) int { return f.srv.StopEffects(SID(contactID)) }

// DisconnectReason is the Reason of the update that ended the task, "" for
// the adapter's default one.
func (f *ContractFake) DisconnectReason(contactID string) string {
	t, _ := f.srv.Task(f.workspace, SID(contactID))
	if !t.Stopped || t.Reason == f.defaultReason {
		return ""
	}
	return t.Reason
}

func (f *ContractFake) queue(op string, arm func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pending[op] = append(f.pending[op], arm)
}

// arm scripts the failures meant for the adapter's op that begins.
func (f *ContractFake) arm(op string) {
	f.mu.Lock()
	arms := f.pending[op]
	delete(f.pending, op)
	f.mu.Unlock()
	for _, a := range arms {
		a()
	}
}

func opOf(t testing.TB, op string) Op {
	switch op {
	case platformtest.OpStopContact:
		return OpUpdateTask
	case platformtest.OpDescribeContact:
		return OpFetchTask
	}
	t.Fatalf("twiliotest: unknown operation %q", op)
	return ""
}

// Wrap returns p speaking the suite's contact ids: each call maps its id
// to the task sid and arms the failures scripted for it.
func (f *ContractFake) Wrap(p platform.Platform) platform.Platform {
	return contractPlatform{p: p, f: f}
}

type contractPlatform struct {
	p platform.Platform
	f *ContractFake
}

func (c contractPlatform) StopContact(ctx context.Context, contactID, reason string) error {
	c.f.arm(platformtest.OpStopContact)
	return c.p.StopContact(ctx, SID(contactID), reason)
}

func (c contractPlatform) DescribeContact(ctx context.Context, contactID string) (platform.Status, error) {
	c.f.arm(platformtest.OpDescribeContact)
	return c.p.DescribeContact(ctx, SID(contactID))
}
