package worker_test

// The intent protocol on every platform that lists its contacts, each
// through its own adapter and the fake of its wire protocol, driven by the
// vendor-neutral control of the adapters' contract suite: a lost answer,
// two requests for one contact, a throttled call, a hung-up contact, and a
// clear; one result per request and no contact stopped twice, each time.

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/contactstop/contactstop/events"
	"github.com/contactstop/contactstop/platform"
	"github.com/contactstop/contactstop/platform/budget"
	"github.com/contactstop/contactstop/platform/cxone"
	"github.com/contactstop/contactstop/platform/cxone/cxonetest"
	"github.com/contactstop/contactstop/platform/genesys"
	"github.com/contactstop/contactstop/platform/genesys/genesystest"
	"github.com/contactstop/contactstop/platform/platformtest"
	"github.com/contactstop/contactstop/platform/registry"
	"github.com/contactstop/contactstop/platform/twilio"
	"github.com/contactstop/contactstop/platform/twilio/twiliotest"
	"github.com/contactstop/contactstop/store"
	"github.com/contactstop/contactstop/worker"
)

// listingPlatform is one platform's fake behind its adapter.
type listingPlatform struct {
	binding store.Binding
	adapter func(ctx context.Context) (platform.Platform, error)
	fake    platformtest.Fake
	// id is the platform's contact id of a name.
	id func(string) string
}

var listingPlatforms = map[string]func(t *testing.T) listingPlatform{
	"cxone": func(t *testing.T) listingPlatform {
		srv := cxonetest.New(t)
		return listingPlatform{
			binding: store.Binding{Platform: store.PlatformCXone, TenantID: srv.TenantID, Endpoint: srv.URL()},
			adapter: func(ctx context.Context) (platform.Platform, error) {
				return cxone.New(ctx, cxone.Config{TenantID: srv.TenantID, Endpoint: srv.URL(), DiscoveryURL: srv.URL(),
					AccessKeyID: srv.AccessKeyID, AccessKeySecret: srv.AccessKeySecret, ClientID: srv.ClientID, ClientSecret: srv.ClientSecret,
					CallTimeout: 500 * time.Millisecond})
			},
			fake: cxonetest.ContractFake{T: t, S: srv},
			id:   func(s string) string { return s },
		}
	},
	"twilio": func(t *testing.T) listingPlatform {
		ws := twiliotest.NewSID("WS")
		srv := twiliotest.New(t, twiliotest.WithWorkspace(ws))
		return listingPlatform{
			binding: store.Binding{Platform: store.PlatformTwilio, WorkspaceSID: ws, Endpoint: srv.URL()},
			adapter: func(ctx context.Context) (platform.Platform, error) {
				return twilio.New(ctx, twilio.Config{WorkspaceSID: ws, Endpoint: srv.URL(), AccountSID: srv.AccountSID, AuthToken: srv.AuthToken,
					CallTimeout: 500 * time.Millisecond})
			},
			fake: twiliotest.NewContractFake(t, srv, ws, twilio.DefaultReason),
			id:   twiliotest.SID,
		}
	},
	"genesys": func(t *testing.T) listingPlatform {
		srv := genesystest.New(t)
		return listingPlatform{
			binding: store.Binding{Platform: store.PlatformGenesys, Region: "mypurecloud.com", Endpoint: srv.URL()},
			adapter: func(ctx context.Context) (platform.Platform, error) {
				return genesys.New(ctx, genesys.Config{Region: "mypurecloud.com", Endpoint: srv.URL(), ClientID: srv.ClientID,
					ClientSecret: srv.ClientSecret, CallTimeout: 500 * time.Millisecond})
			},
			fake: genesystest.ContractFake{T: t, Server: srv},
			id:   func(s string) string { return s },
		}
	},
}

