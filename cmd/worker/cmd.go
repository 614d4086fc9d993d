package main

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/syncworker/syncworker/internal/config"
	"github.com/syncworker/syncworker/internal/db"
)

// flagKeys maps the worker's flags to the configuration keys they override.
var flagKeys = map[string]string{
	"database-url": "database_url",
	"redis-url":    "redis_url",
	"concurrency":  "worker.concurrency",
	"log-level":    "log.level",
	"jobs":         "etl.jobs_file",
}

func newRootCmd() *cobra.Command {
	var configFile string
	root := &cobra.Command{
		Use:   "worker",
		Short: "Serve syncworker's batch tasks (asynq server and sweeper) until SIGINT or SIGTERM",
		Long: `worker serves syncworker's batch tasks: it runs the asynq server that
processes sync:batch tasks, the sweeper that puts chains lost from Redis
back on the queue from their Postgres checkpoints (and deletes the runs that
ended longer ago than sweeper.retention, 90 days by default), and the scheduler, which
fires the cron entries of schedule.entries from exactly one worker at a time.
Start as many as you like against the same Redis and Postgres. On SIGINT or SIGTERM it stops at once:
running batches roll back and run again on another worker.

Configuration comes from configs/worker.yaml (or --config / SYNCWORKER_CONFIG),
then environment variables (DATABASE_URL, REDIS_URL, ...), then flags.`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd, configFile)
			if err != nil {
				return err
			}
			return run(cmd.Context(), cfg)
		},
	}
	pf := root.PersistentFlags()
	pf.StringVar(&configFile, "config", "", "configuration file (default $"+config.FileEnv+" or "+config.DefaultFile+")")
	pf.String("database-url", "", "Postgres URL (overrides DATABASE_URL)")
	pf.String("redis-url", "", "Redis URL (overrides REDIS_URL)")
	pf.String("log-level", "", "debug, info, warn or error (overrides LOG_LEVEL)")
	root.Flags().String("jobs", "", "ETL jobs file (overrides ETL_JOBS_FILE)")
	root.Flags().Int("concurrency", 0, "tasks run at once by this process (overrides WORKER_CONCURRENCY)")
	root.SetFlagErrorFunc(flagError)
	root.AddCommand(newMigrateCmd(&configFile))
	return root
}

// negativeArg matches the error of an argument such as -1 that the flag
// parser took for a flag.
var negativeArg = regexp.MustCompile(`^unknown shorthand flag: '\d' in (-\d\S*)$`)

// flagError is the commands' FlagErrorFunc: a negative number given as a
// step count N is an invalid step count, not an unknown flag.
func flagError(cmd *cobra.Command, err error) error {
	if m := negativeArg.FindStringSubmatch(err.Error()); m != nil && strings.Contains(cmd.Use, "[N]") {
		_, err = steps(m[1:], 0)
	}
	return err
}

func loadConfig(cmd *cobra.Command, file string) (config.Config, error) {
	keys := map[string]string{}
	for flag, key := range flagKeys {
		if cmd.Flags().Lookup(flag) != nil {
			keys[flag] = key
		}
	}
	return config.Load(config.Options{File: file, Flags: cmd.Flags(), FlagKeys: keys})
}

func newMigrateCmd(configFile *string) *cobra.Command {
	var createDB bool
	migrateCmd := &cobra.Command{
		Use:   "migrate",
		Short: "Apply every pending migration to DATABASE_URL (same as `migrate up`)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return migrate(cmd, *configFile, createDB, 0)
		},
	}
	migrateCmd.PersistentFlags().BoolVar(&createDB, "create-database", false, "create the database first when it does not exist")
	migrateCmd.AddCommand(&cobra.Command{
		Use:   "up [N]",
		Short: "Apply N pending migrations (all when N is not given)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := steps(args, 0)
			if err != nil {
				return err
			}
			return migrate(cmd, *configFile, createDB, n)
		},
	})
	migrateCmd.AddCommand(&cobra.Command{
		Use:   "down [N]",
		Short: "Revert the last N migrations (1 when N is not given)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := steps(args, 1)
			if err != nil {
				return err
			}
			return migrate(cmd, *configFile, false, -n)
		},
	})
	migrateCmd.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print the schema version of DATABASE_URL and the newest this binary has",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd, *configFile)
			if err != nil {
				return err
			}
			have, dirty, err := db.Version(cmd.Context(), cfg.DatabaseURL)
			if err != nil {
				return err
			}
			want, err := db.LatestVersion()
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "database: %d (dirty: %t)\nbinary:   %d\n", have, dirty, want)
			return nil
		},
	})
	return migrateCmd
}

func steps(args []string, def int) (int, error) {
	if len(args) == 0 {
		return def, nil
	}
	n, err := strconv.Atoi(args[0])
	if err != nil || n < 1 {
		return 0, fmt.Errorf("invalid step count %q: want a whole number of 1 or more", args[0])
	}
	return n, nil
}

func migrate(cmd *cobra.Command, configFile string, createDB bool, n int) error {
	cfg, err := loadConfig(cmd, configFile)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	if createDB {
		if err := db.CreateDatabase(ctx, cfg.DatabaseURL); err != nil {
			return err
		}
	}
	v, err := db.Migrate(ctx, cfg.DatabaseURL, n)
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "schema at version %d\n", v)
	return nil
}
