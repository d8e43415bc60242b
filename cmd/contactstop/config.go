package main

import (
	"errors"
	"fmt"
	"os"
	"sort"

	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"
)

// applyConfigFile sets every flag that neither the command line nor the
// environment set from the YAML file named by the --config flag, whose keys
// are flag names (nats-url: …, workers: 64, auth-key: [a.pem, b.pem]).
// Unknown keys are an error, so that a misspelt setting is not ignored.
func applyConfigFile(flags *pflag.FlagSet) error {
	f := flags.Lookup("config")
	if f == nil || f.Value.String() == "" {
		return nil
	}
	path := f.Value.String()
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	var settings map[string]any
	if err := yaml.Unmarshal(data, &settings); err != nil {
		return fmt.Errorf("--config %s: %w", path, err)
	}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var errs []error
	for _, key := range keys {
		fl := flags.Lookup(key)
		if fl == nil || key == "config" || key == "help" {
			errs = append(errs, fmt.Errorf("--config %s: unknown setting %q", path, key))
			continue
		}
		if fl.Changed {
			continue // the command line or the environment wins
		}
		values := []any{settings[key]}
		if list, ok := settings[key].([]any); ok {
			values = list
		}
		for _, v := range values {
			if err := flags.Set(key, fmt.Sprint(v)); err != nil {
				errs = append(errs, fmt.Errorf("--config %s: %s: %w", path, key, err))
			}
		}
	}
	return errors.Join(errs...)
}
