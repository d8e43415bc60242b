package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/contactstop/contactstop/store"
)

func newInstancesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "instances",
		Short: "Register and list instances (tenants)",
		Example: `  contactstop instances add acme
  contactstop instances list`,
	}
	cmd.AddCommand(newInstancesAddCmd(), newInstancesListCmd())
	return cmd
}

func newInstancesAddCmd() *cobra.Command {
	var (
		o       clientOptions
		name    string
		binding store.Binding
	)
	cmd := &cobra.Command{
		Use:   "add INSTANCE_ID",
		Short: "Register an instance, optionally bound to a contact-center platform",
		Long: `Register an instance (tenant); requests for unregistered instances fail
with RESOURCE_NOT_FOUND. Registering it again updates it.

With --platform amazon-connect the instance is bound to an Amazon Connect
instance: its stops end contacts there (StopContact), within a budget of
--rate calls per second (burst --burst) shared by every serve process and
every binding with the same --quota-key (default: platform, region and
endpoint). Credentials are not given here: serve reads them from its
environment (the AWS SDK's default chain).`,
		Example: `  contactstop instances add acme
  contactstop instances add acme-prod --platform amazon-connect \
      --connect-instance-id 12345678-1234-1234-1234-123456789012 --region eu-west-2`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
			defer cancel()
			cl, err := o.connect("instances add")
			if err != nil {
				return err
			}
			defer cl.Close()
			st, err := cl.openStore(ctx)
			if err != nil {
				return err
			}
			in := store.Instance{InstanceID: args[0], Name: name}
			switch binding.Platform {
			case "", store.PlatformNone:
				if f := boundFlagsSet(cmd); f != "" {
					return fmt.Errorf("--%s needs --platform", f)
				}
			default:
				b := binding
				if err := b.Validate(); err != nil {
					return err
				}
				in.Binding = &b
			}
			inst, err := st.PutInstance(ctx, in)
			if err != nil {
				return err
			}
			if o.json {
				return printJSON(cmd.OutOrStdout(), inst)
			}
			if b := inst.Binding; b != nil {
				_, err = fmt.Fprintf(cmd.OutOrStdout(), "instance %s registered, bound to %s (budget %g/s, burst %d, quota key %q)\n",
					inst.InstanceID, bindingText(b), b.Rate, b.Burst, b.QuotaKey)
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "instance %s registered\n", inst.InstanceID)
			return err
		},
	}
	o.register(cmd)
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "display name")
	f.StringVar(&binding.Platform, "platform", "", "bind to a contact-center platform: amazon-connect, cxone, twilio or genesys; none: the store alone")
	f.StringVar(&binding.ConnectInstanceID, "connect-instance-id", "", "Amazon Connect instance id (--platform amazon-connect)")
	f.StringVar(&binding.Region, "region", "", "the platform's region: an AWS Region (us-east-1) for amazon-connect, the region's host (mypurecloud.com, usw2.pure.cloud) for genesys")
	f.StringVar(&binding.TenantID, "tenant-id", "", "NICE CXone tenant id (--platform cxone): the API host is discovered from it")
	f.StringVar(&binding.WorkspaceSID, "workspace-sid", "", "Twilio TaskRouter workspace sid (--platform twilio), whose tasks are the contacts")
	f.StringVar(&binding.Endpoint, "endpoint", "", "override the platform's API address (a VPC endpoint, a proxy)")
	f.Float64Var(&binding.Rate, "rate", 0, "stop calls per second for every serve together (default: the platform's quota, 10 for Amazon Connect)")
	f.IntVar(&binding.Burst, "burst", 0, "stop calls allowed at once after a quiet spell (default: the platform's, 15 for Amazon Connect)")
	f.StringVar(&binding.QuotaKey, "quota-key", "", "bindings with the same key share one budget (default: platform, region and endpoint)")
	return cmd
}

// boundFlagsSet names a binding flag given without --platform, or "".
func boundFlagsSet(cmd *cobra.Command) string {
	for _, n := range []string{"connect-instance-id", "region", "tenant-id", "workspace-sid", "endpoint", "rate", "burst", "quota-key"} {
		if cmd.Flags().Changed(n) {
			return n
		}
	}
	return ""
}

// bindingText describes a binding in a few words.
func bindingText(b *store.Binding) string {
	if b == nil {
		return "-"
	}
	s := b.Platform + " " + b.ConnectInstanceID + b.TenantID + b.WorkspaceSID + " (" + b.Region
	if b.Endpoint != "" {
		s += ", " + b.Endpoint
	}
	return s + ")"
}

func newInstancesListCmd() *cobra.Command {
	var o clientOptions
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List registered instances",
		Example: `  contactstop instances list
  contactstop instances list --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
			defer cancel()
			cl, err := o.connect("instances list")
			if err != nil {
				return err
			}
			defer cl.Close()
			st, err := cl.openStore(ctx)
			if err != nil {
				return err
			}
			insts, err := st.ListInstances(ctx)
			if err != nil {
				return err
			}
			if o.json {
				return printJSON(cmd.OutOrStdout(), insts)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "INSTANCE\tNAME\tCREATED\tPLATFORM\tBUDGET")
			for _, in := range insts {
				budget := "-"
				if b := in.Binding; b != nil {
					budget = fmt.Sprintf("%g/s burst %d (%s)", b.Rate, b.Burst, b.QuotaKey)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", in.InstanceID, in.Name, in.CreatedAt.Format(time.RFC3339), bindingText(in.Binding), budget)
			}
			return tw.Flush()
		},
	}
	o.register(cmd)
	return cmd
}
