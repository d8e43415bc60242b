package store

import (
	"fmt"
	"strings"
)

// Channel is the medium of a contact.
type Channel string

// The channels of a contact, as stored in the record's "channel" field.
const (
	ChannelVoice     Channel = "VOICE"
	ChannelChat      Channel = "CHAT"
	ChannelEmail     Channel = "EMAIL"
	ChannelSMS       Channel = "SMS"
	ChannelVoicemail Channel = "VOICEMAIL"
	ChannelWorkItem  Channel = "WORK_ITEM"
)

// channels lists every valid channel.
var channels = []Channel{ChannelVoice, ChannelChat, ChannelEmail, ChannelSMS, ChannelVoicemail, ChannelWorkItem}

// valid reports whether c is one of the canonical channels.
func (c Channel) valid() bool {
	switch c {
	case ChannelVoice, ChannelChat, ChannelEmail, ChannelSMS, ChannelVoicemail, ChannelWorkItem:
		return true
	}
	return false
}

// ParseChannel returns the channel named by s, compared case-insensitively
// ("work_item" gives ChannelWorkItem). For any other input it returns an
// error that lists the valid values.
func ParseChannel(s string) (Channel, error) {
	for _, ch := range channels {
		if strings.EqualFold(s, string(ch)) {
			return ch, nil
		}
	}
	return "", fmt.Errorf("store: invalid channel %q (valid: %s)", s, joinNames(channels))
}
