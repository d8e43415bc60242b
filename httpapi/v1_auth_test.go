package httpapi_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/contactstop/contactstop/auth"
	"github.com/contactstop/contactstop/store"
)

func TestV1Authorization(t *testing.T) {
	t.Parallel()
	e := v1Setup(t, v1Options{auth: true})
	e.seed("acme", "c", 5, "billing", store.StateQueued)
	e.register("other")

	reads := []string{
		"/v1/instances/acme/summary", "/v1/instances/acme/contacts", "/v1/instances/acme/failures",
		"/v1/bulks?instance=acme", "/v1/deadletters?instance=acme", "/v1/instances/acme/bulks/b-1",
	}
	type write struct {
		path string
		body any
	}
	writes := []write{
		{"/v1/instances/acme/stops", map[string]any{"contactId": "c0"}},
		{"/v1/instances/acme/clears", map[string]any{"bulkId": "b-1"}},
		{"/v1/instances/acme/bulks/b-1/cancel", nil},
	}

	t.Run("no token", func(t *testing.T) {
		e := *e
		e.t, e.token = t, ""
		for _, p := range append(reads, "/v1/instances", "/v1/bulks", "/v1/deadletters", "/v1/events") {
			a := e.call("GET", p, nil, true)
			require.Equal(t, http.StatusUnauthorized, a.status, p)
			require.Equal(t, "INVALID_SECURITY_USER", a.errorCode(t), p)
			require.Contains(t, a.header.Get("WWW-Authenticate"), "Bearer", p)
		}
		for _, w := range writes {
			a := e.call("POST", w.path, w.body, true)
			require.Equal(t, http.StatusUnauthorized, a.status, w.path)
			require.Equal(t, "INVALID_SECURITY_USER", a.errorCode(t), w.path)
		}
		a := e.call("GET", "/v1/openapi.json", nil, true)
		require.Equal(t, http.StatusOK, a.status, "the document needs no token")
	})

	t.Run("bad token", func(t *testing.T) {
		e := *e
		e.t = t
		other, err := auth.ParseHS256SigningSecret([]byte("another secret, also of 32+ bytes!"))
		require.NoError(t, err)
		forged, err := auth.Issue(other, auth.Claims{Subject: "x", ExpiresAt: time.Now().Add(time.Hour),
			Grants: []auth.Grant{grant(auth.ActionAll, "*")}})
		require.NoError(t, err)
		for _, tok := range []string{"garbage", forged} {
			e.token = tok
			for _, p := range reads {
				a := e.call("GET", p, nil, true)
				require.Equal(t, http.StatusUnauthorized, a.status, p)
				require.Equal(t, "INVALID_SECURITY_USER", a.errorCode(t), p)
			}
			for _, w := range writes {
				a := e.call("POST", w.path, w.body, true)
				require.Equal(t, http.StatusUnauthorized, a.status, w.path)
			}
		}
	})

	t.Run("token for another instance", func(t *testing.T) {
		e := *e
		e.t = t
		e.token = e.issue(grant(auth.ActionAll, "instance/other", "instance/other/contact/*"))
		for _, p := range reads {
			a := e.call("GET", p, nil, true)
			require.Equal(t, http.StatusForbidden, a.status, p)
			require.Equal(t, "UNAUTHORIZED", a.errorCode(t), p)
		}
		for _, w := range writes {
			a := e.call("POST", w.path, w.body, true)
			require.Equal(t, http.StatusForbidden, a.status, w.path)
			require.Equal(t, "UNAUTHORIZED", a.errorCode(t), w.path)
		}
		a := e.call("POST", "/v1/instances/acme/clears", map[string]any{"dryRun": true}, true)
		require.Equal(t, http.StatusForbidden, a.status, "dry run")
		a = e.call("GET", "/v1/instances", nil, true)
		require.Equal(t, http.StatusOK, a.status)
		require.Len(t, a.body["instances"], 1, "only the instances the token may read")
		require.Equal(t, "other", a.body["instances"].([]any)[0].(map[string]any)["instanceId"])
	})

	t.Run("read-only token", func(t *testing.T) {
		e := *e
		e.t = t
		e.token = e.issue(grant(auth.ActionRead, "instance/acme"))
		a := e.call("GET", "/v1/instances/acme/summary", nil, true)
		require.Equal(t, http.StatusOK, a.status)
		require.EqualValues(t, 5, a.body["active"])
		a = e.call("POST", "/v1/instances/acme/clears", map[string]any{"dryRun": true}, true)
		require.Equal(t, http.StatusOK, a.status, "a dry run only reads")
		for _, w := range writes {
			a := e.call("POST", w.path, w.body, true)
			require.Equal(t, http.StatusForbidden, a.status, w.path)
		}
	})

	t.Run("operator token", func(t *testing.T) {
		e := *e
		e.t = t
		e.token = e.issue(grant(auth.ActionStop, "instance/acme/contact/*"), grant(auth.ActionBulkStop, "instance/acme"))
		// The worker authorizes the request with the token passed on as
		// its securityUser.
		a := e.call("POST", "/v1/instances/acme/stops?wait=10s", map[string]any{"contactId": "c0"}, true)
		require.Equal(t, http.StatusOK, a.status, "%s", a.raw)
		require.Equal(t, "STOPPED", a.body["status"], "%s", a.raw)
		a = e.call("POST", "/v1/instances/acme/clears", map[string]any{"bulkId": "b-ops"}, true)
		require.Equal(t, http.StatusAccepted, a.status, "%s", a.raw)
		a = e.waitBulk("acme", "b-ops")
		require.EqualValues(t, 4, a.body["stopped"], "the worker accepted the token for the clear: %s", a.raw)
		a = e.call("GET", "/v1/bulks", nil, true)
		require.Len(t, a.body["bulks"], 1)
	})
}
