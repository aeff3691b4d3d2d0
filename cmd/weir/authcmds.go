package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// weir users and weir acls manage SCRAM users and ACLs through Kafka's own
// APIs (AlterUserScramCredentials, CreateAcls, ...), so they work against
// a Kafka cluster too.

func newUsersCmd() *cobra.Command {
	var brokers string
	cmd := &cobra.Command{Use: "users", Short: "Add, list and delete SCRAM users (Kafka's user SCRAM credentials)",
		Example: `  WEIR_SASL_PASSWORD_FILE=admin.pass weir users add alice --password-file alice.pass --sasl-mechanism SCRAM-SHA-512 --sasl-user admin
  weir users list
  weir users delete alice`}
	addBrokersFlag(cmd, &brokers)
	var mechs []string
	var passwordFile string
	var iterations int32
	add := &cobra.Command{Use: "add NAME", Short: "Set a user's SCRAM credentials (the password is salted here, never sent)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			password, err := readPassword(passwordFile)
			if err != nil {
				return err
			}
			var ups []kadm.UpsertSCRAM
			for _, m := range mechs {
				sm, err := scramMechanism(m)
				if err != nil {
					return err
				}
				ups = append(ups, kadm.UpsertSCRAM{User: args[0], Mechanism: sm, Iterations: iterations, Password: password})
			}
			return alterUsers(cmd, brokers, nil, ups)
		}}
	add.Flags().StringSliceVar(&mechs, "mechanism", []string{"SCRAM-SHA-256", "SCRAM-SHA-512"}, "SCRAM mechanisms to set")
	add.Flags().StringVar(&passwordFile, "password-file", "", "file holding the password (default: read a line from stdin)")
	add.Flags().Int32Var(&iterations, "iterations", 8192, "SCRAM iterations, 4096 to 16384")
	list := &cobra.Command{Use: "list", Short: "List users and their mechanisms", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := signalContext(cmd.Context())
			defer cancel()
			cl, err := connect(ctx, brokers)
			if err != nil {
				return err
			}
			defer cl.Close()
			desc, err := kadm.NewClient(cl).DescribeUserSCRAMs(ctx)
			if err != nil {
				return fmt.Errorf("users: %w", err)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "USER\tMECHANISMS")
			for _, u := range desc.Sorted() {
				var ms []string
				for _, ci := range u.CredInfos {
					ms = append(ms, fmt.Sprintf("%s (%d iterations)", ci.Mechanism, ci.Iterations))
				}
				fmt.Fprintf(w, "%s\t%s\n", u.User, strings.Join(ms, ", "))
			}
			return w.Flush()
		}}
	var delMechs []string
	del := &cobra.Command{Use: "delete NAME", Short: "Delete a user's SCRAM credentials", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var dels []kadm.DeleteSCRAM
			for _, m := range delMechs {
				sm, err := scramMechanism(m)
				if err != nil {
					return err
				}
				dels = append(dels, kadm.DeleteSCRAM{User: args[0], Mechanism: sm})
			}
			return alterUsers(cmd, brokers, dels, nil)
		}}
	del.Flags().StringSliceVar(&delMechs, "mechanism", []string{"SCRAM-SHA-256", "SCRAM-SHA-512"}, "SCRAM mechanisms to delete")
	cmd.AddCommand(add, list, del)
	return cmd
}

func scramMechanism(m string) (kadm.ScramMechanism, error) {
	switch strings.ToUpper(m) {
	case "SCRAM-SHA-256":
		return kadm.ScramSha256, nil
	case "SCRAM-SHA-512":
		return kadm.ScramSha512, nil
	}
	return 0, fmt.Errorf("mechanism %q: want SCRAM-SHA-256 or SCRAM-SHA-512", m)
}

func readPassword(file string) (string, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("reading the password: %w", err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	line, err := bufio.NewReader(os.Stdin).ReadString('\n')
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("no password: give --password-file or a line on stdin")
	}
	return line, err
}

