package jspub

// ParseAck exposes parseAck to the tests.
var ParseAck = parseAck
