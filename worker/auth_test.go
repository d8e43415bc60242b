package worker_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/contactstop/contactstop/auth"
	"github.com/contactstop/contactstop/events"
	"github.com/contactstop/contactstop/store"
	"github.com/contactstop/contactstop/worker"
)

// tokens mints tokens with one Ed25519 key whose verifier the worker uses.
type tokens struct {
	t   *testing.T
	key auth.SigningKey
	v   *auth.Verifier
}

func newTokens(t *testing.T) *tokens {
	priv, pub, err := auth.GenerateKeyPair()
	require.NoError(t, err)
	sk, err := auth.ParsePrivateKey(priv)
	require.NoError(t, err)
	pk, err := auth.ParsePublicKey(pub)
	require.NoError(t, err)
	v, err := auth.NewVerifier(auth.Config{Keys: []auth.Key{pk}})
	require.NoError(t, err)
	return &tokens{t: t, key: sk, v: v}
}

func (k *tokens) issue(action auth.Action, resources ...string) string {
	k.t.Helper()
	tok, err := auth.Issue(k.key, auth.Claims{Subject: "tester", ExpiresAt: time.Now().Add(time.Hour),
		Grants: []auth.Grant{{Actions: []auth.Action{action}, Resources: resources}}})
	require.NoError(k.t, err)
	return tok
}