func alterUsers(cmd *cobra.Command, brokers string, dels []kadm.DeleteSCRAM, ups []kadm.UpsertSCRAM) error {
	ctx, cancel := signalContext(cmd.Context())
	defer cancel()
	cl, err := connect(ctx, brokers)
	if err != nil {
		return err
	}
	defer cl.Close()
	res, err := kadm.NewClient(cl).AlterUserSCRAMs(ctx, dels, ups)
	if err != nil {
		return fmt.Errorf("users: %w", err)
	}
	for _, r := range res.Sorted() {
		if r.Err != nil {
			return fmt.Errorf("users: %s: %w (%s)", r.User, r.Err, r.ErrMessage)
		}
	}
	return nil
}

// aclFlags select or describe ACLs.
type aclFlags struct {
	principals, hosts, ops         []string
	topics, groups, txns           []string
	cluster, prefixed, deny, allow bool
}

func (f *aclFlags) add(cmd *cobra.Command, forFilter bool) {
	fl := cmd.Flags()
	fl.StringSliceVar(&f.principals, "principal", nil, "principals, User:name or User:*")
	fl.StringSliceVar(&f.hosts, "host", []string{"*"}, "hosts the principals connect from")
	fl.StringSliceVar(&f.ops, "operation", nil, "operations: all, read, write, create, delete, alter, describe, describe_configs, alter_configs, idempotent_write")
	fl.StringSliceVar(&f.topics, "topic", nil, "topics")
	fl.StringSliceVar(&f.groups, "group", nil, "consumer groups")
	fl.StringSliceVar(&f.txns, "transactional-id", nil, "transactional ids")
	fl.BoolVar(&f.cluster, "cluster", false, "the cluster")
	fl.BoolVar(&f.prefixed, "prefixed", false, "names are prefixes")
	fl.BoolVar(&f.deny, "deny", false, "deny instead of allow")
	if forFilter {
		fl.BoolVar(&f.allow, "allow", false, "only allowing ACLs (with --deny: both)")
	}
}

func (f *aclFlags) builder(filter bool) (*kadm.ACLBuilder, error) {
	b := kadm.NewACLs()
	if len(f.principals) == 0 && !filter {
		return nil, errors.New("acls: --principal is required")
	}
	switch {
	case filter && !f.allow && !f.deny:
		b = b.Allow(f.principals...).AllowHosts(f.hosts...).Deny(f.principals...).DenyHosts(f.hosts...)
	case filter && f.allow && f.deny:
		b = b.Allow(f.principals...).AllowHosts(f.hosts...).Deny(f.principals...).DenyHosts(f.hosts...)
	case f.deny:
		b = b.Deny(f.principals...).DenyHosts(f.hosts...)
	default:
		b = b.Allow(f.principals...).AllowHosts(f.hosts...)
	}
	if filter && len(f.principals) == 0 {
		b = b.Allow().Deny()
	}
	var ops []kadm.ACLOperation
	for _, o := range f.ops {
		op, err := kmsg.ParseACLOperation(strings.ReplaceAll(strings.ToLower(o), "-", "_"))
		if err != nil {
			return nil, fmt.Errorf("acls: operation %q: %w", o, err)
		}
		ops = append(ops, op)
	}
	if len(ops) == 0 {
		if !filter {
			return nil, errors.New("acls: --operation is required")
		}
		ops = []kadm.ACLOperation{kadm.OpAny}
	}
	b = b.Operations(ops...)
	named := len(f.topics) + len(f.groups) + len(f.txns)
	if f.cluster {
		b = b.Clusters()
	}
	if len(f.topics) > 0 {
		b = b.Topics(f.topics...)
	}
	if len(f.groups) > 0 {
		b = b.Groups(f.groups...)
	}
	if len(f.txns) > 0 {
		b = b.TransactionalIDs(f.txns...)
	}
	if named == 0 && !f.cluster {
		if !filter {
			return nil, errors.New("acls: name a --topic, --group, --transactional-id or --cluster")
		}
		b = b.AnyResource()
	}
	switch {
	case f.prefixed:
		b = b.ResourcePatternType(kadm.ACLPatternPrefixed)
	case filter:
		b = b.ResourcePatternType(kadm.ACLPatternAny)
	default:
		b = b.ResourcePatternType(kadm.ACLPatternLiteral)
	}
	return b, nil
}

