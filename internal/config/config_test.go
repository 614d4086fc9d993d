package config

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// clearEnv unsets every configuration variable for the test, so that the
// environment of the machine does not leak in.
func clearEnv(t *testing.T) {
	t.Helper()
	for _, d := range defaults {
		t.Setenv(EnvName(d.key), "")
		os.Unsetenv(EnvName(d.key))
	}
	t.Setenv(FileEnv, "")
	os.Unsetenv(FileEnv)
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "worker.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestDefaultsValidate(t *testing.T) {
	cfg := Default()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	if cfg.Sync.BatchSize != 500 {
		t.Errorf("default batch size = %d, want 500 (the seed's SYNC_BATCH_SIZE)", cfg.Sync.BatchSize)
	}
}

// The shipped configs/worker.yaml must list every key at its default, so
// that it documents the defaults truly.
func TestShippedFileHoldsTheDefaults(t *testing.T) {
	clearEnv(t)
	got, err := Load(Options{File: "../../configs/worker.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	if want := Default(); !reflect.DeepEqual(got, want) {
		t.Errorf("configs/worker.yaml differs from the defaults:\n got %+v\nwant %+v", got, want)
	}
	body, err := os.ReadFile("../../configs/worker.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range defaults {
		leaf := d.key[strings.LastIndex(d.key, ".")+1:]
		if !strings.Contains(string(body), leaf+":") {
			t.Errorf("configs/worker.yaml does not list %s", d.key)
		}
		if !strings.Contains(string(body), "("+EnvName(d.key)+")") {
			t.Errorf("configs/worker.yaml does not name the variable %s", EnvName(d.key))
		}
	}
}

func TestPrecedence(t *testing.T) {
	clearEnv(t)
	file := writeFile(t, "sync:\n  batch_size: 100\n  partitions: 3\nquotes:\n  rate_limit: 7\n")
	t.Setenv("SYNC_BATCH_SIZE", "200")
	t.Setenv("QUOTES_CONCURRENCY", "5")
	flags := pflag.NewFlagSet("test", pflag.ContinueOnError)
	flags.Int("batch-size", 0, "")
	flags.Int("partitions", 0, "")
	if err := flags.Parse([]string{"--batch-size", "300"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(Options{File: file, Flags: flags, FlagKeys: map[string]string{
		"batch-size": "sync.batch_size", "partitions": "sync.partitions",
	}})
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"flag over env over file", cfg.Sync.BatchSize, 300},
		{"file over default (flag not set)", cfg.Sync.Partitions, 3},
		{"file over default", cfg.Quotes.RateLimit, 7},
		{"env over default", cfg.Quotes.Concurrency, 5},
		{"default", cfg.Quotes.MaxAttempts, 3},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestSeedEnvNames(t *testing.T) {
	clearEnv(t)
	t.Setenv("DATABASE_URL", "postgres://u@db.example:5432/x")
	t.Setenv("REDIS_URL", "redis://cache.example:6379/3")
	t.Setenv("SYNC_BATCH_SIZE", "250")
	t.Setenv("QUOTES_BASE_URL", "https://quotes.example")
	t.Setenv("QUOTES_RATE_LIMIT", "20")
	t.Setenv("QUOTES_CONCURRENCY", "4")
	t.Setenv("SYNC_TASK_SLICE", "2s")
	cfg, err := Load(Options{File: os.DevNull})
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.DatabaseURL = "postgres://u@db.example:5432/x"
	want.RedisURL = "redis://cache.example:6379/3"
	want.Sync.BatchSize = 250
	want.Quotes.BaseURL = "https://quotes.example"
	want.Quotes.RateLimit = 20
	want.Quotes.Concurrency = 4
	want.Sync.TaskSlice = 2 * time.Second
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("got %+v\nwant %+v", cfg, want)
	}
}

// Every wrong value stops the load with an error naming the key, the
// variable or flag that sets it, and, for a value from the file, the file
// ($FILE in wantErr); nothing is converted silently.
func TestInvalid(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		env     map[string]string
		wantErr []string
		notWant []string
	}{
		{name: "unknown key in file", file: "sync:\n  batch_sise: 10\n", wantErr: []string{"batch_sise"}},
		{name: "unknown top-level key", file: "databse_url: x\n", wantErr: []string{"databse_url"}},
		{name: "wrong type in file", file: "sync:\n  batch_size: lots\n", wantErr: []string{"batch_size"}},
		{name: "bad duration", file: "sync:\n  task_slice: soon\n", wantErr: []string{"task_slice"}},
		{name: "not yaml", file: "sync: [\n", wantErr: []string{"config file"}},
		{name: "zero batch size from env", env: map[string]string{"SYNC_BATCH_SIZE": "0"},
			wantErr: []string{"sync.batch_size (SYNC_BATCH_SIZE)", "between 1 and"}},
		{name: "batch size not a number", env: map[string]string{"SYNC_BATCH_SIZE": "many"},
			wantErr: []string{"batch_size"}},
		{name: "negative rate limit", env: map[string]string{"QUOTES_RATE_LIMIT": "-1"},
			wantErr: []string{"quotes.rate_limit (QUOTES_RATE_LIMIT)"}},
		{name: "database url scheme", env: map[string]string{"DATABASE_URL": "mysql://x/y"},
			wantErr: []string{"database_url (DATABASE_URL)", "postgres"}},
		{name: "redis url", env: map[string]string{"REDIS_URL": "127.0.0.1:6379"},
			wantErr: []string{"redis_url (REDIS_URL)"}},
		{name: "quotes url", env: map[string]string{"QUOTES_BASE_URL": "ftp://x"},
			wantErr: []string{"quotes.base_url (QUOTES_BASE_URL)"}},
		{name: "time zone", env: map[string]string{"MARKET_TIMEZONE": "Mars/Olympus"},
			wantErr: []string{"market_timezone (MARKET_TIMEZONE)"}},
		{name: "slice longer than timeout", env: map[string]string{"SYNC_TASK_SLICE": "20m"},
			wantErr: []string{"sync.task_slice", "shorter than sync.task_timeout"}},
		{name: "log level", env: map[string]string{"LOG_LEVEL": "loud"}, wantErr: []string{"log.level (LOG_LEVEL)"}},
		{name: "log format", env: map[string]string{"LOG_FORMAT": "xml"},
			wantErr: []string{`log.format (LOG_FORMAT) must be auto, text or json, got "xml"`}},
		{name: "lease too short", env: map[string]string{"SYNC_LEASE": "10ms"}, wantErr: []string{"sync.lease (SYNC_LEASE)"}},
		{name: "takeover interval", env: map[string]string{"SWEEPER_TAKEOVER_INTERVAL": "0s"},
			wantErr: []string{"sweeper.takeover_interval (SWEEPER_TAKEOVER_INTERVAL)"}},
		{name: "retention shorter than the kick-off records must live", env: map[string]string{"SWEEPER_RETENTION": "24h"},
			wantErr: []string{"sweeper.retention (SWEEPER_RETENTION)", "0 (keep runs for ever) or at least 48h0m0s, got 24h0m0s"}},
		{name: "negative retention", file: "sweeper:\n  retention: -1h\n", wantErr: []string{"sweeper.retention", "$FILE"}},
		{name: "trusted proxy that is no address", env: map[string]string{"HTTP_TRUSTED_PROXIES": "[10.0.0.0/8, proxy.internal]"},
			wantErr: []string{`http.trusted_proxies[1] (HTTP_TRUSTED_PROXIES) must be a proxy's IP or CIDR, such as 10.0.3.17 or 10.0.3.0/28, got "proxy.internal"`}},
		{name: "every address trusted", file: "http:\n  trusted_proxies: [10.0.3.17, 0.0.0.0/0, \"::/0\"]\n",
			wantErr: []string{"http.trusted_proxies[1]", "http.trusted_proxies[2]", "would trust every peer"}},
		{name: "trusted proxy with a zone", file: "http:\n  trusted_proxies: [\"fe80::1%eth0\"]\n",
			wantErr: []string{"http.trusted_proxies[0]", "an address with a zone"}},
		{name: "failure percent over 100", env: map[string]string{"SYNC_MAX_FAILED_PERCENT": "150"},
			wantErr: []string{"sync.max_failed_percent (SYNC_MAX_FAILED_PERCENT)", "between 0 (no limit) and 100"}},
		{name: "negative failed items", env: map[string]string{"SYNC_MAX_FAILED_ITEMS": "-5"},
			wantErr: []string{"sync.max_failed_items (SYNC_MAX_FAILED_ITEMS)"}},
		{name: "every bad key is named", env: map[string]string{"QUOTES_CONCURRENCY": "0", "WORKER_CONCURRENCY": "0"},
			wantErr: []string{"quotes.concurrency", "worker.concurrency"}},

		// Wrong types in the file are refused, not converted.
		{name: "fraction for a whole number", file: "sync:\n  batch_size: 10.7\n",
			wantErr: []string{"config file $FILE: sync.batch_size (SYNC_BATCH_SIZE) is 10.7: want a whole number"}},
		{name: "negative fraction for a whole number", file: "quotes:\n  rate_limit: -0.5\n",
			wantErr: []string{"quotes.rate_limit (QUOTES_RATE_LIMIT) is -0.5: want a whole number"}},
		{name: "bool for a whole number", file: "sync:\n  batch_size: true\n", wantErr: []string{"sync.batch_size (SYNC_BATCH_SIZE) is true"}},
		{name: "list for a whole number", file: "sync:\n  batch_size: [1, 2]\n", wantErr: []string{"sync.batch_size (SYNC_BATCH_SIZE) is [1 2]"}},
		{name: "whole number past int64", file: "sync:\n  batch_size: 99999999999999999999\n", wantErr: []string{"sync.batch_size (SYNC_BATCH_SIZE) is 1e+20: too large"}},
		{name: "duration without a unit", file: "sync:\n  task_slice: 10\n",
			wantErr: []string{"config file $FILE: sync.task_slice (SYNC_TASK_SLICE) is 10: want a duration with its unit"}},
		{name: "number for text", file: "sync:\n  partitions: 2\nlog:\n  level: 3\n", wantErr: []string{"log.level (LOG_LEVEL) is 3: want text"}},
		{name: "number for a secret, not echoed", file: "quotes:\n  api_key: 98765\nhttp:\n  admin_token: 1234567890123456789\n",
			wantErr: []string{"quotes.api_key (QUOTES_API_KEY) must be text", "http.admin_token (ADMIN_TOKEN) must be text"},
			notWant: []string{"98765", "123456789"}},
		{name: "bool not true or false", env: map[string]string{"HTTP_ALLOW_PUBLIC": "maybe"},
			wantErr: []string{`http.allow_public (HTTP_ALLOW_PUBLIC) is "maybe": want true or false`}},
		{name: "number for a bool", file: "http:\n  allow_public: 1\n", wantErr: []string{"http.allow_public (HTTP_ALLOW_PUBLIC) is 1: want true or false"}},
		{name: "short admin token, not echoed", env: map[string]string{"ADMIN_TOKEN": "short-s3cret"},
			wantErr: []string{"http.admin_token (ADMIN_TOKEN) must be at least 16 characters"}, notWant: []string{"s3cret"}},
		{name: "admin token with a space, not echoed", env: map[string]string{"ADMIN_TOKEN": "a-long-s3cret with-a-space"},
			wantErr: []string{"http.admin_token (ADMIN_TOKEN) must not contain spaces"}, notWant: []string{"s3cret"}},
		{name: "section for text", file: "database_url:\n  host: x\n", wantErr: []string{"database_url (DATABASE_URL) is map[host:x]: want text"}},
		{name: "value for a section", file: "sync: 5\n", wantErr: []string{"config file $FILE: sync is 5: want a section of keys"}},
		{name: "duplicate key", file: "sync:\n  batch_size: 1\n  batch_size: 2\n", wantErr: []string{"$FILE", `"batch_size" already defined`}},
		{name: "list at the top", file: "- sync\n", wantErr: []string{"config file $FILE"}},
		{name: "unknown key lists its section's keys", file: "sync:\n  batch_sise: 10\n",
			wantErr: []string{"config file $FILE: unknown key sync.batch_sise (sync has batch_size, partitions,"}},
		{name: "unknown section", file: "sinc:\n  batch_size: 10\n", wantErr: []string{"unknown key sinc.batch_size"}},
		{name: "unknown key and wrong type both named", file: "sync:\n  batch_sise: 10\n  partitions: many\n",
			wantErr: []string{"unknown key sync.batch_sise", `sync.partitions (SYNC_PARTITIONS) is "many": want a whole number`}},
		{name: "out of range in the file names the file", file: "sync:\n  batch_size: 0\n",
			wantErr: []string{"config file $FILE: sync.batch_size (SYNC_BATCH_SIZE) must be between 1 and"}},

		// A value from the environment is named by its variable, not the file.
		{name: "fraction from env", file: "sync:\n  batch_size: 3\n", env: map[string]string{"SYNC_BATCH_SIZE": "10.5"},
			wantErr: []string{`config: sync.batch_size (SYNC_BATCH_SIZE) is "10.5": want a whole number`}, notWant: []string{"config file"}},
		{name: "env over a good file value", file: "sync:\n  batch_size: 3\n", env: map[string]string{"SYNC_BATCH_SIZE": "0"},
			wantErr: []string{"config: sync.batch_size (SYNC_BATCH_SIZE) must be between"}, notWant: []string{"config file"}},
		{name: "duration without a unit from env", env: map[string]string{"SYNC_TASK_SLICE": "10"},
			wantErr: []string{`sync.task_slice (SYNC_TASK_SLICE) is "10": want a duration`}},
		{name: "api key with a space, not echoed", env: map[string]string{"QUOTES_API_KEY": "s3cret key"},
			wantErr: []string{"quotes.api_key (QUOTES_API_KEY) must not contain spaces"}, notWant: []string{"s3cret"}},
		{name: "api key with a newline", env: map[string]string{"QUOTES_API_KEY": "s3cret\n"},
			wantErr: []string{"quotes.api_key (QUOTES_API_KEY)"}},

		// The schedule: each entry's key is named with its index.
		{name: "schedule cron not a spec", file: entries(`{name: a, cron: "30 18 * *", job: daily-sync}`),
			wantErr: []string{"config file $FILE: schedule.entries[0].cron (SCHEDULE_ENTRIES) is not a cron spec"}},
		{name: "schedule cron bad time zone", file: entries(`{name: a, cron: "CRON_TZ=Mars/Olympus 30 18 * * 1-5", job: daily-sync}`),
			wantErr: []string{"schedule.entries[0].cron", "Mars/Olympus"}},
		{name: "schedule cron time zone alone", file: entries(`{name: a, cron: "CRON_TZ=America/New_York", job: daily-sync}`),
			wantErr: []string{"schedule.entries[0].cron", "no schedule after it"}},
		{name: "schedule cron never fires", file: entries(`{name: a, cron: "0 0 30 2 *", job: daily-sync}`),
			wantErr: []string{"schedule.entries[0].cron", "never fires"}},
		{name: "schedule cron out of range", file: entries(`{name: a, cron: "61 18 * * *", job: daily-sync}`),
			wantErr: []string{"schedule.entries[0].cron"}},
		{name: "schedule cron missing", file: entries(`{name: a, job: daily-sync}`),
			wantErr: []string{"schedule.entries[0].cron (SCHEDULE_ENTRIES) must be a cron spec"}},
		{name: "schedule second entry's name", file: entries(`{name: a, cron: "@daily", job: daily-sync}`, `{name: "Daily Sync", cron: "@daily", job: daily-sync}`),
			wantErr: []string{"schedule.entries[1].name", `got "Daily Sync"`}, notWant: []string{"entries[0]"}},
		{name: "schedule duplicate names", file: entries(`{name: a, cron: "@daily", job: daily-sync}`, `{name: a, cron: "@hourly", job: x}`),
			wantErr: []string{"schedule.entries[1].name", "schedule.entries[0] too"}},
		{name: "schedule missing job", file: entries(`{name: a, cron: "@daily"}`), wantErr: []string{"schedule.entries[0].job"}},
		{name: "schedule overlap", file: entries(`{name: a, cron: "@daily", job: daily-sync, overlap: never}`),
			wantErr: []string{"schedule.entries[0].overlap", "skip (the default) or allow"}},
		{name: "schedule unknown key in an entry", file: entries(`{name: a, cron: "@daily", jobb: daily-sync}`),
			wantErr: []string{"schedule.entries[0].jobb (SCHEDULE_ENTRIES) is not a key of a schedule entry", "schedule.entries[0].job (SCHEDULE_ENTRIES) must name"}},
		{name: "schedule empty param", file: entries(`{name: a, cron: "@daily", job: x, params: {region: ""}}`),
			wantErr: []string{"schedule.entries[0].params.region (SCHEDULE_ENTRIES) must have a value"}},
		{name: "schedule param not text", file: entries(`{name: a, cron: "@daily", job: x, params: {page: 5}}`),
			wantErr: []string{"schedule.entries[0].params[page]", "want text"}},
		{name: "schedule entry not a section", file: entries(`"30 18 * * *"`),
			wantErr: []string{"schedule.entries[0]", "want a section of keys"}},
		{name: "schedule entries not a list", file: "schedule:\n  entries: {name: a}\n", wantErr: []string{"schedule.entries"}},
		{name: "schedule entries from env, bad", env: map[string]string{"SCHEDULE_ENTRIES": `[{"name": "a", "cron": "nope", "job": "daily-sync"}]`},
			wantErr: []string{"config: schedule.entries[0].cron (SCHEDULE_ENTRIES)"}},
		{name: "schedule entries from env, not a list", env: map[string]string{"SCHEDULE_ENTRIES": `[{`},
			wantErr: []string{"schedule.entries (SCHEDULE_ENTRIES) is not a YAML or JSON list"}},
		{name: "schedule poll interval", env: map[string]string{"SCHEDULE_POLL_INTERVAL": "1ms"},
			wantErr: []string{"schedule.poll_interval (SCHEDULE_POLL_INTERVAL)"}},
		{name: "schedule negative catch-up", env: map[string]string{"SCHEDULE_CATCH_UP": "-1s"},
			wantErr: []string{"schedule.catch_up (SCHEDULE_CATCH_UP)"}},
		{name: "market holiday not a date", env: map[string]string{"SYNC_MARKET_HOLIDAYS": `["2026-12-25", "Christmas"]`},
			wantErr: []string{`sync.market_holidays[1] (SYNC_MARKET_HOLIDAYS) must be a date YYYY-MM-DD, got "Christmas"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			file := os.DevNull
			if tt.file != "" {
				file = writeFile(t, tt.file)
			}
			_, err := Load(Options{File: file})
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			for _, want := range tt.wantErr {
				if want = strings.ReplaceAll(want, "$FILE", file); !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
			for _, not := range tt.notWant {
				if strings.Contains(err.Error(), not) {
					t.Errorf("error %q mentions %q", err, not)
				}
			}
		})
	}
}

// entries returns a configuration file with the schedule entries given as
// YAML flow mappings.
func entries(list ...string) string {
	return "schedule:\n  entries:\n    - " + strings.Join(list, "\n    - ") + "\n"
}

// Schedule entries load from the file and from the environment, and every
// spec form the README names parses.
func TestScheduleEntries(t *testing.T) {
	clearEnv(t)
	cfg, err := Load(Options{File: writeFile(t, entries(
		`{name: daily, cron: "CRON_TZ=America/New_York 30 18 * * 1-5", job: daily-sync}`,
		`{name: patients-nightly, cron: "TZ=Europe/London 0 2 * * *", job: patients, params: {region: eu}, overlap: allow}`,
		`{name: fast, cron: "*/2 * * * * *", job: visits}`,
		`{name: hourly, cron: "@every 1h", job: visits}`,
	))})
	if err != nil {
		t.Fatal(err)
	}
	want := []ScheduleEntry{
		{Name: "daily", Cron: "CRON_TZ=America/New_York 30 18 * * 1-5", Job: "daily-sync"},
		{Name: "patients-nightly", Cron: "TZ=Europe/London 0 2 * * *", Job: "patients", Params: map[string]string{"region": "eu"}, Overlap: "allow"},
		{Name: "fast", Cron: "*/2 * * * * *", Job: "visits"},
		{Name: "hourly", Cron: "@every 1h", Job: "visits"},
	}
	if !reflect.DeepEqual(cfg.Schedule.Entries, want) {
		t.Errorf("entries = %+v\nwant %+v", cfg.Schedule.Entries, want)
	}
	if cfg.Schedule.Entries[0].OverlapPolicy() != OverlapSkip || cfg.Schedule.Entries[1].OverlapPolicy() != OverlapAllow {
		t.Errorf("overlap policies: %q, %q", cfg.Schedule.Entries[0].OverlapPolicy(), cfg.Schedule.Entries[1].OverlapPolicy())
	}

	clearEnv(t)
	t.Setenv("SCHEDULE_ENTRIES", `- {name: daily, cron: "30 18 * * 1-5", job: daily-sync}`)
	cfg, err = Load(Options{File: os.DevNull})
	if err != nil || len(cfg.Schedule.Entries) != 1 || cfg.Schedule.Entries[0].Cron != "30 18 * * 1-5" {
		t.Errorf("entries from SCHEDULE_ENTRIES = %+v, %v", cfg.Schedule.Entries, err)
	}
}

// Strict, not fussy: the forms of a value that say the same thing are taken.
func TestAcceptedForms(t *testing.T) {
	tests := []struct {
		name  string
		file  string
		check func(Config) bool
	}{
		{"quoted whole number", "sync:\n  batch_size: \"20\"\n", func(c Config) bool { return c.Sync.BatchSize == 20 }},
		{"upper-case keys", "SYNC:\n  BATCH_SIZE: 7\n", func(c Config) bool { return c.Sync.BatchSize == 7 }},
		{"bare zero duration", "sync:\n  task_slice: 0\n", func(c Config) bool { return c.Sync.TaskSlice == 0 }},
		{"compound duration", "sync:\n  task_slice: 1m30s\n", func(c Config) bool { return c.Sync.TaskSlice == 90*time.Second }},
		{"runs kept for ever", "sweeper:\n  retention: 0\n", func(c Config) bool { return c.Sweeper.Retention == 0 }},
		{"trusted proxies", "http:\n  trusted_proxies: [10.0.0.0/8, 192.0.2.7, \"2001:db8::/32\", \"::ffff:10.1.0.0/112\", \"::ffff:10.2.0.1\"]\n", func(c Config) bool {
			p := c.HTTP.Proxies()
			return len(p) == 5 && p[0].String() == "10.0.0.0/8" && p[1].String() == "192.0.2.7/32" && p[2].String() == "2001:db8::/32" &&
				p[3].String() == "10.1.0.0/16" && p[4].String() == "10.2.0.1/32"
		}},
		{"default retention of 90 days", "", func(c Config) bool { return c.Sweeper.Retention == 90*24*time.Hour }},
		{"quoted api key of digits", "quotes:\n  api_key: \"0123\"\n", func(c Config) bool { return c.Quotes.APIKey == "0123" }},
		{"empty file", "", func(c Config) bool { return reflect.DeepEqual(c, Default()) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			cfg, err := Load(Options{File: writeFile(t, tt.file)})
			if err != nil || !tt.check(cfg) {
				t.Errorf("Load of %q = %+v, %v", tt.file, cfg, err)
			}
		})
	}
}

// An admin listener beyond loopback needs a token or an explicit
// allow_public; loopback needs neither.
func TestAdminExposure(t *testing.T) {
	const token = "0123456789abcdef-token"
	tests := []struct {
		addr, token string
		allowPublic bool
		wantErr     bool
	}{
		{addr: "127.0.0.1:8080"},
		{addr: "127.9.8.7:8080"},
		{addr: "[::1]:8080"},
		{addr: "localhost:8080"},
		{addr: "LocalHost:0"},
		{addr: ""},
		{addr: ":8080", wantErr: true},
		{addr: "0.0.0.0:8080", wantErr: true},
		{addr: "[::]:8080", wantErr: true},
		{addr: "10.0.0.5:8080", wantErr: true},
		{addr: "admin.internal:8080", wantErr: true},
		{addr: "0.0.0.0:8080", allowPublic: true},
		{addr: ":8080", token: token},
		{addr: "10.0.0.5:8080", token: token, allowPublic: true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s token=%t public=%t", tt.addr, tt.token != "", tt.allowPublic), func(t *testing.T) {
			clearEnv(t)
			t.Setenv("HTTP_ADDR", tt.addr)
			t.Setenv("ADMIN_TOKEN", tt.token)
			t.Setenv("HTTP_ALLOW_PUBLIC", strconv.FormatBool(tt.allowPublic))
			cfg, err := Load(Options{File: os.DevNull})
			if !tt.wantErr {
				if err != nil {
					t.Fatalf("Load = %v, want no error", err)
				}
				if cfg.HTTP.Addr != tt.addr || cfg.HTTP.AdminToken != tt.token || cfg.HTTP.AllowPublic != tt.allowPublic {
					t.Errorf("Load = %+v, want addr %q, the token and allow_public %t", cfg.HTTP, tt.addr, tt.allowPublic)
				}
				return
			}
			if err == nil {
				t.Fatal("Load succeeded, want the public bind refused")
			}
			for _, want := range []string{"http.addr (HTTP_ADDR) " + strconv.Quote(tt.addr), "beyond loopback", "http.admin_token (ADMIN_TOKEN)", "http.allow_public (HTTP_ALLOW_PUBLIC=true)"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
		})
	}
}

func TestFlagNamedInError(t *testing.T) {
	clearEnv(t)
	flags := pflag.NewFlagSet("test", pflag.ContinueOnError)
	flags.Int("batch-size", 0, "")
	if err := flags.Parse([]string{"--batch-size", "0"}); err != nil {
		t.Fatal(err)
	}
	_, err := Load(Options{File: os.DevNull, Flags: flags, FlagKeys: map[string]string{"batch-size": "sync.batch_size"}})
	if err == nil || !strings.Contains(err.Error(), "--batch-size") {
		t.Fatalf("error %v does not name --batch-size", err)
	}
}

func TestMissingExplicitFile(t *testing.T) {
	clearEnv(t)
	_, err := Load(Options{File: filepath.Join(t.TempDir(), "nope.yaml")})
	if err == nil || !strings.Contains(err.Error(), "nope.yaml") {
		t.Fatalf("error %v does not name the missing file", err)
	}
}

func TestEnvironRoundTrips(t *testing.T) {
	clearEnv(t)
	want := Default()
	want.Sync.BatchSize = 123
	want.Sync.TaskSlice = 1500 * time.Millisecond
	want.Quotes.APIKey = "k"
	want.HTTP.AdminToken = "0123456789abcdef-token"
	want.HTTP.AllowPublic = true
	// Empty, which viper takes for unset: the admin HTTP must stay off.
	want.HTTP.Addr = ""
	want.Schedule.Entries = []ScheduleEntry{{Name: "daily", Cron: "CRON_TZ=America/New_York 30 18 * * 1-5", Job: "daily-sync"},
		{Name: "p", Cron: "@every 1m", Job: "patients", Params: map[string]string{"region": "eu"}, Overlap: OverlapAllow}}
	env := want.Environ()
	if len(env) != len(defaults) {
		t.Errorf("Environ has %d variables, want one per key (%d)", len(env), len(defaults))
	}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	got, err := Load(Options{File: os.DevNull})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("round trip through the environment:\n got %+v\nwant %+v", got, want)
	}
}

// log.format picks the logger's format: auto is text on a terminal and JSON
// anywhere else; text and json are what they say, wherever the log goes.
func TestLogFormat(t *testing.T) {
	tests := []struct {
		format   string
		terminal bool
		want     string
	}{
		{"auto", true, "text"},
		{"auto", false, "json"},
		{"text", true, "text"},
		{"text", false, "text"},
		{"json", true, "json"},
		{"json", false, "json"},
	}
	for _, tt := range tests {
		if got := (Log{Format: tt.format}).formatFor(tt.terminal); got != tt.want {
			t.Errorf("format %s on a terminal %v = %s, want %s", tt.format, tt.terminal, got, tt.want)
		}
	}

	// The real writers: a file and a buffer are no terminal.
	file, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	for _, w := range []struct {
		name string
		w    io.Writer
	}{{"file", file}, {"buffer", &bytes.Buffer{}}} {
		for format, want := range map[string]string{"auto": "json", "text": "text", "json": "json"} {
			var got string
			switch (Log{Level: "info", Format: format}).NewLogger(w.w).Handler().(type) {
			case *slog.JSONHandler:
				got = "json"
			case *slog.TextHandler:
				got = "text"
			}
			if got != want {
				t.Errorf("log.format %s writing to a %s: a %s logger, want %s", format, w.name, got, want)
			}
		}
	}

	// auto is the default, from LOG_FORMAT too.
	clearEnv(t)
	cfg, err := Load(Options{File: os.DevNull})
	if err != nil || cfg.Log.Format != "auto" {
		t.Errorf("default log.format = %q, %v; want auto", cfg.Log.Format, err)
	}
	t.Setenv("LOG_FORMAT", "text")
	if cfg, err := Load(Options{File: os.DevNull}); err != nil || cfg.Log.Format != "text" {
		t.Errorf("LOG_FORMAT=text gives log.format %q, %v", cfg.Log.Format, err)
	}
}

// The level of the logger is log.level's.
func TestLogLevel(t *testing.T) {
	for level, want := range map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo,
		"warn": slog.LevelWarn, "error": slog.LevelError} {
		l := Log{Level: level, Format: "json"}
		if got := l.SlogLevel(); got != want {
			t.Errorf("log.level %s = %s, want %s", level, got, want)
		}
		log := l.NewLogger(io.Discard)
		if !log.Enabled(t.Context(), want) || log.Enabled(t.Context(), want-1) {
			t.Errorf("a logger of log.level %s does not log from %s up only", level, want)
		}
	}
}

// Market holidays in the file may be written as YAML dates, quoted or not.
func TestMarketHolidaysFromYAML(t *testing.T) {
	clearEnv(t)
	c, err := Load(Options{File: writeFile(t, "sync:\n  market_holidays: [2026-12-25, \"2027-01-01\"]\n")})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"2026-12-25", "2027-01-01"}; !reflect.DeepEqual(c.Sync.MarketHolidays, want) {
		t.Errorf("market_holidays = %q, want %q", c.Sync.MarketHolidays, want)
	}
}

// A YAML timestamp in market_holidays is the date written in its own
// offset when it is that date's midnight, and refused at any other time:
// its UTC date may be another day.
func TestMarketHolidaysFromYAMLTimestamps(t *testing.T) {
	for _, tt := range []struct{ yaml, want, wantErr string }{
		{yaml: "2026-12-25T00:00:00Z", want: "2026-12-25"},
		{yaml: "2026-12-25T00:00:00+01:00", want: "2026-12-25"},
		{yaml: "2026-12-24T23:00:00-01:00", wantErr: "sync.market_holidays[0]"},
		{yaml: "2026-12-25T10:00:00Z", wantErr: "sync.market_holidays[0]"},
	} {
		clearEnv(t)
		c, err := Load(Options{File: writeFile(t, "sync:\n  market_holidays: ["+tt.yaml+"]\n")})
		switch {
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("market_holidays [%s] = %q, %v; want an error naming %s", tt.yaml, c.Sync.MarketHolidays, err, tt.wantErr)
		case tt.wantErr == "" && (err != nil || !reflect.DeepEqual(c.Sync.MarketHolidays, []string{tt.want})):
			t.Errorf("market_holidays [%s] = %q, %v; want [%s]", tt.yaml, c.Sync.MarketHolidays, err, tt.want)
		}
	}
}
