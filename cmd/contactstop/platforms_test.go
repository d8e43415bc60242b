package main

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/contactstop/contactstop/platform/cxone/cxonetest"
	"github.com/contactstop/contactstop/platform/genesys/genesystest"
)

// platformFixture is one platform's fake, as the end-to-end tests drive
// it: how to bind an instance to it, the environment serve reads its
// credentials from, and what the fake saw.
type platformFixture struct {
	bind []string // instances add flags after --platform
	env  map[string]string
	// add adds an active contact (queued, or with an agent) to the fake.
	add func(id string, queued bool)
	// hangUp ends a contact on the fake as its customer would.
	hangUp func(id string)
	// effects is how many stops ended the contact on the fake.
	effects func(id string) int
	// stops are the times of the stop calls the fake answered without a
	// throttling refusal.
	stops func() []time.Time
}

func genesysFixture(t *testing.T) platformFixture {
	fake := genesystest.New(t)
	return platformFixture{
		bind: []string{"--platform", "genesys", "--region", "mypurecloud.com", "--endpoint", fake.URL()},
		env:  map[string]string{"GENESYSCLOUD_OAUTHCLIENT_ID": fake.ClientID, "GENESYSCLOUD_OAUTHCLIENT_SECRET": fake.ClientSecret},
		add: func(id string, queued bool) {
			c := genesystest.Conversation{ID: id, QueueID: "billing", EnqueuedAt: time.Now().Add(-time.Minute)}
			c.AgentConnected = !queued
			fake.AddConversation(c)
		},
		hangUp:  func(id string) { fake.Disconnect(id) },
		effects: fake.StopEffects,
		stops: func() []time.Time {
			var at []time.Time
			for _, c := range fake.Calls() {
				if c.Op == genesystest.OpDisconnect && c.Status != 429 {
					at = append(at, c.At)
				}
			}
			return at
		},
	}
}

func cxoneFixture(t *testing.T) platformFixture {
	fake := cxonetest.New(t)
	return platformFixture{
		bind: []string{"--platform", "cxone", "--tenant-id", fake.TenantID, "--endpoint", fake.URL()},
		env: map[string]string{"CXONE_ACCESS_KEY_ID": fake.AccessKeyID, "CXONE_ACCESS_KEY_SECRET": fake.AccessKeySecret,
			"CXONE_CLIENT_ID": fake.ClientID, "CXONE_CLIENT_SECRET": fake.ClientSecret},
		add: func(id string, queued bool) {
			c := cxonetest.Contact{ID: id}
			if queued {
				c.SkillID, c.EnqueuedAt = "billing", time.Now().Add(-time.Minute)
			} else {
				c.AgentConnected = true
			}
			fake.AddContact(c)
		},
		hangUp:  func(id string) { fake.Disconnect(id) },
		effects: fake.StopEffects,
		stops: func() []time.Time {
			var at []time.Time
			for _, c := range fake.CallsOf(cxonetest.OpStopContact) {
				if c.Status != 429 {
					at = append(at, c.At)
				}
			}
			return at
		},
	}
}

// TestServeListingPlatforms binds an instance to each platform that lists
// its contacts, syncs its inventory from the platform (contacts sync),
// clears its queue from two serve replicas while a single stop comes in,
// and checks that every contact was stopped on the platform exactly once,
// within the budget.
func TestServeListingPlatforms(t *testing.T) {
	for name, fixture := range map[string]func(*testing.T) platformFixture{
		"cxone":   cxoneFixture,
		"genesys": genesysFixture,
	} {
		t.Run(name, func(t *testing.T) {
			f := fixture(t)
			for k, v := range f.env {
				t.Setenv(k, v)
			}
			url, _ := startServe(t, "--sync-interval", "0")
			startReplica(t, url, "--sync-interval", "0")
			out, err := run(t, append([]string{"instances", "add", "acme", "--nats-url", url, "--rate", "20", "--burst", "5"}, f.bind...)...)
			require.NoError(t, err, out)

			const n = 30
			for i := range n {
				f.add(fmt.Sprint("9000", i), true)
			}
			f.add("9999", false) // with an agent: not in the clear
			out, err = run(t, "contacts", "sync", "--nats-url", url, "--instance", "acme", "--json")
			require.NoError(t, err, out)
			var synced struct{ Listed, Applied int }
			require.NoError(t, json.Unmarshal([]byte(out), &synced), out)
			require.Equal(t, n+1, synced.Listed, out)
			require.Equal(t, n+1, synced.Applied, out)

			var wg sync.WaitGroup
			var clearOut string
			var clearErr error
			wg.Go(func() {
				clearOut, clearErr = run(t, "clear", "--nats-url", url, "--instance", "acme", "--state", "QUEUED",
					"--bulk-id", "flood", "--wait", "--json", "--timeout", "60s")
			})
			time.Sleep(300 * time.Millisecond)
			out, err = run(t, "stop", "--nats-url", url, "--instance", "acme", "--contact", "9999", "--request-id", "r-1", "--wait", "--json")
			require.NoError(t, err, out)
			require.Contains(t, out, `"previousState": "CONNECTED"`)
			wg.Wait()
			require.NoError(t, clearErr, clearOut)
			var done struct{ Matched, Stopped int }
			require.NoError(t, json.Unmarshal([]byte(clearOut), &done), clearOut)
			require.Equal(t, n, done.Matched, clearOut)
			require.Equal(t, n, done.Stopped, clearOut)
			for i := range n {
				require.Equal(t, 1, f.effects(fmt.Sprint("9000", i)))
			}
			require.Equal(t, 1, f.effects("9999"))
			stops := f.stops()
			require.Len(t, stops, n+1, "one stop call per contact")
			for i := range stops {
				in := 0
				for _, at := range stops[i:] {
					if at.Sub(stops[i]) < time.Second {
						in++
					}
				}
				require.LessOrEqual(t, in, 5+20, "calls in the second from %s", stops[i])
			}

			// A contact the customer hung up on, no longer listed, is
			// recorded ENDED by the platform at the next sync.
			f.add("7777", true)
			_, err = run(t, "contacts", "sync", "--nats-url", url, "--instance", "acme")
			require.NoError(t, err)
			f.hangUp("7777")
			out, err = run(t, "contacts", "sync", "--nats-url", url, "--instance", "acme", "--json")
			require.NoError(t, err)
			require.Contains(t, out, `"ended": 1`)
			out, err = run(t, "contacts", "get", "--nats-url", url, "--instance", "acme", "--contact", "7777", "--json")
			require.NoError(t, err)
			require.Contains(t, out, `"endedBy": "platform"`)
		})
	}
}
