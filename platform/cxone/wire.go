package cxone

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/contactstop/contactstop/platform"
	"github.com/contactstop/contactstop/store"
)

// The store's states, as platform.Status reports them.
const (
	stateInitiated = store.StateInitiated
	stateQueued    = store.StateQueued
	stateConnected = store.StateConnected
	stateEnded     = store.StateEnded
)

// wireToken is the token endpoint's answer (RFC 6749 §5.1).
type wireToken struct {
	AccessToken  string    `json:"access_token"`
	TokenType    string    `json:"token_type"`
	ExpiresIn    flexFloat `json:"expires_in"`
	RefreshToken string    `json:"refresh_token"`
	IDToken      string    `json:"id_token"`
}

// wireDiscovery is the API discovery's answer
// (.well-known/cxone-configuration): the tenant's API endpoint, or its
// area and domain to build it from.
type wireDiscovery struct {
	APIEndpoint string `json:"api_endpoint"`
	Area        string `json:"area"`
	Domain      string `json:"domain"`
}

// wireContact is a contact as the Real-Time Data API's active contacts
// and the Reporting API's contact details describe it. Ids come as JSON
// numbers (CXone's) or strings; times as ISO 8601 strings.
type wireContact struct {
	ContactID            flexString `json:"contactId"`
	ContactStartDate     flexTime   `json:"contactStartDate"`
	LastUpdateTime       flexTime   `json:"lastUpdateTime"`
	AgentStartDate       flexTime   `json:"agentStartDate"`
	StateID              flexString `json:"stateId"`
	StateName            string     `json:"stateName"`
	ContactStateCategory string     `json:"contactStateCategory"`
	MediaTypeID          flexString `json:"mediaTypeId"`
	MediaTypeName        string     `json:"mediaTypeName"`
	MediaSubTypeName     string     `json:"mediaSubTypeName"`
	SkillID              flexString `json:"skillId"`
	SkillName            string     `json:"skillName"`
	// Completed contacts (Reporting API).
	IsActive             flexBool  `json:"isActive"`
	TotalDurationSeconds flexFloat `json:"totalDurationSeconds"`
	PreQueueSeconds      flexFloat `json:"preQueueSeconds"`
	InQueueSeconds       flexFloat `json:"inQueueSeconds"`
	AgentSeconds         flexFloat `json:"agentSeconds"`
	EndReason            string    `json:"endReason"`
}

// wireActivePage is a page of GET contacts/active.
type wireActivePage struct {
	TotalRecords   flexFloat     `json:"totalRecords"`
	ActiveContacts []wireContact `json:"activeContacts"`
}

// wireStateHistory is GET contacts/{contactId}/state-history.
type wireStateHistory struct {
	ContactStateHistory []wireState `json:"contactStateHistory"`
}

type wireState struct {
	StateIndex       flexFloat  `json:"stateIndex"`
	ContactStateName string     `json:"contactStateName"`
	StartDate        flexTime   `json:"startDate"`
	SkillID          flexString `json:"skillId"`
}

// enqueued is when the contact first entered a queue, and its skill then.
func (h wireStateHistory) enqueued() (at time.Time, skill string, ok bool) {
	states := h.ContactStateHistory
	sort.SliceStable(states, func(i, j int) bool {
		a, aok := states[i].StateIndex.get()
		b, bok := states[j].StateIndex.get()
		if aok && bok && a != b {
			return a < b
		}
		return states[i].StartDate.t.Before(states[j].StartDate.t)
	})
	for _, s := range states {
		if stateByName(s.ContactStateName) == stateQueued && s.StartDate.ok() {
			return s.StartDate.t, s.SkillID.id(), true
		}
	}
	return time.Time{}, "", false
}

