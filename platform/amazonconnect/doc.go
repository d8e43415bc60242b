// Package amazonconnect ends contacts on Amazon Connect (StopContact,
// DescribeContact) through the official AWS SDK for Go v2, and reads
// Amazon Connect contact events (EventBridge) into the store's inventory.
package amazonconnect
