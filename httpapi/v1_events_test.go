package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/contactstop/contactstop/auth"
	"github.com/contactstop/contactstop/events"
	"github.com/contactstop/contactstop/store"
)

// sseEvent is one server-sent event.
type sseEvent struct {
	id, kind string
	data     map[string]any
}

// openEvents opens /v1/events with the query and returns its events,
// checking the answer's status and headers against the document.
func (e *v1Env) openEvents(ctx context.Context, query string) <-chan sseEvent {
	e.t.Helper()
	req, err := http.NewRequestWithContext(ctx, "GET", e.srv.URL+"/v1/events"+query, nil)
	require.NoError(e.t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(e.t, err)
	require.Equal(e.t, http.StatusOK, resp.StatusCode)
	require.Equal(e.t, "text/event-stream", resp.Header.Get("Content-Type"))
	out := make(chan sseEvent, 1024)
	go func() {
		defer close(out)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.kind != "" {
					out <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "id: "):
				ev.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				ev.kind = line[7:]
			case strings.HasPrefix(line, "data: "):
				_ = json.Unmarshal([]byte(line[6:]), &ev.data)
			}
		}
	}()
	return out
}

func TestV1EventsStreamResultsAndBulkProgress(t *testing.T) {
	t.Parallel()
	e := v1Setup(t, v1Options{auth: true})
	e.seed("acme", "c", 2000, "billing", store.StateQueued)
	e.register("other")
	e.token = e.issue(grant(auth.ActionAll, "instance/acme", "instance/acme/contact/*"))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	// EventSource sends no headers: the token comes as access_token.
	evs := e.openEvents(ctx, "?access_token="+e.token)
	// A result of another instance is not sent to this token.
	e.call("POST", "/v1/instances/acme/stops", map[string]any{"contactId": "c0", "requestId": "r-0"}, true)
	other := e.issue(grant(auth.ActionAll, "instance/other/contact/*"))
	e2 := *e
	e2.token = other
	e2.call("POST", "/v1/instances/other/stops", map[string]any{"contactId": "x"}, true)
	e.call("POST", "/v1/instances/acme/clears", map[string]any{"bulkId": "b-sse"}, true)

	seen := map[string]int{}
	var lastID string
	for done := false; !done; {
		select {
		case ev, ok := <-evs:
			require.True(t, ok, "the stream stays open")
			seen[ev.kind]++
			if ev.id != "" {
				lastID = ev.id
			}
			require.Equal(t, "acme", ev.data["instanceId"], "only acme's events: %v", ev)
			done = ev.kind == "bulkCompleted"
			if done {
				require.Equal(t, "b-sse", ev.data["bulkId"])
				require.EqualValues(t, 1999, ev.data["stopped"])
			}
		case <-ctx.Done():
			t.Fatalf("no bulkCompleted event; saw %v", seen)
		}
	}
	require.Equal(t, 2000, seen["stopped"], "c0's result and the clear's 1999: %v", seen)
	require.NotZero(t, seen["bulkProgress"], "progress while the clear ran: %v", seen)

	// Reconnecting with Last-Event-ID resumes after it: the stream is
	// caught up, so the next event is a new one.
	ctx2, cancel2 := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel2()
	evs2 := e.openEvents(ctx2, "?instance=acme&lastEventId="+lastID+"&access_token="+e.token)
	e.call("POST", "/v1/instances/acme/stops", map[string]any{"contactId": "c0", "requestId": "r-again"}, true)
	select {
	case ev := <-evs2:
		require.Equal(t, "failed", ev.kind)
		require.Equal(t, "r-again", ev.data["requestId"])
	case <-ctx2.Done():
		t.Fatal("no event after reconnecting")
	}

	// Close ends the open streams (serve calls it before shutting down).
	e.api.Close()
	for range evs2 {
	}
	require.NoError(t, ctx2.Err(), "the stream ended at Close, not at its deadline")

	// Bad input.
	e.token = ""
	a := e.call("GET", "/v1/events?instance=a.b&access_token="+other, nil, false)
	require.Equal(t, http.StatusBadRequest, a.status)
	a = e.call("GET", "/v1/events?instance=acme&access_token="+other, nil, false)
	require.Equal(t, http.StatusForbidden, a.status)
	require.Equal(t, "UNAUTHORIZED", a.errorCode(t))
	a = e.call("GET", "/v1/instances/acme/summary?access_token="+other, nil, false)
	require.Equal(t, http.StatusUnauthorized, a.status, "only /v1/events takes the token from the query")
}