// decodeContactDetails finds the contact in GET contacts/{contactId}'s
// answer. The Reporting API documents it as {"businessUnitId",
// "lastPollTime", "contactId": {the contact}}; a list ("contacts",
// "activeContacts", "completedContacts") or a bare contact is read too.
func decodeContactDetails(body []byte, contactID string) (wireContact, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		return wireContact{}, err
	}
	if r := bytes.TrimSpace(raw["contactId"]); len(r) > 0 && r[0] == '{' {
		var wc wireContact
		err := json.Unmarshal(r, &wc)
		if wc.ContactID == "" {
			wc.ContactID = flexString(contactID)
		}
		return wc, err
	}
	for _, k := range []string{"contacts", "activeContacts", "completedContacts"} {
		r := bytes.TrimSpace(raw[k])
		if len(r) == 0 || r[0] != '[' {
			continue
		}
		var list []wireContact
		if err := json.Unmarshal(r, &list); err != nil {
			return wireContact{}, err
		}
		for _, wc := range list {
			if wc.ContactID.id() == contactID {
				return wc, nil
			}
		}
		if len(list) > 0 {
			return list[0], nil
		}
	}
	for _, k := range []string{"stateName", "contactStateCategory", "mediaTypeId", "contactStartDate", "isActive"} {
		if _, ok := raw[k]; ok {
			var wc wireContact
			err := json.Unmarshal(body, &wc)
			return wc, err
		}
	}
	return wireContact{}, errors.New("no contact in it")
}

// statusOf maps a CXone contact to a platform status:
//
//   - ended when isActive is false (a completed contact), or, without
//     isActive, when its state is an end or it has an end reason or a
//     total duration; disconnected at contactStartDate +
//     totalDurationSeconds (else its lastUpdateTime);
//   - state from contactStateCategory, else stateName (stateByName);
//   - channel from mediaTypeName, else mediaTypeId (channelOf);
//   - queue = skillId; EnqueuedAt, for a completed contact that waited in
//     a queue, contactStartDate + preQueueSeconds, and for a queued one
//     its lastUpdateTime (the change into the queue state; DescribeContact
//     asks the state history instead).
func statusOf(wc wireContact) platform.Status {
	st := platform.Status{Active: true, State: stateOf(wc), Channel: channelOf(wc), QueueID: wc.SkillID.id()}
	_, hasTotal := wc.TotalDurationSeconds.get()
	active, known := wc.IsActive.get()
	ended := (known && !active) || (!known && (st.State == stateEnded || wc.EndReason != "" || hasTotal))
	if !ended {
		if st.State == stateEnded {
			st.State = stateInitiated
		}
		if st.State == stateQueued && wc.LastUpdateTime.ok() {
			st.EnqueuedAt = wc.LastUpdateTime.t
		}
		return st
	}
	st.Active, st.State = false, stateEnded
	start := wc.ContactStartDate
	if total, ok := wc.TotalDurationSeconds.get(); ok && start.ok() {
		st.DisconnectedAt = start.t.Add(seconds(total))
	} else if wc.LastUpdateTime.ok() {
		st.DisconnectedAt = wc.LastUpdateTime.t
	}
	inQueue, _ := wc.InQueueSeconds.get()
	withAgent, _ := wc.AgentSeconds.get()
	if pre, ok := wc.PreQueueSeconds.get(); ok && start.ok() && (inQueue > 0 || withAgent > 0) && st.QueueID != "" {
		st.EnqueuedAt = start.t.Add(seconds(pre))
	}
	return st
}

// seconds converts CXone's seconds (with a fraction) to a duration at
// millisecond precision.
func seconds(s float64) time.Duration {
	return time.Duration(math.Round(s*1000)) * time.Millisecond
}

// stateOf is a contact's state: by its contactStateCategory when that
// says, else by its stateName.
func stateOf(wc wireContact) store.State {
	switch norm(wc.ContactStateCategory) {
	case "inqueue", "queued", "queue":
		return stateQueued
	case "withagent", "postagent", "agent":
		return stateConnected
	case "finished", "terminated", "ended", "disconnected", "completed":
		return stateEnded
	}
	return stateByName(wc.StateName)
}

// stateByName maps CXone's contact state names: Inqueue (and Parked, a
// contact set aside in a queue) QUEUED; Active (with an agent), Hold,
// Conference, Consult and after-contact work CONNECTED; EndContact,
// Disconnected, Released, Terminated, Abandoned ENDED; any other (PreQueue,
// Routing, Incoming, Outbound, IVR…) INITIATED.
func stateByName(name string) store.State {
	switch norm(name) {
	case "inqueue", "queued", "queue", "parked":
		return stateQueued
	case "active", "hold", "onhold", "conference", "consult", "acw", "postcontactwork", "withagent":
		return stateConnected
	case "endcontact", "ended", "disconnected", "released", "terminated", "abandoned", "finished":
		return stateEnded
	}
	return stateInitiated
}

