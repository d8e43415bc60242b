// Package faults is contactstop's fault-injection suite and the checker it
// ends every scenario with.
//
// The suite (the tests of this package) runs the real contactstop binary as
// child processes against real nats-server processes, single node and a
// three-node cluster on loopback, and injects faults into them: kill -9 and
// SIGSTOP of workers, kill -9 and restarts of servers, the loss of a stream
// leader, a rolling restart, a network partition of one cluster node
// (toxiproxy on its routes), publishers resending requests, a bulk clear
// interrupted by crashes, and clears of instances bound to a fake Amazon
// Connect (in the test process) whose API throttles, fails, loses answers
// and slows down. It runs only when CONTACTSTOP_FAULTS is "short"
// (a few minutes, what CI runs) or "long" (the sizes of docs/reliability.md),
// and prints its random seed; -faults.seed=N repeats a run.
//
// [Check] reads back everything that went in and came out (the requests
// stream, the bulk requests stream, the results stream and every contact
// record, plus the scenario's log of its own writes to contacts) and counts
// what the product promises never happens: request identities without a
// result or with more than one final one (retryable INTERNAL_ERRORs aside,
// one per stored message before the final result); contacts ENDED without
// exactly one contact.stopped of the request that ended them, or by a
// request that failed, or by none that was stored; contacts a bulk clear
// ended although the record it replaced no longer matched its filter, or
// that it missed; completions whose counts are not the bulk's stored
// results; results without the Nats-Msg-Id their identity gives; and, on
// instances bound to a platform, stop intents left on records by requests
// that were answered (their ENDED-by-the-platform records are theirs).
// [WaitQuiescent] waits until the worker has nothing left to do.
package faults
