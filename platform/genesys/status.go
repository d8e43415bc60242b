package genesys

import (
	"time"

	"github.com/contactstop/contactstop/platform"
	"github.com/contactstop/contactstop/store"
)

// Participants' purposes (Participant.purpose, AnalyticsParticipant.purpose).
const (
	purposeACD      = "acd"
	purposeAgent    = "agent"
	purposeCustomer = "customer"
	purposeExternal = "external"
)

// channelOfMedia maps Genesys's media types (AnalyticsSession.mediaType;
// the conversation API's media arrays are mapped to the same names) to the
// store's channels. voice, chat, message and email are VOICE, CHAT, CHAT
// and EMAIL. callback is VOICE: a callback is a request for an agent to
// call the customer back (inferred; Genesys has no channel of that name in
// contactstop's terms). Genesys's conversations have no work item media —
// its Task Management work items are another resource — so nothing maps to
// WORK_ITEM. Any other media (video, cobrowse, screenshare…) is ""
// (unknown).
func channelOfMedia(mediaType string) store.Channel {
	switch mediaType {
	case "voice", "callback":
		return store.ChannelVoice
	case "chat", "message":
		return store.ChannelChat
	case "email":
		return store.ChannelEmail
	}
	return ""
}

// The conversation API's model (GET /api/v2/conversations/{id}): the
// Conversation and Participant types of Genesys's API definition, the
// parts read here.

type conversation struct {
	ID           string        `json:"id"`
	StartTime    *time.Time    `json:"startTime"`
	EndTime      *time.Time    `json:"endTime"`
	Participants []participant `json:"participants"`
}

type participant struct {
	Purpose       string     `json:"purpose"`
	QueueID       string     `json:"queueId"`
	UserID        string     `json:"userId"`
	StartTime     *time.Time `json:"startTime"`
	EndTime       *time.Time `json:"endTime"`
	ConnectedTime *time.Time `json:"connectedTime"`
	Calls         []media    `json:"calls"`
	Callbacks     []media    `json:"callbacks"`
	Chats         []media    `json:"chats"`
	Messages      []media    `json:"messages"`
	Emails        []media    `json:"emails"`
}

type media struct {
	State string `json:"state"`
}

// mediaType is the participant's media, as analytics names it ("" if none
// contactstop models).
func (p *participant) mediaType() string {
	switch {
	case len(p.Calls) > 0:
		return "voice"
	case len(p.Callbacks) > 0:
		return "callback"
	case len(p.Chats) > 0:
		return "chat"
	case len(p.Messages) > 0:
		return "message"
	case len(p.Emails) > 0:
		return "email"
	}
	return ""
}

// statusOfConversation maps a conversation to a platform status:
//   - Active until the conversation has an endTime ("null when the
//     conversation is still active"), then ENDED with DisconnectedAt
//     endTime;
//   - QUEUED while its (latest) ACD participant — the queue — has no
//     endTime; QueueID and EnqueuedAt are that participant's queueId and
//     startTime, kept after it left the queue;
//   - CONNECTED while an agent participant is connected (connectedTime
//     and no endTime);
//   - INITIATED otherwise (in a flow, an IVR, dialing…);
//   - Channel from the customer's (or external party's) media, else any
//     participant's.
func statusOfConversation(cv *conversation) platform.Status {
	st := platform.Status{Active: true, State: store.StateInitiated}
	var queue *participant
	connected := false
	for i := range cv.Participants {
		p := &cv.Participants[i]
		switch p.Purpose {
		case purposeACD:
			if p.StartTime != nil && (queue == nil || p.StartTime.After(*queue.StartTime)) {
				queue = p
			}
		case purposeAgent:
			connected = connected || (p.ConnectedTime != nil && p.EndTime == nil)
		}
	}
	if queue != nil {
		st.QueueID, st.EnqueuedAt = queue.QueueID, *queue.StartTime
		if queue.EndTime == nil {
			st.State = store.StateQueued
		}
	}
	if connected {
		st.State = store.StateConnected
	}
	st.Channel = channelOfMedia(firstMedia(cv.Participants, func(p *participant) string { return p.mediaType() },
		func(p *participant) string { return p.Purpose }))
	if cv.EndTime != nil {
		st.Active, st.State, st.DisconnectedAt = false, store.StateEnded, *cv.EndTime
	}
	return st
}

