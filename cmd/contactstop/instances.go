package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/contactstop/contactstop/store"
)

func newInstancesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "instances",
		Short: "Register and list instances (tenants)",
	}
	cmd.AddCommand(newInstancesAddCmd(), newInstancesListCmd())
	return cmd
}

func newInstancesAddCmd() *cobra.Command {
	var (
		o    clientOptions
		name string
	)
	cmd := &cobra.Command{
		Use:   "add INSTANCE_ID",
		Short: "Register an instance; requests for unregistered instances fail with RESOURCE_NOT_FOUND",
		Args:  cobra.ExactArgs(1),
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
			inst, err := st.PutInstance(ctx, store.Instance{InstanceID: args[0], Name: name})
			if err != nil {
				return err
			}
			if o.json {
				return printJSON(cmd.OutOrStdout(), inst)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "instance %s registered\n", inst.InstanceID)
			return err
		},
	}
	o.register(cmd)
	cmd.Flags().StringVar(&name, "name", "", "display name")
	return cmd
}

func newInstancesListCmd() *cobra.Command {
	var o clientOptions
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List registered instances",
		Args:  cobra.NoArgs,
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
			fmt.Fprintln(tw, "INSTANCE\tNAME\tCREATED")
			for _, in := range insts {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", in.InstanceID, in.Name, in.CreatedAt.Format(time.RFC3339))
			}
			return tw.Flush()
		},
	}
	o.register(cmd)
	return cmd
}

func writeJSONLine(w io.Writer, v any) error {
	return json.NewEncoder(w).Encode(v)
}
