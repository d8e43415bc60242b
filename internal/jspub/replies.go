package jspub

import (
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"
)

// Replies receives the replies of many concurrent requests on one
// long-lived subscription. A subscription per request costs the server a
// SUB and an UNSUB, each of which also resets its subject-match cache. It
// is safe for concurrent use.
type Replies struct {
	nc     *nats.Conn
	prefix string // "<inbox>.": replies come to <prefix><id>

	mu      sync.Mutex
	sub     *nats.Subscription
	next    uint64
	waiting map[uint64]chan<- *nats.Msg
}

// NewReplies returns a Replies on nc. It subscribes on first use.
func NewReplies(nc *nats.Conn) *Replies {
	return &Replies{nc: nc, prefix: nc.NewInbox() + ".", waiting: map[uint64]chan<- *nats.Msg{}}
}

// Open returns a subject to send a request's replies to and the channel
// they arrive on, with room for n of them: more are dropped. Call release
// when done; later replies are dropped.
func (r *Replies) Open(n int) (subject string, replies <-chan *nats.Msg, release func(), err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sub == nil {
		sub, err := r.nc.Subscribe(r.prefix+"*", r.handle)
		if err != nil {
			return "", nil, nil, fmt.Errorf("jspub: subscribe to replies: %w", err)
		}
		if err := sub.SetPendingLimits(-1, -1); err != nil {
			return "", nil, nil, fmt.Errorf("jspub: %w", err)
		}
		r.sub = sub
	}
	r.next++
	id := r.next
	ch := make(chan *nats.Msg, n)
	r.waiting[id] = ch
	return r.prefix + strconv.FormatUint(id, 10), ch, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		delete(r.waiting, id)
	}, nil
}

func (r *Replies) handle(m *nats.Msg) {
	id, err := strconv.ParseUint(strings.TrimPrefix(m.Subject, r.prefix), 10, 64)
	if err != nil {
		return
	}
	r.mu.Lock()
	ch := r.waiting[id]
	r.mu.Unlock()
	if ch == nil {
		return
	}
	select {
	case ch <- m:
	default: // more replies than announced
	}
}
