package worker

import "github.com/contactstop/contactstop/events"

// SetCrashHooks installs crash points for tests; see testHooks.
func SetCrashHooks(w *Worker, afterDecide func(*Request, events.Result) bool, beforeAck func(*Request) bool) {
	w.hooks = testHooks{afterDecide: afterDecide, beforeAck: beforeAck}
}
