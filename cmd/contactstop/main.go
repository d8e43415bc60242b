// Command contactstop runs the contact-termination worker (serve) and the
// client commands that feed and inspect it. main is wiring only: the work is
// in the events, store and worker packages.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	os.Exit(execute(context.Background(), newRootCmd(), os.Stderr))
}

// execute runs the command line and returns the exit code, having printed
// any error on stderr (as JSON with --json; see output.go).
func execute(ctx context.Context, root *cobra.Command, stderr io.Writer) int {
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	return reportError(stderr, cmd, err)
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "contactstop",
		Short: "Stop contact-center contacts, one or thousands at a time, over NATS JetStream",
		Example: `  contactstop serve --dev
  contactstop contacts seed --instance acme --count 1000
  contactstop stop --instance acme --contact c7 --wait
  contactstop clear --instance acme --dry-run`,
		Long: `contactstop terminates contact-center contacts on request.

Publishers send contact.stop.requested messages to NATS JetStream; the worker
(contactstop serve) ends each contact idempotently in a JetStream key-value
store and publishes contact.stopped or contact.stop.failed with a reason code.

Every flag can also be set with an environment variable: CONTACTSTOP_ and the
flag name in upper case with dashes as underscores (--nats-url is
CONTACTSTOP_NATS_URL). serve also reads a YAML file given with --config, whose
keys are flag names. A flag given on the command line wins over the
environment, which wins over the file.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyEnv(cmd.Flags()); err != nil {
				return err
			}
			return applyConfigFile(cmd.Flags())
		},
	}
	root.AddCommand(
		newServeCmd(),
		newStopCmd(),
		newResultsCmd(),
		newClearCmd(),
		newBulkCmd(),
		newBenchCmd(),
		newTokenCmd(),
		newContactsCmd(),
		newInstancesCmd(),
		newVersionCmd(),
	)
	return root
}

// envName is the environment variable that sets a flag.
func envName(flag string) string {
	return "CONTACTSTOP_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// applyEnv sets every flag not given on the command line from its
// environment variable, if that is set.
func applyEnv(flags *pflag.FlagSet) error {
	var errs []error
	flags.VisitAll(func(f *pflag.Flag) {
		if f.Changed || f.Name == "help" {
			return
		}
		v, ok := os.LookupEnv(envName(f.Name))
		if !ok {
			return
		}
		if err := flags.Set(f.Name, v); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: %w", envName(f.Name), v, err))
		}
	})
	return errors.Join(errs...)
}

func newVersionCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Example: `  contactstop version
  contactstop version --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if asJSON {
				return printJSON(cmd.OutOrStdout(), map[string]string{"version": version})
			}
			_, err := fmt.Fprintln(cmd.OutOrStdout(), "contactstop", version)
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