// bindListing binds acme to p and returns a worker config that uses it.
func (e *env) bindListing(p listingPlatform) worker.Config {
	e.t.Helper()
	ctx := e.t.Context()
	b := p.binding
	b.Rate, b.Burst = 100, 100
	_, err := e.st.PutInstance(ctx, store.Instance{InstanceID: inst, Binding: &b})
	require.NoError(e.t, err)
	bs, err := budget.Open(ctx, e.js, budget.Config{})
	require.NoError(e.t, err)
	e.t.Cleanup(bs.Close)
	reg, err := registry.New(registry.Config{Instances: e.st, Budgets: bs,
		New: func(ctx context.Context, _ store.Binding, _ func(string)) (platform.Platform, error) {
			return p.adapter(ctx)
		}})
	require.NoError(e.t, err)
	cfg := fastConfig(e.t)
	cfg.Platforms = reg
	return cfg
}

func TestListingPlatformsIntentProtocol(t *testing.T) {
	t.Parallel()
	for name, newPlatform := range listingPlatforms {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := setup(t, worker.TopologyConfig{})
			p := newPlatform(t)
			cfg := e.bindListing(p)
			add := func(name string, queued bool) string {
				c := platformtest.Contact{ID: name, AgentConnected: !queued}
				if queued {
					c.QueueID, c.EnqueuedAt = "q1", time.Now().Add(-time.Minute)
				}
				p.fake.AddContact(c)
				id := p.id(name)
				state := store.StateConnected
				if queued {
					state = store.StateQueued
				}
				_, err := e.st.PutContact(t.Context(), store.Contact{InstanceID: inst, ContactID: id, State: state, QueueID: c.QueueID, Channel: store.ChannelVoice})
				require.NoError(t, err)
				return id
			}
			lost, twice, throttled, hungUp := add("101", false), add("102", false), add("103", false), add("104", true)
			for i := range 10 {
				add(fmt.Sprint(200+i), true)
			}
			p.fake.LoseNextAnswer(platformtest.OpStopContact)
			e.start(cfg, nil)

			e.publish("contact.stop.requested.acme", e.request("r-lost", lost), nil)
			rs := e.waitIdle(1)
			require.NotNil(t, byRequest(t, rs)["r-lost"].result.Stopped, "the answer was lost; the redelivery asks the platform")
			p.fake.FailNext(platformtest.OpStopContact, platformtest.Failure{Kind: platform.Throttled, RetryAfter: 100 * time.Millisecond})
			e.publish("contact.stop.requested.acme", e.request("r-throttled", throttled), nil)
			e.publish("contact.stop.requested.acme", e.request("r-a", twice), nil)
			e.publish("contact.stop.requested.acme", e.request("r-b", twice), nil)
			p.fake.HangUp("104") // the fake takes the names
			e.publish("contact.stop.requested.acme", e.request("r-hung-up", hungUp), nil)
			got := byRequest(t, e.waitIdle(5))
			require.NotNil(t, got["r-throttled"].result.Stopped, "%+v", got["r-throttled"].result)
			requireFailed(t, got["r-hung-up"], events.ReasonContactNotFound)
			stopped := 0
			for _, id := range []string{"r-a", "r-b"} {
				if got[id].result.Stopped != nil {
					stopped++
				} else {
					requireFailed(t, got[id], events.ReasonContactNotFound)
				}
			}
			require.Equal(t, 1, stopped, "one of two requests for one contact")

			e.bulk(events.BulkRequest{BulkID: "clear", InstanceID: inst, Filter: events.BulkFilter{States: []string{"QUEUED"}}})
			_, done := e.waitBulk("clear")
			require.Equal(t, 10, done.Stopped, "%+v", done)
			names := []string{"101", "102", "103"}
			for i := range 10 {
				names = append(names, fmt.Sprint(200+i))
			}
			for _, name := range names {
				require.Equal(t, 1, p.fake.StopEffects(name), "%s stopped once on the platform", name)
				c, err := e.st.GetContact(t.Context(), inst, p.id(name))
				require.NoError(t, err)
				require.Equal(t, store.StateEnded, c.State)
				require.Nil(t, c.Intent)
			}
			require.Zero(t, p.fake.StopEffects("104"))
		})
	}
}