func newACLsCmd() *cobra.Command {
	var brokers string
	cmd := &cobra.Command{Use: "acls", Short: "Add, list and delete ACLs (Kafka's CreateAcls, DescribeAcls, DeleteAcls)",
		Example: `  weir acls add --principal User:alice --operation read,write --topic logs. --prefixed
  weir acls add --principal User:alice --operation read --group loaders
  weir acls add --principal User:bob --deny --operation write --topic payments
  weir acls list --principal User:alice
  weir acls delete --principal User:bob --topic payments`}
	addBrokersFlag(cmd, &brokers)
	var af, lf, df aclFlags
	run := func(f *aclFlags, filter bool, do func(*cobra.Command, *kadm.Client, *kadm.ACLBuilder) error) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, _ []string) error {
			b, err := f.builder(filter)
			if err != nil {
				return err
			}
			ctx, cancel := signalContext(cmd.Context())
			defer cancel()
			cl, err := connect(ctx, brokers)
			if err != nil {
				return err
			}
			defer cl.Close()
			cmd.SetContext(ctx)
			return do(cmd, kadm.NewClient(cl), b)
		}
	}
	add := &cobra.Command{Use: "add", Short: "Create ACLs", Args: cobra.NoArgs,
		RunE: run(&af, false, func(cmd *cobra.Command, adm *kadm.Client, b *kadm.ACLBuilder) error {
			res, err := adm.CreateACLs(cmd.Context(), b)
			if err != nil {
				return fmt.Errorf("acls: %w", err)
			}
			for _, r := range res {
				if r.Err != nil {
					return fmt.Errorf("acls: %s on %s %s: %w (%s)", r.Principal, r.Type, r.Name, r.Err, r.ErrMessage)
				}
			}
			return nil
		})}
	af.add(add, false)
	list := &cobra.Command{Use: "list", Short: "List ACLs (all, or those the flags select)", Args: cobra.NoArgs,
		RunE: run(&lf, true, func(cmd *cobra.Command, adm *kadm.Client, b *kadm.ACLBuilder) error {
			res, err := adm.DescribeACLs(cmd.Context(), b)
			if err != nil {
				return fmt.Errorf("acls: %w", err)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "PRINCIPAL\tHOST\tPERMISSION\tOPERATION\tRESOURCE\tPATTERN\tNAME")
			seen := map[kadm.DescribedACL]bool{}
			for _, r := range res {
				if r.Err != nil {
					return fmt.Errorf("acls: %w (%s)", r.Err, r.ErrMessage)
				}
				for _, d := range r.Described {
					if seen[d] {
						continue
					}
					seen[d] = true
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.Principal, d.Host, d.Permission, d.Operation, d.Type, d.Pattern, d.Name)
				}
			}
			return w.Flush()
		})}
	lf.add(list, true)
	del := &cobra.Command{Use: "delete", Short: "Delete the ACLs the flags select", Args: cobra.NoArgs,
		RunE: run(&df, true, func(cmd *cobra.Command, adm *kadm.Client, b *kadm.ACLBuilder) error {
			res, err := adm.DeleteACLs(cmd.Context(), b)
			if err != nil {
				return fmt.Errorf("acls: %w", err)
			}
			n := 0
			for _, r := range res {
				if r.Err != nil {
					return fmt.Errorf("acls: %w (%s)", r.Err, r.ErrMessage)
				}
				n += len(r.Deleted)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted %d ACLs\n", n)
			return nil
		})}
	df.add(del, true)
	cmd.AddCommand(add, list, del)
	return cmd
}
