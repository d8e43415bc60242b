package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/spf13/cobra"

	"github.com/contactstop/contactstop/store"
)

// Exit codes, the same for every command (README, "Exit codes").
const (
	exitOK = 0
	// exitFailure: the command could not do what it was asked (bad flags,
	// no connection, a timeout, an unexpected error).
	exitFailure = 1
	// exitRequestFailed: the request was carried out and failed (stop
	// --wait got contact.stop.failed, a clear was refused or some of its
	// contacts failed).
	exitRequestFailed = 2
	// exitNotFound: the contact, instance or bulk request asked for does
	// not exist (contacts get, bulk status, bulk cancel).
	exitNotFound = 3
	// exitInterrupted: interrupted by SIGINT (clear --wait, which goes on
	// in the background), as a shell reports 128+2.
	exitInterrupted = 130
)

// exitError carries a specific exit code (for example 2 when a waited-for
// request ended in a failure result) without printing usage.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// exitCode is the exit code for err: an exitError's own, exitNotFound for
// a contact, instance or bulk request that does not exist, else
// exitFailure.
func exitCode(err error) int {
	var ee *exitError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ee):
		return ee.code
	case errors.Is(err, store.ErrContactNotFound), errors.Is(err, store.ErrInstanceNotFound), errors.Is(err, store.ErrBulkNotFound):
		return exitNotFound
	}
	return exitFailure
}

// errorJSON is how an error is printed on stderr when --json is given.
type errorJSON struct {
	Error string `json:"error"`
	Code  int    `json:"code"`
}

// reportError prints err on w, as errorJSON with --json, else as text,
// and returns the exit code.
func reportError(w io.Writer, cmd *cobra.Command, err error) int {
	code := exitCode(err)
	if wantsJSON(cmd) {
		if jerr := writeJSONLine(w, errorJSON{Error: err.Error(), Code: code}); jerr == nil {
			return code
		}
	}
	fmt.Fprintln(w, "contactstop:", err)
	return code
}

// wantsJSON reports whether the command was given --json.
func wantsJSON(cmd *cobra.Command) bool {
	if cmd == nil {
		return false
	}
	f := cmd.Flags().Lookup("json")
	return f != nil && f.Value.String() == "true"
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writeJSONLine writes v as one line of JSON: the stream format of
// results --json.
func writeJSONLine(w io.Writer, v any) error {
	return json.NewEncoder(w).Encode(v)
}

// jsonList writes a JSON array one element at a time, so that a long list
// is streamed: every list command prints one array with --json.
type jsonList struct {
	w io.Writer
	n int
}

func (l *jsonList) add(v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	sep := ",\n  "
	if l.n == 0 {
		sep = "[\n  "
	}
	l.n++
	_, err = fmt.Fprintf(l.w, "%s%s", sep, data)
	return err
}

// close ends the array; an empty list is "[]".
func (l *jsonList) close() error {
	end := "\n]\n"
	if l.n == 0 {
		end = "[]\n"
	}
	_, err := io.WriteString(l.w, end)
	return err
}

// natsSchemes are the URL schemes the NATS client speaks.
var natsSchemes = []string{"nats", "tls", "ws", "wss"}

// checkNATSURL refuses a --nats-url that is no NATS server's: a scheme
// other than nats://, tls://, ws:// or wss:// (http:// is the usual
// mistake: serve's --http port is not its NATS port). host:port without a
// scheme is nats://.
func checkNATSURL(urls string) error {
	for u := range strings.SplitSeq(urls, ",") {
		u = strings.TrimSpace(u)
		if u == "" {
			return fmt.Errorf("--nats-url %q: an empty URL in the list", urls)
		}
		if !strings.Contains(u, "://") {
			continue
		}
		p, err := url.Parse(u)
		if err != nil {
			return fmt.Errorf("--nats-url %q: %w", u, err)
		}
		ok := false
		for _, s := range natsSchemes {
			ok = ok || strings.EqualFold(p.Scheme, s)
		}
		if !ok {
			hint := ""
			if strings.HasPrefix(strings.ToLower(p.Scheme), "http") {
				hint = " (the address of serve --http serves metrics and the HTTP API, not NATS)"
			}
			return fmt.Errorf("--nats-url %q: %s:// is not a NATS URL; use nats://host:4222, tls://, ws:// or wss://%s", u, p.Scheme, hint)
		}
	}
	return nil
}
