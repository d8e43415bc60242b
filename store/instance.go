package store

import (
	"encoding/json"
	"fmt"
	"time"
)

// Instance is a tenant (a contact-center instance) known to the store,
// stored in the instances bucket under its InstanceID. A stop request for an
// instance that is not registered fails with RESOURCE_NOT_FOUND.
type Instance struct {
	InstanceID string    `json:"instanceId"`
	Name       string    `json:"name,omitempty"`
	CreatedAt  time.Time `json:"createdAt"`
}

// decodeInstance decodes the record stored under key instanceID. The key is
// authoritative: an empty instanceId in the body is filled from it, a
// different one is an error.
func decodeInstance(instanceID string, data []byte) (Instance, error) {
	var inst Instance
	if err := json.Unmarshal(data, &inst); err != nil {
		return Instance{}, fmt.Errorf("store: instance %s: malformed record: %w", instanceID, err)
	}
	if inst.InstanceID == "" {
		inst.InstanceID = instanceID
	}
	if inst.InstanceID != instanceID {
		return Instance{}, fmt.Errorf("store: instance %s: record names instance %q", instanceID, inst.InstanceID)
	}
	return inst, nil
}