// The analytics API's model (POST /api/v2/analytics/conversations/details/query):
// its query (Conversationquery) and answer (Analyticsconversationqueryresponse,
// AnalyticsConversation, AnalyticsParticipant, AnalyticsSession,
// AnalyticsConversationSegment), the parts used here.

type detailsQuery struct {
	Interval            string        `json:"interval"`
	Order               string        `json:"order"`
	OrderBy             string        `json:"orderBy"`
	Paging              paging        `json:"paging"`
	SegmentFilters      []queryFilter `json:"segmentFilters"`
	ConversationFilters []queryFilter `json:"conversationFilters"`
}

type paging struct {
	PageSize   int `json:"pageSize"`
	PageNumber int `json:"pageNumber"`
}

type queryFilter struct {
	Type       string           `json:"type"`
	Predicates []queryPredicate `json:"predicates"`
}

type queryPredicate struct {
	Type      string `json:"type"`
	Dimension string `json:"dimension"`
	Operator  string `json:"operator"`
	Value     string `json:"value,omitempty"`
}

type detailsResponse struct {
	Conversations []analyticsConversation `json:"conversations"`
	TotalHits     int                     `json:"totalHits"`
}

type analyticsConversation struct {
	ConversationID    string                 `json:"conversationId"`
	ConversationStart *time.Time             `json:"conversationStart"`
	ConversationEnd   *time.Time             `json:"conversationEnd"`
	Participants      []analyticsParticipant `json:"participants"`
}

type analyticsParticipant struct {
	Purpose  string             `json:"purpose"`
	Sessions []analyticsSession `json:"sessions"`
}

type analyticsSession struct {
	MediaType string             `json:"mediaType"`
	Segments  []analyticsSegment `json:"segments"`
}

type analyticsSegment struct {
	SegmentType  string     `json:"segmentType"`
	SegmentStart *time.Time `json:"segmentStart"`
	SegmentEnd   *time.Time `json:"segmentEnd"`
	QueueID      string     `json:"queueId"`
}

// segmentInteract is the segment of a participant interacting: for the
// ACD participant, waiting in its queue; for an agent, connected.
const segmentInteract = "interact"

// statusOfAnalytics maps a conversation's details to a platform status, as
// statusOfConversation does with analytics' names: Active until
// conversationEnd; QUEUED while the ACD participant's latest interact
// segment has no segmentEnd (QueueID its queueId, EnqueuedAt its
// segmentStart); CONNECTED while an agent's interact segment has no
// segmentEnd; the channel from the sessions' mediaType.
func statusOfAnalytics(cv *analyticsConversation) platform.Status {
	st := platform.Status{Active: true, State: store.StateInitiated}
	var queue *analyticsSegment
	connected := false
	for i := range cv.Participants {
		p := &cv.Participants[i]
		for j := range p.Sessions {
			for k := range p.Sessions[j].Segments {
				seg := &p.Sessions[j].Segments[k]
				if seg.SegmentType != segmentInteract {
					continue
				}
				switch p.Purpose {
				case purposeACD:
					if seg.SegmentStart != nil && (queue == nil || seg.SegmentStart.After(*queue.SegmentStart)) {
						queue = seg
					}
				case purposeAgent:
					connected = connected || seg.SegmentEnd == nil
				}
			}
		}
	}
	if queue != nil {
		st.QueueID, st.EnqueuedAt = queue.QueueID, *queue.SegmentStart
		if queue.SegmentEnd == nil {
			st.State = store.StateQueued
		}
	}
	if connected {
		st.State = store.StateConnected
	}
	st.Channel = channelOfMedia(firstMedia(cv.Participants, func(p *analyticsParticipant) string {
		for _, s := range p.Sessions {
			if s.MediaType != "" {
				return s.MediaType
			}
		}
		return ""
	}, func(p *analyticsParticipant) string { return p.Purpose }))
	if cv.ConversationEnd != nil {
		st.Active, st.State, st.DisconnectedAt = false, store.StateEnded, *cv.ConversationEnd
	}
	return st
}

// firstMedia is the media of the customer (or external party), else of the
// first participant that has one.
func firstMedia[P any](ps []P, mediaOf func(*P) string, purposeOf func(*P) string) string {
	other := ""
	for i := range ps {
		m := mediaOf(&ps[i])
		if m == "" {
			continue
		}
		if p := purposeOf(&ps[i]); p == purposeCustomer || p == purposeExternal {
			return m
		}
		if other == "" {
			other = m
		}
	}
	return other
}