// channelOf maps a contact's media type to the store's channel: by name
// (Phone Call VOICE, Chat CHAT, Email EMAIL, Voice Mail VOICEMAIL, Work
// Item WORK_ITEM, SMS SMS; Digital by its sub-type), else by id (1 Email,
// 3 Chat, 4 Phone Call, 5 Voice Mail, 6 Work Item, 7 SMS); any other is
// "" (unknown).
func channelOf(wc wireContact) store.Channel {
	if ch, ok := channelByName(wc.MediaTypeName); ok {
		return ch
	}
	switch norm(wc.MediaTypeName) {
	case "digital", "social", "digitalengagement":
		ch, _ := channelByName(wc.MediaSubTypeName)
		return ch
	}
	if wc.MediaTypeName != "" {
		return ""
	}
	switch wc.MediaTypeID.id() {
	case "1":
		return store.ChannelEmail
	case "3":
		return store.ChannelChat
	case "4":
		return store.ChannelVoice
	case "5":
		return store.ChannelVoicemail
	case "6":
		return store.ChannelWorkItem
	case "7":
		return store.ChannelSMS
	}
	return ""
}

func channelByName(name string) (store.Channel, bool) {
	switch norm(name) {
	case "phonecall", "phone", "voice", "call":
		return store.ChannelVoice, true
	case "chat", "livechat":
		return store.ChannelChat, true
	case "email":
		return store.ChannelEmail, true
	case "voicemail":
		return store.ChannelVoicemail, true
	case "workitem":
		return store.ChannelWorkItem, true
	case "sms", "text":
		return store.ChannelSMS, true
	}
	return "", false
}

// norm lowercases s and drops spaces, hyphens and underscores ("In
// Queue", "in-queue" and "InQueue" are "inqueue").
func norm(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case ' ', '-', '_':
			return -1
		}
		if 'A' <= r && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}, s)
}

// flexString is an id sent as a JSON number or string.
type flexString string

func (f *flexString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) == 0 || string(b) == "null":
		*f = ""
	case b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = flexString(s)
	default:
		var n json.Number
		if err := json.Unmarshal(b, &n); err != nil {
			return err
		}
		*f = flexString(n.String())
	}
	return nil
}

// id is the id, "" for none (CXone sends 0 for "no skill").
func (f flexString) id() string {
	if f == "0" {
		return ""
	}
	return string(f)
}

// flexFloat is a number sent as a JSON number or string.
type flexFloat struct {
	v   float64
	set bool
}

func (f *flexFloat) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || string(b) == "null" {
		*f = flexFloat{}
		return nil
	}
	s := string(b)
	if b[0] == '"' {
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		if s == "" {
			*f = flexFloat{}
			return nil
		}
	}
	// A value that is not a number is taken as absent rather than failing
	// the whole answer.
	if v, err := strconv.ParseFloat(strings.TrimSpace(s), 64); err == nil {
		*f = flexFloat{v: v, set: true}
	}
	return nil
}

func (f flexFloat) get() (float64, bool) { return f.v, f.set }

// flexBool is a boolean sent as a JSON boolean or string.
type flexBool struct {
	v   bool
	set bool
}

func (f *flexBool) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || string(b) == "null" {
		*f = flexBool{}
		return nil
	}
	s := string(b)
	if b[0] == '"' {
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
	}
	if v, err := strconv.ParseBool(strings.TrimSpace(s)); err == nil {
		*f = flexBool{v: v, set: true}
	}
	return nil
}

func (f flexBool) get() (bool, bool) { return f.v, f.set }

// flexTime is an ISO 8601 time (with or without a zone; none is UTC), or
// a JSON number of seconds or milliseconds since the epoch. Anything else
// is absent.
type flexTime struct{ t time.Time }

func (f *flexTime) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	*f = flexTime{}
	if len(b) == 0 || string(b) == "null" {
		return nil
	}
	if b[0] != '"' {
		var n float64
		if err := json.Unmarshal(b, &n); err != nil || n <= 0 {
			return nil
		}
		ms := n * 1000
		if n > 1e11 { // milliseconds
			ms = n
		}
		f.t = time.UnixMilli(int64(math.Round(ms))).UTC()
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999"} {
		if t, err := time.Parse(layout, s); err == nil {
			f.t = t
			return nil
		}
	}
	// A time in another format is taken as absent rather than failing the
	// whole answer.
	return nil
}

func (f flexTime) ok() bool { return !f.t.IsZero() }