func body(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

func TestAuthorization(t *testing.T) {
	t.Parallel()
	e := setup(t, worker.TopologyConfig{Emergency: true})
	e.seed("ok", "missing", "other", "action", "garbage")
	e.seedN("bulk", 20, store.StateQueued, "bq", store.ChannelVoice, time.Now())
	e.seedN("emerg", 10, store.StateQueued, "eq", store.ChannelVoice, time.Now())
	tk := newTokens(t)
	cfg := bulkConfig(t)
	cfg.Authorizer, cfg.Emergency = tk.v, true
	e.start(cfg, nil)

	stop := func(id, contact, token string) {
		e.publish(events.StopRequestedSubject(inst), body(t, events.StopRequest{RequestID: id, ContactID: contact, InstanceID: inst, SecurityUser: token}), nil)
	}
	stop("ok", "ok", tk.issue(auth.ActionStop, "instance/acme/contact/*"))
	stop("missing", "missing", "")
	stop("garbage", "garbage", "not.a.jwt")
	stop("other", "other", tk.issue(auth.ActionStop, "instance/globex/contact/*"))
	stop("action", "action", tk.issue(auth.ActionBulkStop, "instance/acme"))
	// An unknown instance without a token: the token is checked first, so
	// the caller learns nothing about which instances exist.
	e.publish(events.StopRequestedSubject("nobody"), body(t, events.StopRequest{RequestID: "probe", ContactID: "c", InstanceID: "nobody"}), nil)
	// Bulk: contact:Stop is not enough, contact:BulkStop on the instance is.
	e.bulk(events.BulkRequest{BulkID: "denied", InstanceID: inst, SecurityUser: tk.issue(auth.ActionStop, "instance/acme/contact/*")})
	e.bulk(events.BulkRequest{BulkID: "allowed", InstanceID: inst, Filter: events.BulkFilter{QueueIDs: []string{"bq"}},
		SecurityUser: tk.issue(auth.ActionBulkStop, "instance/acme")})
	_, done := e.waitBulk("allowed")
	require.Equal(t, 20, done.Stopped)
	// Emergency broadcasts too.
	e.publish(events.EmergencySubject(inst), []byte(`{"queueIds":["eq"]}`), map[string]string{events.HeaderMsgID: "no-token"})
	e.publish(events.EmergencySubject(inst), body(t, events.EmergencyBroadcast{QueueIDs: []string{"eq"},
		SecurityUser: tk.issue(auth.ActionBulkStop, "instance/acme")}), map[string]string{events.HeaderMsgID: "with-token"})
	_, done = e.waitBulk("emergency-with-token")
	require.Equal(t, 10, done.Stopped)

	got := byRequest(t, e.waitIdle(8+20+10))
	require.NotNil(t, got["ok"].result.Stopped)
	requireFailed(t, got["missing"], events.ReasonInvalidSecurityUser)
	requireFailed(t, got["garbage"], events.ReasonInvalidSecurityUser)
	requireFailed(t, got["other"], events.ReasonUnauthorized)
	requireFailed(t, got["action"], events.ReasonUnauthorized)
	requireFailed(t, got["probe"], events.ReasonInvalidSecurityUser)
	requireFailed(t, got["denied"], events.ReasonUnauthorized)
	requireFailed(t, got["emergency-no-token"], events.ReasonInvalidSecurityUser)
	for id, r := range got {
		if r.result.Failed != nil {
			require.NotContains(t, r.result.Failed.Message, "eyJ", "%s: a failure never echoes the token", id)
		}
	}
	states := e.countStates()
	require.Equal(t, 1, states["ok:ENDED"])
	require.Equal(t, 1, states["missing:QUEUED"], "refused requests touch nothing")
	require.Equal(t, 1, states["other:QUEUED"])
}

// TestAuthorizationOff ignores tokens when no key is configured.
func TestAuthorizationOff(t *testing.T) {
	t.Parallel()
	e := setup(t, worker.TopologyConfig{})
	e.seed("c-1")
	e.start(fastConfig(t), nil)
	e.publish(events.StopRequestedSubject(inst), body(t, events.StopRequest{RequestID: "r-1", ContactID: "c-1", InstanceID: inst,
		SecurityUser: "whatever, even garbage"}), nil)
	got := byRequest(t, e.waitIdle(1))
	require.NotNil(t, got["r-1"].result.Stopped)
}

// TestClaimedInstanceNeedsAuthorization: a request on the bare subject
// names its instance only in its body, which no subject permission vouches
// for. With authorization on, a refusal before the token authorizes it goes
// to the bare contact.stop.failed, never to the claimed instance's results;
// once authorized, its results go to the instance.
func TestClaimedInstanceNeedsAuthorization(t *testing.T) {
	t.Parallel()
	e := setup(t, worker.TopologyConfig{})
	e.seed("ok", "refused")
	tk := newTokens(t)
	cfg := bulkConfig(t)
	cfg.Authorizer = tk.v
	e.start(cfg, nil)

	e.publish(events.SubjectStopRequested, body(t, events.StopRequest{RequestID: "no-token", ContactID: "refused", InstanceID: inst}), nil)
	e.publish(events.SubjectStopRequested, body(t, events.StopRequest{RequestID: "other-instance", ContactID: "refused", InstanceID: inst,
		SecurityUser: tk.issue(auth.ActionStop, "instance/globex/contact/*")}), nil)
	e.publish(events.SubjectStopRequested, []byte(`{"requestId":"invalid","contactId":"refused","instanceId":"acme","disconnectReason":"`+
		strings.Repeat("ATTACKER ", 40)+`"}`), nil)
	e.publish(events.SubjectStopRequested, body(t, events.StopRequest{RequestID: "ok", ContactID: "ok", InstanceID: inst,
		SecurityUser: tk.issue(auth.ActionStop, "instance/acme/contact/*")}), nil)
	e.publish(events.SubjectBulkRequested, body(t, events.BulkRequest{BulkID: "bulk-no-token", InstanceID: inst}), nil)
	e.publish(events.SubjectBulkRequested, []byte(`{"bulkId":"bulk-invalid","instanceId":"acme","filter":{"states":["ATTACKER"]}}`), nil)

	got := byRequest(t, e.waitIdle(6))
	require.Equal(t, events.StoppedSubject(inst), got["ok"].subject, "authorized: answered on the instance's subject")
	for id, code := range map[string]events.ReasonCode{
		"no-token": events.ReasonInvalidSecurityUser, "other-instance": events.ReasonUnauthorized, "invalid": events.ReasonInvalidParameter,
		"bulk-no-token": events.ReasonInvalidSecurityUser, "bulk-invalid": events.ReasonInvalidParameter,
	} {
		requireFailed(t, got[id], code)
		require.Equal(t, events.SubjectStopFailed, got[id].subject, "%s: refused before authorization, answered on the bare subject", id)
	}
	states := e.countStates()
	require.Equal(t, 1, states["refused:QUEUED"], "refused requests touch nothing")
	_, err := e.st.GetBulk(t.Context(), inst, "bulk-no-token")
	require.ErrorIs(t, err, store.ErrBulkNotFound, "nothing is recorded under the claimed instance")
}
