package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// serve --http serves the web console at / and the JSON API under /v1/.
func TestServeServesTheConsoleAndTheJSONAPI(t *testing.T) {
	t.Parallel()
	_, ops := startServe(t)
	body, status := httpGet(t, "http://"+ops+"/")
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, body, "contactstop console")
	_, status = httpGet(t, "http://"+ops+"/console/app.js")
	require.Equal(t, http.StatusOK, status)
	body, status = httpGet(t, "http://"+ops+"/v1/openapi.json")
	require.Equal(t, http.StatusOK, status)
	require.True(t, strings.HasPrefix(body, "{"), body)
	body, status = httpGet(t, "http://"+ops+"/v1/instances")
	require.Equal(t, http.StatusOK, status, "authorization is off: open")
	require.JSONEq(t, `{"instances":[]}`, body)
	body, status = httpGet(t, "http://"+ops+"/v1/nope")
	require.Equal(t, http.StatusNotFound, status)
	require.Contains(t, body, `"code":"NOT_FOUND"`)
	_, status = httpGet(t, "http://"+ops+"/healthz")
	require.Equal(t, http.StatusOK, status, "the ops routes are still there")
}
