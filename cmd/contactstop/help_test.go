package main

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// allCommands returns every command under root, root included.
func allCommands(root *cobra.Command) []*cobra.Command {
	out := []*cobra.Command{root}
	for _, c := range root.Commands() {
		if c.Name() == "help" || c.Name() == "completion" {
			continue
		}
		out = append(out, allCommands(c)...)
	}
	return out
}

// TestHelpTexts: every command has an Example, and no flag's usage names
// a default that pflag prints again after it ("(default …)").
func TestHelpTexts(t *testing.T) {
	t.Parallel()
	for _, c := range allCommands(newRootCmd()) {
		if c.Example == "" {
			t.Errorf("%q has no Example", c.CommandPath())
		}
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			if f.Deprecated != "" || f.Hidden {
				return
			}
			fs := pflag.NewFlagSet("", pflag.ContinueOnError)
			fs.AddFlag(f)
			line := fs.FlagUsages()
			if strings.Contains(line, "(default ") && strings.Contains(strings.ToLower(f.Usage), "default") {
				t.Errorf("%s --%s: the default is said twice: %s", c.CommandPath(), f.Name, strings.TrimSpace(line))
			}
		})
	}
}
