package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/contactstop/contactstop/events"
	"github.com/contactstop/contactstop/store"
)

// v1InstanceView is an instance as the API shows it.
type v1InstanceView struct {
	InstanceID string    `json:"instanceId"`
	Name       string    `json:"name,omitempty"`
	CreatedAt  time.Time `json:"createdAt,omitzero"`
	// Platform is the platform the instance is bound to, or "none".
	Platform string `json:"platform"`
}

type v1InstancesView struct {
	Instances []v1InstanceView `json:"instances"`
}

// listInstances: GET /v1/instances — the instances the caller may read.
func (a *V1) listInstances(w http.ResponseWriter, r *http.Request) {
	c, ok := a.authenticate(w, r, false)
	if !ok {
		return
	}
	all, err := a.cfg.Store.ListInstances(r.Context())
	if err != nil {
		a.writeInternal(w, r, "listing the instances", err)
		return
	}
	out := v1InstancesView{Instances: []v1InstanceView{}}
	for _, in := range all {
		if !c.canRead(in.InstanceID) {
			continue
		}
		v := v1InstanceView{InstanceID: in.InstanceID, Name: in.Name, CreatedAt: in.CreatedAt, Platform: store.PlatformNone}
		if in.Binding != nil {
			v.Platform = in.Binding.Platform
		}
		out.Instances = append(out.Instances, v)
	}
	slices.SortFunc(out.Instances, func(x, y v1InstanceView) int { return strings.Compare(x.InstanceID, y.InstanceID) })
	v1WriteJSON(w, http.StatusOK, out)
}

// knownInstance answers 404 RESOURCE_NOT_FOUND (or 500) and returns false
// unless the instance is registered.
func (a *V1) knownInstance(w http.ResponseWriter, r *http.Request, instanceID string) bool {
	_, err := a.cfg.Store.GetInstance(r.Context(), instanceID)
	switch {
	case errors.Is(err, store.ErrInstanceNotFound):
		v1WriteError(w, http.StatusNotFound, string(events.ReasonResourceNotFound), "instance "+instanceID+" is not registered", "instanceId")
		return false
	case err != nil:
		a.writeInternal(w, r, "reading the instance", err)
		return false
	}
	return true
}

// v1QueueSummary counts one queue's active contacts by state.
type v1QueueSummary struct {
	QueueID string         `json:"queueId"`
	Active  int            `json:"active"`
	ByState map[string]int `json:"byState"`
}

// v1SummaryView counts an instance's active contacts.
type v1SummaryView struct {
	InstanceID string         `json:"instanceId"`
	Active     int            `json:"active"`
	ByState    map[string]int `json:"byState"`
	ByChannel  map[string]int `json:"byChannel"`
	// Queues, by queueId ("" for contacts in no queue), most active first.
	Queues []v1QueueSummary `json:"queues"`
	// Unreadable counts records that are not valid contacts.
	Unreadable int       `json:"unreadable"`
	CountedAt  time.Time `json:"countedAt"`
}

// summary: GET /v1/instances/{instanceId}/summary — active contacts
// counted per queue and state (one walk of the instance's contacts).
func (a *V1) summary(w http.ResponseWriter, r *http.Request) {
	id, ok := v1InstanceParam(w, r)
	if !ok {
		return
	}
	if _, ok := a.readable(w, r, id); !ok {
		return
	}
	if !a.knownInstance(w, r, id) {
		return
	}
	s := v1SummaryView{InstanceID: id, ByState: map[string]int{}, ByChannel: map[string]int{}}
	queues := map[string]*v1QueueSummary{}
	err := a.cfg.Store.WalkContacts(r.Context(), store.WalkParams{InstanceID: id}, func(e store.WalkEntry) error {
		if e.Bad != nil {
			s.Unreadable++
			return nil
		}
		c := e.Contact
		if !c.State.Active() {
			return nil
		}
		s.Active++
		s.ByState[string(c.State)]++
		s.ByChannel[string(c.Channel)]++
		q := queues[c.QueueID]
		if q == nil {
			q = &v1QueueSummary{QueueID: c.QueueID, ByState: map[string]int{}}
			queues[c.QueueID] = q
		}
		q.Active++
		q.ByState[string(c.State)]++
		return nil
	})
	if err != nil {
		a.writeInternal(w, r, "counting the contacts", err)
		return
	}
	s.Queues = make([]v1QueueSummary, 0, len(queues))
	for _, q := range queues {
		s.Queues = append(s.Queues, *q)
	}
	slices.SortFunc(s.Queues, func(x, y v1QueueSummary) int {
		if x.Active != y.Active {
			return y.Active - x.Active
		}
		return strings.Compare(x.QueueID, y.QueueID)
	})
	s.CountedAt = a.cfg.Now().UTC()
	v1WriteJSON(w, http.StatusOK, s)
}

