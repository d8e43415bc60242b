package twilio

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"sync"
)

// recorder is the http.RoundTripper of one call's twilio-go client. It
// exists because twilio-go builds every request with
// context.Background() and keeps nothing of a failed answer but its body:
//
//   - it gives each request the call's context, so that CallTimeout and
//     the caller's cancellation reach the connection;
//   - it points the request at Config.Endpoint when one is set;
//   - it counts every attempt (Config.OnAttempt) under the Twilio
//     operation being called;
//   - it keeps the status and headers of the last answer (the HTTP status
//     of an answer whose body is not Twilio's, Retry-After);
//   - it closes every answer's body when the call ends (twilio-go leaves
//     the body of an error answer open).
//
// twilio-go makes exactly one attempt per request: client.Client.SendRequest
// calls http.Client.Do once, and sends a request again only for APIs
// following Twilio's API standards v1.0 (an X-Twilio-ApiVersion header),
// which API 2010-04-01 and TaskRouter v1 are not (their ApiService sets
// no apiVersion). Below this RoundTripper, Go's http.Transport replays an
// idempotent request (a GET) once when a reused connection closes before
// any answer; it never replays a POST without an Idempotency-Key, which
// twilio-go does not send for these operations.
type recorder struct {
	base      http.RoundTripper
	ctx       context.Context
	endpoint  *url.URL
	onAttempt func(string)

	mu     sync.Mutex
	op     string
	last   *lastAnswer // of the current operation; nil before its answer
	bodies []io.Closer
}

// lastAnswer is what the recorder keeps of an answer.
type lastAnswer struct {
	status int
	header http.Header
}

// setOp names the Twilio operation whose request comes next.
func (r *recorder) setOp(op string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.op, r.last = op, nil
}

// answer is the last answer of the current operation (nil: none came).
func (r *recorder) answer() *lastAnswer {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

// RoundTrip implements http.RoundTripper.
func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	out := req.Clone(r.ctx)
	if r.endpoint != nil {
		out.URL.Scheme, out.URL.Host = r.endpoint.Scheme, r.endpoint.Host
		out.URL.Path = r.endpoint.Path + req.URL.Path
		out.URL.RawPath = ""
		if req.URL.RawPath != "" {
			out.URL.RawPath = r.endpoint.EscapedPath() + req.URL.RawPath
		}
		out.Host = ""
	}
	r.mu.Lock()
	op := r.op
	r.mu.Unlock()
	if r.onAttempt != nil {
		r.onAttempt(op)
	}
	resp, err := r.base.RoundTrip(out)
	if resp != nil {
		r.mu.Lock()
		r.last = &lastAnswer{status: resp.StatusCode, header: resp.Header}
		r.bodies = append(r.bodies, resp.Body)
		r.mu.Unlock()
	}
	return resp, err
}

// check turns a twilio-go success whose answer was not 2xx (twilio-go
// takes 3xx for success) into an error.
func (r *recorder) check(err error) error {
	if err != nil {
		return err
	}
	if a := r.answer(); a != nil && (a.status < 200 || a.status > 299) {
		return errNoAnswer
	}
	return nil
}

// close closes every answer's body.
func (r *recorder) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, b := range r.bodies {
		_ = b.Close()
	}
	r.bodies = nil
}
