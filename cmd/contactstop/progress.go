package main

import (
	"context"
	"fmt"
	"hash/maphash"
	"io"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/contactstop/contactstop/events"
	"github.com/contactstop/contactstop/store"
)

// bulkProgress is a bulk request's progress as clear --wait and bulk
// status show it: done of total, the rate and the time left.
type bulkProgress struct {
	Status  store.BulkStatus `json:"status"`
	Done    int              `json:"done"`
	Total   int              `json:"total"`
	Walking bool             `json:"walking"` // the total may still grow
	// Estimated is set when Total is the client's own count of what the
	// clear matches (while the run is still finding contacts).
	Estimated bool `json:"estimated,omitempty"`
	// Rate is contacts per second (0: not known yet); ETA is the time left
	// at that rate, known once the total is.
	Rate float64       `json:"ratePerSecond"`
	ETA  time.Duration `json:"-"`
}

// String is the progress line: "1200/5000 (24%), 850/s, ETA 4s".
func (p bulkProgress) String() string {
	switch p.Status {
	case store.BulkWaiting:
		return "waiting for another bulk request of the instance to finish"
	case "":
		return "waiting for a worker to take the bulk request"
	}
	known := !p.Walking || p.Estimated // a total to measure against
	s := fmt.Sprintf("%d/%d", p.Done, p.Total)
	switch {
	case p.Walking && p.Estimated:
		s = fmt.Sprintf("%d/~%d", p.Done, p.Total)
	case p.Walking:
		s += "+ (still finding contacts)"
	}
	if known && p.Total > 0 {
		s += fmt.Sprintf(" (%d%%)", min(100, p.Done*100/p.Total))
	}
	if p.Rate > 0 {
		s += fmt.Sprintf(", %.0f/s", p.Rate)
		if known {
			s += ", ETA " + p.ETA.Round(time.Second).String()
		}
	}
	return s
}

// rateMeter estimates a rate from samples of a growing count over the
// last window.
type rateMeter struct {
	window  time.Duration
	samples []rateSample
}

type rateSample struct {
	at   time.Time
	done int
}

// observe adds a sample and returns the progress with rate and ETA;
// estimate, when above 0, is what the clear is expected to match, the
// total while the run is still finding contacts.
func (m *rateMeter) observe(at time.Time, rec store.BulkRecord, estimate int) bulkProgress {
	p := bulkProgress{Status: rec.Status, Done: rec.Done, Total: rec.Matched, Walking: rec.Walking}
	if p.Walking && estimate > p.Total {
		p.Total, p.Estimated = estimate, true
	}
	if n := len(m.samples); n > 0 && rec.Done < m.samples[n-1].done {
		m.samples = m.samples[:0] // a new run counts afresh
	}
	m.samples = append(m.samples, rateSample{at, rec.Done})
	for len(m.samples) > 2 && at.Sub(m.samples[1].at) >= m.window {
		m.samples = m.samples[1:]
	}
	first := m.samples[0]
	if dt := at.Sub(first.at).Seconds(); dt > 0 {
		p.Rate = float64(rec.Done-first.done) / dt
	}
	p.ETA = etaAt(p.Total-p.Done, p.Rate)
	return p
}

func etaAt(left int, rate float64) time.Duration {
	if rate <= 0 || left <= 0 {
		return 0
	}
	return time.Duration(float64(left) / rate * float64(time.Second))
}

// recordProgress is the progress of a record read once: its average rate
// since it started.
func recordProgress(rec store.BulkRecord, now time.Time) bulkProgress {
	p := bulkProgress{Status: rec.Status, Done: rec.Done, Total: rec.Matched, Walking: rec.Walking}
	if rec.Status == store.BulkRunning && !rec.StartedAt.IsZero() {
		if dt := now.Sub(rec.StartedAt).Seconds(); dt > 0 {
			p.Rate = float64(rec.Done) / dt
		}
		p.ETA = etaAt(p.Total-p.Done, p.Rate)
	}
	return p
}

// showProgress shows the bulk request's progress from its record until ctx
// ends: a bar redrawn in place when cio.bar, else a line every cio.every.
// estimate returns what the clear is expected to match (0 until known).
func showProgress(ctx context.Context, cio clearIO, st *store.KV, instanceID, bulkID string, estimate func() int) {
	m := &rateMeter{window: 10 * time.Second}
	var bar *progressbar.ProgressBar
	if cio.bar {
		bar = progressbar.NewOptions(-1,
			progressbar.OptionSetWriter(cio.progress),
			progressbar.OptionSetDescription("clearing"),
			progressbar.OptionShowCount(),
			progressbar.OptionClearOnFinish(),
			progressbar.OptionSetPredictTime(false),
			progressbar.OptionThrottle(100*time.Millisecond),
		)
		defer func() { _ = bar.Finish() }()
	}
	every := cio.every
	if bar != nil {
		every = 200 * time.Millisecond
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	maxSet := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		rec, err := st.GetBulk(ctx, instanceID, bulkID)
		if err != nil {
			rec = store.BulkRecord{} // not taken on yet (or unreadable): say so
		}
		if rec.Status == store.BulkCompleting || rec.Status == store.BulkCompleted {
			continue // the summary follows
		}
		p := m.observe(time.Now(), rec, estimate())
		if bar == nil {
			writeProgressLine(cio.progress, p)
			continue
		}
		if p.Total > 0 && (!p.Walking || p.Estimated) && (!maxSet || bar.GetMax() != p.Total) {
			bar.ChangeMax(p.Total)
			maxSet = true
		}
		bar.Describe("clearing " + p.String())
		_ = bar.Set(p.Done)
	}
}

func writeProgressLine(w io.Writer, p bulkProgress) {
	fmt.Fprintf(w, "progress: %s\n", p)
}

// estimateTotal counts what the bulk request matches in all: the
// instance's contacts that match its filter (with the rule the clear
// applies) and those it ended already. Walking the instance as the clear
// runs, it is an estimate: a contact that changes meanwhile may be missed
// or counted.
func estimateTotal(ctx context.Context, st *store.KV, req events.BulkRequest, bulkID string) (int, error) {
	m := req.Filter.Matcher()
	// The walk delivers a contact written meanwhile again: counted once.
	seed, counted := maphash.MakeSeed(), map[uint64]struct{}{}
	err := st.WalkContacts(ctx, store.WalkParams{InstanceID: req.InstanceID}, func(e store.WalkEntry) error {
		c := e.Contact
		switch {
		case e.Bad != nil:
			return nil
		case c.State == store.StateEnded:
			if c.EndedBy != events.BulkItemRequestID(bulkID, c.ContactID) {
				return nil
			}
		case !m.Match(string(c.State), c.QueueID, string(c.Channel), c.EnqueuedAt):
			return nil
		}
		counted[maphash.String(seed, c.ContactID)] = struct{}{}
		return nil
	})
	return len(counted), err
}
