package worker

import "github.com/contactstop/contactstop/events"

// SetCrashHooks installs crash points for tests; see testHooks.
func SetCrashHooks(w *Worker, afterDecide func(*Request, events.Result) bool, beforeAck func(*Request) bool) {
	w.hooks = testHooks{afterDecide: afterDecide, beforeAck: beforeAck}
}

// SetBulkCrash installs a crash point in bulk runs: crash is called before
// each matched contact is handed to the pool, and returning true abandons
// the run there, as if the process had died.
func SetBulkCrash(w *Worker, crash func(bulkID string, n int) bool) {
	w.hooks.bulkItem = crash
}

// SetBulkCrashBeforeResults installs a crash point in bulk runs: crash is
// called once a batch's contacts are written, before their results are
// published, and returning true abandons the run there.
func SetBulkCrashBeforeResults(w *Worker, crash func(bulkID string) bool) {
	w.hooks.bulkBeforeResults = crash
}

// SetBulkCrashAfterResults installs a crash point in bulk runs: crash is
// called once a batch's results are stored, before its pending slot is
// emptied, and returning true abandons the run there.
func SetBulkCrashAfterResults(w *Worker, crash func(bulkID string) bool) {
	w.hooks.bulkAfterResults = crash
}