func TestV1FailuresAndDeadLetters(t *testing.T) {
	t.Parallel()
	e := v1Setup(t, v1Options{})
	e.seed("acme", "c", 1, "billing", store.StateQueued)
	for _, id := range []string{"gone-1", "gone-2"} {
		a := e.call("POST", "/v1/instances/acme/stops?wait=10s", map[string]any{"contactId": id}, true)
		require.Equal(t, "FAILED", a.body["status"])
	}
	a := e.call("POST", "/v1/instances/nowhere/stops?wait=10s", map[string]any{"contactId": "x"}, true)
	require.Equal(t, "RESOURCE_NOT_FOUND", a.body["failed"].(map[string]any)["reasonCode"])

	a = e.call("GET", "/v1/instances/acme/failures?limit=1", nil, true)
	require.Equal(t, http.StatusOK, a.status, "%s", a.raw)
	require.EqualValues(t, 2, a.body["total"])
	require.EqualValues(t, 2, a.body["byReasonCode"].(map[string]any)["CONTACT_NOT_FOUND"])
	recent := a.body["recent"].([]any)
	require.Len(t, recent, 1)
	require.Equal(t, "gone-2", recent[0].(map[string]any)["contactId"], "newest first")

	// A dead letter as the worker writes it (worker/settle.go).
	nc, err := nats.Connect(e.js.Conn().ConnectedUrl())
	require.NoError(t, err)
	defer nc.Close()
	msg := nats.NewMsg(events.DeadLetterSubject("acme"))
	msg.Data = []byte(`{"contactId":"c9","instanceId":"acme","securityUser":"secret-token"}`)
	msg.Header.Set("Contactstop-Error", "store unavailable")
	msg.Header.Set("Contactstop-Deliveries", "5")
	msg.Header.Set("Contactstop-Subject", "contact.stop.requested.acme")
	msg.Header.Set("Contactstop-Stream-Sequence", "42")
	_, err = e.js.PublishMsg(t.Context(), msg)
	require.NoError(t, err)
	msg = nats.NewMsg(events.SubjectDeadLetter)
	msg.Data = []byte("not json")
	_, err = e.js.PublishMsg(t.Context(), msg)
	require.NoError(t, err)

	a = e.call("GET", "/v1/deadletters", nil, true)
	require.Equal(t, http.StatusOK, a.status, "%s", a.raw)
	dls := a.body["deadLetters"].([]any)
	require.Len(t, dls, 2)
	require.Equal(t, "not json", dls[0].(map[string]any)["body"], "newest first")
	dl := dls[1].(map[string]any)
	require.Equal(t, "acme", dl["instanceId"])
	require.Equal(t, "store unavailable", dl["error"])
	require.EqualValues(t, 42, dl["originalSequence"])
	require.Equal(t, "[redacted]", dl["request"].(map[string]any)["securityUser"])
	require.NotContains(t, string(a.raw), "secret-token")

	a = e.call("GET", "/v1/deadletters?instance=acme", nil, true)
	require.Len(t, a.body["deadLetters"], 1)
	a = e.call("GET", "/v1/deadletters?since=1y", nil, false)
	require.Equal(t, http.StatusBadRequest, a.status)
	require.Equal(t, "INVALID_PARAMETER", a.errorCode(t))
}
