package httpapi

import (
	_ "embed"
	"net/http"
)

// openAPIDocument is the OpenAPI 3 description of the JSON API, served at
// GET /v1/openapi.json. The handler tests validate every request and answer
// against it, so that a handler and the document cannot drift apart.
//
//go:embed openapi.json
var openAPIDocument []byte

// OpenAPIDocument returns the OpenAPI 3 document of the JSON API.
func OpenAPIDocument() []byte { return append([]byte(nil), openAPIDocument...) }

// openAPI: GET /v1/openapi.json — the API's description; readable without
// a token.
func (a *V1) openAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(openAPIDocument)
}
