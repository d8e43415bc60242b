// Package faults is contactstop's fault-injection suite and the checker it
// ends every scenario with.
//
// The suite (the tests of this package) runs the real contactstop binary as
// child processes against real nats-server processes, single node and a
// three-node cluster on loopback, and injects faults into them: kill -9 and
// SIGSTOP of workers, kill -9 and restarts of servers, the loss of a stream
// leader, a rolling restart, a network partition of one cluster node
// (toxiproxy on its routes), publishers resending requests, and a bulk clear
// interrupted by crashes. It runs only when CONTACTSTOP_FAULTS is "short"
// (a few minutes, what CI runs) or "long" (the sizes of docs/reliability.md),
// and prints its random seed; -faults.seed=N repeats a run.
//
// [Check] reads back everything that went in and came out (the requests
// stream, the bulk requests stream, the results stream and every contact
// record) and counts what the product promises never happens: requests
// without a result, requests with more than one, contacts ended twice or by
// a request other than the one whose result says so, contacts ended that no
// request asked for, and bulk requests without exactly one completion.
// [WaitQuiescent] waits until the worker has nothing left to do.
package faults
