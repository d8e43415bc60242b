// Package console is contactstop's web console for operators: a small
// Preact + htm application over the JSON API (/v1/), embedded in the
// binary and served by serve --http at "/" with its files under
// "/console/". There is no build step: the files in this folder are served
// as they are (vendor/README.md lists the vendored libraries).
package console

import (
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"io/fs"
	"net/http"
	"regexp"
)

//go:embed index.html app.js app.css vendor/*.mjs vendor/*.css
var files embed.FS

// importMap is the inline import map of index.html: the content security
// policy allows it by its hash, and no other inline script.
var importMap = regexp.MustCompile(`(?s)<script type="importmap">(.*?)</script>`)

// Handler serves the console: index.html at "/" and the files under
// "/console/".
type Handler struct {
	index  []byte
	static http.Handler
	csp    string
}

// New returns the console's handler.
func New() *Handler {
	index, err := files.ReadFile("index.html")
	if err != nil {
		panic("console: index.html is not embedded: " + err.Error())
	}
	m := importMap.FindSubmatch(index)
	if m == nil {
		panic("console: index.html has no import map")
	}
	sum := sha256.Sum256(m[1])
	sub, _ := fs.Sub(files, ".")
	return &Handler{
		index:  index,
		static: http.StripPrefix("/console/", http.FileServerFS(sub)),
		csp: "default-src 'self'; script-src 'self' 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'; " +
			"style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; " +
			"form-action 'self'; frame-ancestors 'none'",
	}
}

// Register adds the console to mux: GET / and GET /console/….
func (h *Handler) Register(mux *http.ServeMux) {
	mux.Handle("GET /{$}", h)
	mux.Handle("GET /console/", h)
}

// ServeHTTP serves index.html for "/" and the embedded files for
// "/console/…"; anything else is 404.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", h.csp)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Cache-Control", "no-cache")
	switch {
	case r.URL.Path == "/":
		hd.Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(h.index)
	case r.URL.Path == "/console/" || r.URL.Path == "/console/index.html":
		http.Redirect(w, r, "/", http.StatusMovedPermanently)
	default:
		h.static.ServeHTTP(w, r)
	}
}