// Limits of listings.
const (
	v1DefaultContactsLimit = 100
	v1MaxContactsLimit     = 1000
)

type v1ContactsView struct {
	Contacts []store.Contact `json:"contacts"`
	// Truncated: more contacts match than limit.
	Truncated bool `json:"truncated"`
}

// listContacts: GET /v1/instances/{instanceId}/contacts?queue=&state=&channel=&limit=
// — the instance's contacts matching every filter given (each may be
// repeated), at most limit of them.
func (a *V1) listContacts(w http.ResponseWriter, r *http.Request) {
	id, ok := v1InstanceParam(w, r)
	if !ok {
		return
	}
	if _, ok := a.readable(w, r, id); !ok {
		return
	}
	q := r.URL.Query()
	limit, ok := v1IntParam(w, r, "limit", v1DefaultContactsLimit, 1, v1MaxContactsLimit)
	if !ok {
		return
	}
	states, channels, queues := v1Upper(q["state"]), v1Upper(q["channel"]), q["queue"]
	for _, s := range states {
		if !slices.Contains(events.ContactStates, s) {
			v1WriteError(w, http.StatusBadRequest, string(events.ReasonInvalidParameter),
				fmt.Sprintf("state %q is not one of %s", v1Short(s), strings.Join(events.ContactStates, ", ")), "state")
			return
		}
	}
	for _, ch := range channels {
		if !slices.Contains(events.ChannelNames, ch) {
			v1WriteError(w, http.StatusBadRequest, string(events.ReasonInvalidParameter),
				fmt.Sprintf("channel %q is not one of %s", v1Short(ch), strings.Join(events.ChannelNames, ", ")), "channel")
			return
		}
	}
	if !a.knownInstance(w, r, id) {
		return
	}
	out := v1ContactsView{Contacts: []store.Contact{}}
	errFull := errors.New("full")
	err := a.cfg.Store.WalkContacts(r.Context(), store.WalkParams{InstanceID: id}, func(e store.WalkEntry) error {
		if e.Bad != nil {
			return nil
		}
		c := e.Contact
		if (len(states) > 0 && !slices.Contains(states, string(c.State))) ||
			(len(channels) > 0 && !slices.Contains(channels, string(c.Channel))) ||
			(len(queues) > 0 && !slices.Contains(queues, c.QueueID)) {
			return nil
		}
		if len(out.Contacts) == limit {
			out.Truncated = true
			return errFull
		}
		out.Contacts = append(out.Contacts, c)
		return nil
	})
	if err != nil && !errors.Is(err, errFull) {
		a.writeInternal(w, r, "listing the contacts", err)
		return
	}
	slices.SortFunc(out.Contacts, func(x, y store.Contact) int { return strings.Compare(x.ContactID, y.ContactID) })
	v1WriteJSON(w, http.StatusOK, out)
}

func v1Upper(vs []string) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = strings.ToUpper(v)
	}
	return out
}

// v1IntParam reads the integer query parameter name (def when absent),
// answering 400 and returning false unless it is within [lo, hi].
func v1IntParam(w http.ResponseWriter, r *http.Request, name string, def, lo, hi int) (int, bool) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, true
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		v1WriteError(w, http.StatusBadRequest, string(events.ReasonInvalidParameter),
			fmt.Sprintf("%s %q: must be a whole number from %d to %d", name, v1Short(s), lo, hi), name)
		return 0, false
	}
	return n, true
}

// v1DurationParam reads the duration query parameter name (def when
// absent), answering 400 and returning false unless it is within (0, max].
func v1DurationParam(w http.ResponseWriter, r *http.Request, name string, def, max time.Duration) (time.Duration, bool) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, true
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 || d > max {
		v1WriteError(w, http.StatusBadRequest, string(events.ReasonInvalidParameter),
			fmt.Sprintf("%s %q: must be a duration such as 90s or 1h, at most %s", name, v1Short(s), max), name)
		return 0, false
	}
	return d, true
}
