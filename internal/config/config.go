// Package config loads syncworker's one typed configuration: defaults, then the
// YAML file (configs/worker.yaml), then environment variables, then command-line
// flags, each overriding the one before. Every key is validated, and an error
// names the key and its environment variable.
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"net"
	"net/netip"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/go-viper/mapstructure/v2"
	"github.com/robfig/cron/v3"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"
	"golang.org/x/term"
)

// DefaultFile is the configuration file read when none is named and it exists
// in the working directory.
const DefaultFile = "configs/worker.yaml"

// FileEnv is the environment variable that names the configuration file.
const FileEnv = "SYNCWORKER_CONFIG"

// Config is the whole configuration of the worker and the operator CLI.
type Config struct {
	// DatabaseURL is the Postgres connection string (DATABASE_URL).
	// Default: postgres://postgres@127.0.0.1:5432/syncworker?sslmode=disable.
	DatabaseURL string `mapstructure:"database_url"`
	// RedisURL is the Redis that carries the tasks (REDIS_URL).
	// Default: redis://127.0.0.1:6379/0.
	RedisURL string `mapstructure:"redis_url"`
	// MarketTimezone is the IANA time zone whose calendar day is the default
	// trading date of the daily sync (MARKET_TIMEZONE). Default: America/New_York.
	MarketTimezone string `mapstructure:"market_timezone"`

	Sync     Sync     `mapstructure:"sync"`
	Quotes   Quotes   `mapstructure:"quotes"`
	Worker   Worker   `mapstructure:"worker"`
	Sweeper  Sweeper  `mapstructure:"sweeper"`
	ETL      ETL      `mapstructure:"etl"`
	HTTP     HTTP     `mapstructure:"http"`
	Log      Log      `mapstructure:"log"`
	Schedule Schedule `mapstructure:"schedule"`
}

// Sync configures how runs are cut into batches and how batch tasks behave.
type Sync struct {
	// BatchSize is the number of items per batch of a new run
	// (SYNC_BATCH_SIZE). Default: 500.
	BatchSize int `mapstructure:"batch_size"`
	// Partitions is the number of independent chains a new run is split into,
	// so that several workers can work on one run (SYNC_PARTITIONS). Default: 4.
	Partitions int `mapstructure:"partitions"`
	// TaskSlice is how long one task goes on running consecutive batches of
	// its partition, each committed on its own, before it hands over to its
	// successor task; 0 means one batch per task (SYNC_TASK_SLICE). Default: 10s.
	TaskSlice time.Duration `mapstructure:"task_slice"`
	// TaskTimeout bounds one batch task; a task cut off by it runs again from
	// its checkpoint (SYNC_TASK_TIMEOUT). Default: 15m.
	TaskTimeout time.Duration `mapstructure:"task_timeout"`
	// MaxRetry is how many times a failing batch task is retried before its
	// partition and run are failed, and how many times a partition is taken
	// over without a commit in between (SYNC_MAX_RETRY). Default: 10.
	MaxRetry int `mapstructure:"max_retry"`
	// RetryBackoffMax caps the exponential backoff between retries of a
	// failing batch (SYNC_RETRY_BACKOFF_MAX). Default: 2m.
	RetryBackoffMax time.Duration `mapstructure:"retry_backoff_max"`
	// Lease is how long a task's hold on its partition lasts unless renewed;
	// the task renews it every third of it. When a worker dies, its
	// partitions are taken over by new tasks once their leases lapse, so a
	// partition resumes within about Lease plus sweeper.takeover_interval
	// (SYNC_LEASE). Default: 10s.
	Lease time.Duration `mapstructure:"lease"`
	// MaxFailedItems is how many items one attempt of a new run may fail
	// before the run fails early instead of quarantining them all; 0 means
	// no limit (SYNC_MAX_FAILED_ITEMS). Default: 0.
	MaxFailedItems int64 `mapstructure:"max_failed_items"`
	// MaxFailedPercent is the same limit as a percentage of the run's items;
	// 0 means no limit, and with both set the lower one applies
	// (SYNC_MAX_FAILED_PERCENT). Default: 10.
	MaxFailedPercent float64 `mapstructure:"max_failed_percent"`
	// MarketHolidays are the weekdays (YYYY-MM-DD) on which the market is
	// closed: the daily sync of such a date is not started (a scheduled
	// fire skips it, a backfill reports it, a start by hand is refused)
	// (SYNC_MARKET_HOLIDAYS, a YAML or JSON list). Default: none.
	MarketHolidays []string `mapstructure:"market_holidays"`
}

// Quotes configures the quotes provider of the daily stock sync.
type Quotes struct {
	// BaseURL is the provider's base URL (QUOTES_BASE_URL).
	// Default: http://127.0.0.1:8090.
	BaseURL string `mapstructure:"base_url"`
	// APIKey is sent as a bearer token when set (QUOTES_API_KEY). Default: empty.
	APIKey string `mapstructure:"api_key"`
	// RateLimit is the provider's request budget in requests per second,
	// shared by every worker through Redis; 0 means unlimited
	// (QUOTES_RATE_LIMIT). Default: 50.
	RateLimit int `mapstructure:"rate_limit"`
	// Concurrency is the number of requests in flight per batch
	// (QUOTES_CONCURRENCY). Default: 8.
	Concurrency int `mapstructure:"concurrency"`
	// Timeout bounds one request (QUOTES_TIMEOUT). Default: 10s.
	Timeout time.Duration `mapstructure:"timeout"`
	// MaxAttempts is how many times one quote is requested when the provider
	// answers with a transient error before the item fails with that error
	// (QUOTES_MAX_ATTEMPTS). Default: 3.
	MaxAttempts int `mapstructure:"max_attempts"`
	// MaxRetryAfter is the longest Retry-After a request waits out in place;
	// a longer one hands the whole batch back to the queue to run after that
	// delay (QUOTES_MAX_RETRY_AFTER). Default: 5s.
	MaxRetryAfter time.Duration `mapstructure:"max_retry_after"`
}

// Worker configures the asynq server of a worker process.
type Worker struct {
	// Concurrency is the number of tasks one worker process runs at once
	// (WORKER_CONCURRENCY). Default: 10.
	Concurrency int `mapstructure:"concurrency"`
	// TaskCheckInterval is how long an idle worker waits before it polls
	// Redis again for a task, and so how late a run's first task or a
	// chain's successor may start (WORKER_TASK_CHECK_INTERVAL). Default:
	// 100ms (asynq's 1s delayed every run's start by up to a second, for an
	// idle cost of 1.1 % of a core instead of 0.47 %).
	TaskCheckInterval time.Duration `mapstructure:"task_check_interval"`
	// DelayedTaskCheckInterval is how often a worker moves tasks whose retry
	// delay is over back onto the queue; it bounds how soon a retried batch
	// (after a failure, a rate limit or a shutdown) runs again
	// (WORKER_DELAYED_TASK_CHECK_INTERVAL). Default: 1s.
	DelayedTaskCheckInterval time.Duration `mapstructure:"delayed_task_check_interval"`
	// ShutdownTimeout is how long a stopping worker waits for its handlers,
	// which stop at once on shutdown, before it gives up on them
	// (WORKER_SHUTDOWN_TIMEOUT). Default: 10s.
	ShutdownTimeout time.Duration `mapstructure:"shutdown_timeout"`
}

// minRetention is the shortest sweeper.retention other than 0.
const minRetention = 48 * time.Hour

// Sweeper configures the periodic sweep that puts lost chains back on the
// queue, the takeover of lapsed leases, and the prune of old runs.
type Sweeper struct {
	// Interval is the time between sweeps; one worker at a time sweeps
	// (SWEEPER_INTERVAL). Default: 15s.
	Interval time.Duration `mapstructure:"interval"`
	// TakeoverInterval is the time between takeover passes, which hand each
	// partition whose lease lapsed to a new task; any worker runs them
	// (SWEEPER_TAKEOVER_INTERVAL). Default: 2s.
	TakeoverInterval time.Duration `mapstructure:"takeover_interval"`
	// Retention is how long a run is kept after it ended: as it starts and
	// then hourly, one worker at a time deletes the runs that ended longer
	// ago and that nothing will take up again (the completed and cancelled
	// ones, and the failed or timed-out ones a newer generation replaced),
	// with their partitions, items, ledger, attempts and rejected records,
	// and the kick-off records as old; the rows the runs loaded stay. A
	// deleted run is forgotten: starting its job and key again starts a new
	// run. 0 keeps runs for ever (SWEEPER_RETENTION). Default: 2160h (90 days).
	Retention time.Duration `mapstructure:"retention"`
}

// ETL configures the ETL page pulls.
type ETL struct {
	// JobsFile is the jobs file that declares the ETL jobs (ETL_JOBS_FILE,
	// --jobs). A jobs file that does not exist at the default path means no
	// ETL jobs; one named otherwise must exist. Default: configs/jobs.yaml.
	JobsFile string `mapstructure:"jobs_file"`
	// DefaultTimeoutSeconds is the time budget of one attempt of a run of a
	// job whose definition sets no timeout: an attempt that uses it up stops
	// the run timed_out, resumable with retry (ETL_DEFAULT_TIMEOUT_SECONDS).
	// Default: 300.
	DefaultTimeoutSeconds int `mapstructure:"default_timeout_seconds"`
}

// DefaultTimeout returns DefaultTimeoutSeconds as a duration.
func (e ETL) DefaultTimeout() time.Duration {
	return time.Duration(e.DefaultTimeoutSeconds) * time.Second
}

// HTTP configures the worker's admin listener.
type HTTP struct {
	// Addr is the address the worker serves its admin HTTP on (health,
	// readiness, the runs API, asynqmon, metrics, the dashboard); empty
	// turns it off. A worker that finds it taken (another worker on the
	// same host) serves none and says so. An address beyond loopback
	// needs AdminToken or AllowPublic (HTTP_ADDR). Default: 127.0.0.1:8080.
	Addr string `mapstructure:"addr"`
	// AdminToken is the secret every admin route but /healthz and /readyz
	// requires when it is set: as a bearer token, the password of basic
	// auth, or through the login form. Empty means no authentication and a
	// read-only asynqmon. It is never logged nor put in an error; at least
	// 16 characters (ADMIN_TOKEN). Default: empty.
	AdminToken string `mapstructure:"admin_token"`
	// AllowPublic lets Addr be beyond loopback without AdminToken, serving
	// the admin HTTP to anyone who can reach it (HTTP_ALLOW_PUBLIC).
	// Default: false.
	AllowPublic bool `mapstructure:"allow_public"`
	// Pprof serves Go's profiles (net/http/pprof) under /debug/pprof/,
	// behind the admin token like every other admin route, so that a
	// running worker can be profiled without a restart (HTTP_PPROF).
	// Default: true.
	Pprof bool `mapstructure:"pprof"`
	// TrustedProxies are the addresses (IPs, or CIDRs as narrow as can be,
	// such as 10.0.3.17 or 10.0.3.0/28) of every reverse proxy in front of
	// the admin HTTP: for a request from one of them, the client is the
	// last address of X-Forwarded-For that is not a trusted proxy, so that
	// the wrong-token throttle counts each client behind the proxy on its
	// own rather than all of them as one. Any host in the list can write
	// that header and pass for whom it likes; from any other address the
	// header is ignored (HTTP_TRUSTED_PROXIES, a YAML or JSON list; quote
	// IPv6 addresses there). Default: none.
	TrustedProxies []string `mapstructure:"trusted_proxies"`
}

// Proxies returns TrustedProxies as prefixes (an IP is a prefix of its
// whole length); Validate has checked them.
func (h HTTP) Proxies() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range h.TrustedProxies {
		if p, err := parseProxy(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// parseProxy parses a trusted proxy's address: an IP, or a CIDR, without a
// zone; an IPv4-mapped one as the IPv4 it maps (as the throttle reads the
// addresses it meets). A prefix of length 0 would trust every peer's
// X-Forwarded-For, and is refused.
func parseProxy(s string) (netip.Prefix, error) {
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return netip.Prefix{}, err
		}
		if ip := p.Addr(); ip.Is4In6() {
			if p.Bits() < 96 {
				return netip.Prefix{}, errors.New("an IPv4-mapped prefix needs at least 96 bits")
			}
			p = netip.PrefixFrom(ip.Unmap(), p.Bits()-96)
		}
	} else {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		if ip.Zone() != "" {
			return netip.Prefix{}, errors.New("an address with a zone")
		}
		ip = ip.Unmap()
		p = netip.PrefixFrom(ip, ip.BitLen())
	}
	if p.Bits() == 0 {
		return netip.Prefix{}, errors.New("a prefix of length 0 would trust every peer")
	}
	return p.Masked(), nil
}

// minAdminToken is the shortest admin token accepted: the token is the
// only thing between the network and the controls of every run.
const minAdminToken = 16

// CheckExposure returns an error when Addr serves beyond loopback without
// a token and AllowPublic does not allow it. The error names the keys and
// their variables, never the token.
func (h HTTP) CheckExposure() error {
	if h.Addr == "" || h.AdminToken != "" || h.AllowPublic || Loopback(h.Addr) {
		return nil
	}
	return fmt.Errorf("http.addr (HTTP_ADDR) %q serves the admin HTTP beyond loopback without a token: "+
		"set http.admin_token (ADMIN_TOKEN), bind a loopback address such as 127.0.0.1:8080, "+
		"or set http.allow_public (HTTP_ALLOW_PUBLIC=true) to serve it open on purpose", h.Addr)
}

// Loopback reports whether the listen address addr (host:port) binds
// loopback only: its host is localhost, 127.0.0.0/8 or ::1. An empty host
// (":8080"), an unspecified address (0.0.0.0, ::) and any other name bind
// beyond loopback.
func Loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Log configures the structured logger.
type Log struct {
	// Level is debug, info, warn or error (LOG_LEVEL). Default: info.
	Level string `mapstructure:"level"`
	// Format is auto, text or json (LOG_FORMAT). auto writes text to a
	// terminal and JSON to anything else (a container's log, a file, a
	// pipe). Default: auto.
	Format string `mapstructure:"format"`
}

// Schedule configures the scheduler: the cron entries that start runs, and
// the election of the one worker that fires them.
type Schedule struct {
	// PollInterval is how often a worker that is not the scheduler's leader
	// tries to become it, and how often the leader checks that it still is:
	// when the leader dies or loses its Postgres connection, another worker
	// takes over within about this long (SCHEDULE_POLL_INTERVAL). Default: 5s.
	PollInterval time.Duration `mapstructure:"poll_interval"`
	// CatchUp is how far back a worker that becomes the leader looks for a
	// fire it missed (the last one of each entry), so that a fire due while
	// the leader was being replaced is not lost, and for how long the leader
	// enqueues a fire's kick-off again if Redis lost it before a worker ran
	// it; 0 fires nothing that is past (SCHEDULE_CATCH_UP). Default: 10m.
	CatchUp time.Duration `mapstructure:"catch_up"`
	// Entries are the cron entries; in the environment, a YAML or JSON list
	// (SCHEDULE_ENTRIES). Default: none.
	Entries []ScheduleEntry `mapstructure:"entries"`
}

// The overlap policies of a schedule entry.
const (
	// OverlapSkip: a fire while a run of the entry's job for another run
	// key is unfinished (pending, running or paused) starts nothing.
	OverlapSkip = "skip"
	// OverlapAllow: every fire starts its run.
	OverlapAllow = "allow"
)

// ScheduleEntry is one cron entry: at each time its spec names, the
// scheduler starts a run of its job.
type ScheduleEntry struct {
	// Name identifies the entry in logs and in the kick-off task's ID: lower
	// case letters, digits, '.', '_' and '-'; unique.
	Name string `mapstructure:"name" json:"name"`
	// Cron is the spec (see ParseCron), such as
	// "CRON_TZ=America/New_York 30 18 * * 1-5".
	Cron string `mapstructure:"cron" json:"cron"`
	// Job is daily-sync or an ETL job of the jobs file.
	Job string `mapstructure:"job" json:"job"`
	// Params are an ETL job's run parameters; the daily sync takes none (its
	// trading date is the fire's date in the entry's time zone).
	Params map[string]string `mapstructure:"params" json:"params,omitempty"`
	// Overlap is skip (the default) or allow.
	Overlap string `mapstructure:"overlap" json:"overlap,omitempty"`
	// Unknown collects keys an entry does not have, to name them in errors.
	Unknown map[string]any `mapstructure:",remain" json:"-"`
}

// OverlapPolicy returns the entry's overlap policy, skip when unset.
func (e ScheduleEntry) OverlapPolicy() string {
	if e.Overlap == "" {
		return OverlapSkip
	}
	return e.Overlap
}

// cronParser parses schedule specs: five fields (minute hour day month
// weekday), or six with a leading seconds field, or a descriptor such as
// @daily or @every 10m; with an optional CRON_TZ= or TZ= time zone prefix.
var cronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour |
	cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ParseCron parses a schedule spec: the one parser of them, so that what
// the configuration accepts is what the scheduler runs. A spec without a
// time zone prefix has the location of the time given to its Next.
func ParseCron(spec string) (cron.Schedule, error) {
	spec = strings.TrimSpace(spec)
	if strings.HasPrefix(spec, "TZ=") || strings.HasPrefix(spec, "CRON_TZ=") {
		// The parser slices the zone up to the first space, and panics
		// when there is none.
		if !strings.Contains(spec, " ") {
			return nil, fmt.Errorf("%q has a time zone and no schedule after it", spec)
		}
	}
	s, err := cronParser.Parse(spec)
	if err != nil {
		return nil, err
	}
	if s.Next(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)).IsZero() {
		// Such as "0 0 30 2 *": a date that never comes.
		return nil, fmt.Errorf("%q never fires", spec)
	}
	return s, nil
}

// entryName is the form of a schedule entry's name.
var entryName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// defaultValue is a key and its default value.
type defaultValue struct {
	key   string
	value any
}

// defaults lists every key with its default value; it is the one place the
// defaults live (the doc comments above and configs/worker.yaml repeat them,
// and a test holds the file to them).
var defaults = []defaultValue{
	{"database_url", "postgres://postgres@127.0.0.1:5432/syncworker?sslmode=disable"},
	{"redis_url", "redis://127.0.0.1:6379/0"},
	{"market_timezone", "America/New_York"},
	{"sync.batch_size", 500},
	{"sync.partitions", 4},
	{"sync.task_slice", "10s"},
	{"sync.task_timeout", "15m"},
	{"sync.max_retry", 10},
	{"sync.retry_backoff_max", "2m"},
	{"sync.lease", "10s"},
	{"sync.max_failed_items", 0},
	{"sync.max_failed_percent", 10},
	{"sync.market_holidays", []any{}},
	{"quotes.base_url", "http://127.0.0.1:8090"},
	{"quotes.api_key", ""},
	{"quotes.rate_limit", 50},
	{"quotes.concurrency", 8},
	{"quotes.timeout", "10s"},
	{"quotes.max_attempts", 3},
	{"quotes.max_retry_after", "5s"},
	{"worker.concurrency", 10},
	{"worker.task_check_interval", "100ms"},
	{"worker.delayed_task_check_interval", "1s"},
	{"worker.shutdown_timeout", "10s"},
	{"sweeper.interval", "15s"},
	{"sweeper.takeover_interval", "2s"},
	{"sweeper.retention", "2160h"},
	{"etl.jobs_file", "configs/jobs.yaml"},
	{"etl.default_timeout_seconds", 300},
	{"http.addr", "127.0.0.1:8080"},
	{"http.admin_token", ""},
	{"http.allow_public", false},
	{"http.pprof", true},
	{"http.trusted_proxies", []any{}},
	{"log.level", "info"},
	{"log.format", "auto"},
	{"schedule.poll_interval", "5s"},
	{"schedule.catch_up", "10m"},
	{"schedule.entries", []any{}},
}

// envNames holds the keys whose variable is not the rule's: the admin
// token is ADMIN_TOKEN, the name operators know, not HTTP_ADMIN_TOKEN.
var envNames = map[string]string{"http.admin_token": "ADMIN_TOKEN"}

// secretKeys are the keys whose values are secrets, which no error repeats.
var secretKeys = map[string]bool{"quotes.api_key": true, "http.admin_token": true}

// EnvName returns the environment variable that sets key: the key in upper
// case with dots as underscores (sync.batch_size is SYNC_BATCH_SIZE), but
// ADMIN_TOKEN for http.admin_token.
func EnvName(key string) string {
	if name, ok := envNames[key]; ok {
		return name
	}
	return strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// Options say where Load finds its inputs besides the environment.
type Options struct {
	// File is the configuration file; empty means $SYNCWORKER_CONFIG, else
	// configs/worker.yaml when it exists, else none.
	File string
	// Flags are the command-line flags, and FlagKeys maps a flag's name to
	// the key it overrides. Only flags the user set override anything.
	Flags    *pflag.FlagSet
	FlagKeys map[string]string
}

// Load reads the configuration and validates it. The error names every key
// that is wrong.
func Load(opts Options) (Config, error) {
	v := newViper()
	for _, d := range defaults {
		if err := v.BindEnv(d.key, EnvName(d.key)); err != nil {
			return Config{}, fmt.Errorf("bind %s: %w", d.key, err)
		}
	}
	// Viper takes an empty variable for an unset one, but an empty
	// HTTP_ADDR means no admin HTTP: without this the default address
	// would win, and a configuration without it would not pass through
	// Environ to a child process (several workers on one host).
	if addr, ok := os.LookupEnv("HTTP_ADDR"); ok && addr == "" {
		v.Set("http.addr", "")
	}

	file, explicit := opts.File, opts.File != ""
	if !explicit {
		file, explicit = os.LookupEnv(FileEnv)
	}
	if !explicit {
		if _, err := os.Stat(DefaultFile); err == nil {
			file = DefaultFile
		}
	}
	if file != "" {
		v.SetConfigFile(file)
		v.SetConfigType("yaml")
		if err := v.ReadInConfig(); err != nil {
			return Config{}, fmt.Errorf("config file %s: %w", file, err)
		}
	}

	fromFlag := map[string]string{}
	for name, key := range opts.FlagKeys {
		f := opts.Flags.Lookup(name)
		if f == nil {
			return Config{}, fmt.Errorf("flag --%s for %s is not defined", name, key)
		}
		if f.Changed {
			v.Set(key, f.Value.String())
			fromFlag[key] = name
		}
	}

	o := origin{v: v, file: file, fromFlag: fromFlag}
	cfg, err := unmarshal(v)
	if err != nil {
		err = o.decodeError(err)
	}
	if err := errors.Join(o.unknownKeys(), err); err != nil {
		return Config{}, err
	}
	if err := cfg.validate(o); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// Default returns the configuration with every key at its default, ignoring
// the environment and any file.
func Default() Config {
	cfg, err := unmarshal(newViper())
	if err != nil {
		panic(fmt.Sprintf("config defaults do not decode: %v", err))
	}
	return cfg
}

func newViper() *viper.Viper {
	v := viper.New()
	for _, d := range defaults {
		v.SetDefault(d.key, d.value)
	}
	return v
}

// unmarshal decodes v strictly: a value of the wrong type is an error (see
// strictTypes). Unknown keys are Load's to find (see origin.unknownKeys).
func unmarshal(v *viper.Viper) (Config, error) {
	var cfg Config
	err := v.Unmarshal(&cfg, func(dc *mapstructure.DecoderConfig) {
		dc.DecodeHook = strictTypes
	})
	return cfg, err
}

var durationType = reflect.TypeFor[time.Duration]()

// strictTypes is the decode hook that refuses a value of the wrong type
// rather than converting it as viper would: 10.7 truncated to 10, -0.5 to 0,
// true read as 1, a bare 10 taken as 10ns for a duration, a number made the
// text of an API key. Text (the environment, flags, a quoted YAML value) is
// parsed strictly.
func strictTypes(from, to reflect.Value) (any, error) {
	if !from.IsValid() {
		return nil, nil
	}
	data := from.Interface()
	switch {
	case to.Type() == durationType:
		switch v := data.(type) {
		case time.Duration:
			return v, nil
		case string:
			d, err := time.ParseDuration(v)
			if err != nil {
				return nil, fmt.Errorf("is %q: want a duration such as 500ms, 10s or 1m30s", v)
			}
			return d, nil
		case int:
			if v == 0 { // as time.ParseDuration takes "0"
				return time.Duration(0), nil
			}
		}
		return nil, fmt.Errorf("is %v: want a duration with its unit, such as 10s", data)
	case to.Kind() == reflect.Int:
		switch from.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			return from.Int(), nil
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			if from.Uint() > math.MaxInt {
				return nil, fmt.Errorf("is %v: too large", data)
			}
			return from.Uint(), nil
		case reflect.String:
			n, err := strconv.Atoi(from.String())
			if err != nil {
				return nil, fmt.Errorf("is %q: want a whole number", data)
			}
			return n, nil
		case reflect.Float32, reflect.Float64:
			if f := from.Float(); f == math.Trunc(f) && math.Abs(f) > math.MaxInt {
				return nil, fmt.Errorf("is %v: too large", data)
			}
		}
		return nil, fmt.Errorf("is %v: want a whole number", data)
	case to.Kind() == reflect.Bool:
		switch v := data.(type) {
		case bool:
			return v, nil
		case string:
			b, err := strconv.ParseBool(v)
			if err != nil {
				return nil, fmt.Errorf("is %q: want true or false", v)
			}
			return b, nil
		}
		return nil, fmt.Errorf("is %v: want true or false", data)
	case to.Kind() == reflect.Slice && from.Kind() == reflect.String:
		// A list from the environment, such as SCHEDULE_ENTRIES.
		var list []any
		if err := yaml.Unmarshal([]byte(from.String()), &list); err != nil {
			return nil, fmt.Errorf("is not a YAML or JSON list: %v", err)
		}
		return list, nil
	case to.Kind() == reflect.String && from.Type() == reflect.TypeFor[time.Time]():
		// YAML reads an unquoted date (market_holidays: [2026-12-25]) as
		// a time; it is the date that was written. A timestamp counts only
		// at midnight in its own offset, as that date: converted to UTC,
		// 2026-12-24T23:00:00-01:00 would read as the next day, and
		// 2026-12-25T00:00:00+01:00 as the day before.
		if t := data.(time.Time); t.Equal(time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, t.Location())) {
			return t.Format(time.DateOnly), nil
		}
		return nil, fmt.Errorf("is %v: want text (in YAML, quote it)", data)
	case to.Kind() == reflect.String && from.Kind() != reflect.String:
		return nil, fmt.Errorf("is %v: want text (in YAML, quote it)", data)
	case to.Kind() == reflect.Struct && from.Kind() != reflect.Map:
		return nil, fmt.Errorf("is %v: want a section of keys", data)
	}
	return data, nil
}

// origin knows where the value of each key came from, to name it in errors:
// the flag, else the environment variable; and the file, when it came from
// there.
type origin struct {
	v        *viper.Viper
	file     string
	fromFlag map[string]string
}

// errorf returns the error of key: "config: key (VAR or --flag) reason", or
// "config file F: ..." for a value from the file.
// A key inside a list, such as schedule.entries[0].cron, comes from where
// the list does.
func (o origin) errorf(key, format string, args ...any) error {
	base, _, _ := strings.Cut(key, "[")
	where, source := "config", " ("+EnvName(base)+")"
	if !slices.ContainsFunc(defaults, func(d defaultValue) bool { return d.key == base }) {
		source = "" // a section, such as sync
	}
	if flag, ok := o.fromFlag[base]; ok {
		source = " (--" + flag + ")"
	} else if os.Getenv(EnvName(base)) == "" && o.v != nil && o.file != "" && o.v.InConfig(base) {
		where = "config file " + o.file
	}
	return fmt.Errorf("%s: %s%s %s", where, key, source, fmt.Sprintf(format, args...))
}

// unknownKeys returns an error naming every key the file sets that Config
// does not have (the environment and flags only set known keys), so that a
// misspelt key does not pass unnoticed.
func (o origin) unknownKeys() error {
	known := map[string]bool{}
	sections := map[string][]string{}
	for _, d := range defaults {
		known[d.key] = true
		if section, leaf, ok := strings.Cut(d.key, "."); ok {
			sections[section] = append(sections[section], leaf)
		}
	}
	var errs []error
	keys := o.v.AllKeys()
	slices.Sort(keys)
	for _, key := range keys {
		if known[key] || sections[key] != nil || known[key[:max(strings.LastIndex(key, "."), 0)]] {
			continue // known, or a section or a known key set to a map, which decoding names
		}
		hint := ""
		if section, _, ok := strings.Cut(key, "."); ok && sections[section] != nil {
			hint = fmt.Sprintf(" (%s has %s)", section, strings.Join(sections[section], ", "))
		}
		errs = append(errs, fmt.Errorf("config file %s: unknown key %s%s", o.file, key, hint))
	}
	return errors.Join(errs...)
}

// decodeError turns a decoding error into one error per bad key, each
// naming the key, its variable or flag, and what is wrong.
func (o origin) decodeError(err error) error {
	var errs []error
	var walk func(error)
	walk = func(err error) {
		switch e := err.(type) {
		case interface{ Unwrap() []error }:
			for _, inner := range e.Unwrap() {
				walk(inner)
			}
		case *mapstructure.DecodeError:
			if inner := e.Unwrap(); errors.As(inner, new(*mapstructure.DecodeError)) {
				walk(inner)
			} else if secretKeys[e.Name()] {
				// The value is a secret: the message must not repeat it.
				errs = append(errs, o.errorf(e.Name(), "must be text (in YAML, quote it)"))
			} else {
				errs = append(errs, o.errorf(e.Name(), "%v", inner))
			}
		default:
			if inner := errors.Unwrap(err); inner != nil {
				walk(inner)
			}
		}
	}
	walk(err)
	if len(errs) == 0 {
		return fmt.Errorf("config: %w", err)
	}
	return errors.Join(errs...)
}

// Validate checks every key and returns one error naming each bad key.
func (c Config) Validate() error { return c.validate(origin{}) }

// validate is Validate naming, for each key, where its value came from.
func (c Config) validate(o origin) error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, o.errorf(key, format, args...))
	}
	checkURL := func(key, raw string, schemes ...string) {
		u, err := url.Parse(raw)
		if err != nil {
			bad(key, "is not a URL: %v", err)
			return
		}
		for _, s := range schemes {
			if u.Scheme == s && u.Host != "" {
				return
			}
		}
		bad(key, "must be a %s URL with a host, got %q", strings.Join(schemes, " or "), raw)
	}
	intRange := func(key string, v, lo, hi int) {
		if v < lo || v > hi {
			bad(key, "must be between %d and %d, got %d", lo, hi, v)
		}
	}
	durRange := func(key string, v, lo, hi time.Duration) {
		if v < lo || v > hi {
			bad(key, "must be between %s and %s, got %s", lo, hi, v)
		}
	}

	checkURL("database_url", c.DatabaseURL, "postgres", "postgresql")
	checkURL("redis_url", c.RedisURL, "redis", "rediss")
	if _, err := time.LoadLocation(c.MarketTimezone); err != nil || c.MarketTimezone == "" {
		bad("market_timezone", "must be an IANA time zone such as America/New_York, got %q", c.MarketTimezone)
	}

	intRange("sync.batch_size", c.Sync.BatchSize, 1, 100_000)
	intRange("sync.partitions", c.Sync.Partitions, 1, 1024)
	durRange("sync.task_slice", c.Sync.TaskSlice, 0, time.Hour)
	durRange("sync.task_timeout", c.Sync.TaskTimeout, time.Second, 24*time.Hour)
	intRange("sync.max_retry", c.Sync.MaxRetry, 0, 1000)
	durRange("sync.retry_backoff_max", c.Sync.RetryBackoffMax, time.Millisecond, 24*time.Hour)
	durRange("sync.lease", c.Sync.Lease, 300*time.Millisecond, time.Hour)
	if c.Sync.MaxFailedItems < 0 {
		bad("sync.max_failed_items", "must be 0 (no limit) or more, got %d", c.Sync.MaxFailedItems)
	}
	if p := c.Sync.MaxFailedPercent; p < 0 || p > 100 || p != p {
		bad("sync.max_failed_percent", "must be between 0 (no limit) and 100, got %g", p)
	}
	for i, d := range c.Sync.MarketHolidays {
		if _, err := time.Parse(time.DateOnly, d); err != nil {
			bad(fmt.Sprintf("sync.market_holidays[%d]", i), "must be a date YYYY-MM-DD, got %q", d)
		}
	}
	if c.Sync.TaskSlice >= c.Sync.TaskTimeout {
		bad("sync.task_slice", "must be shorter than sync.task_timeout (%s), got %s", c.Sync.TaskTimeout, c.Sync.TaskSlice)
	}

	checkURL("quotes.base_url", c.Quotes.BaseURL, "http", "https")
	if !bearerSafe(c.Quotes.APIKey) {
		// The key itself stays out of the message.
		bad("quotes.api_key", "must not contain spaces or control characters: it is sent as a bearer token")
	}
	intRange("quotes.rate_limit", c.Quotes.RateLimit, 0, 1_000_000)
	intRange("quotes.concurrency", c.Quotes.Concurrency, 1, 1024)
	durRange("quotes.timeout", c.Quotes.Timeout, time.Millisecond, 10*time.Minute)
	intRange("quotes.max_attempts", c.Quotes.MaxAttempts, 1, 100)
	durRange("quotes.max_retry_after", c.Quotes.MaxRetryAfter, 0, time.Hour)

	intRange("worker.concurrency", c.Worker.Concurrency, 1, 10_000)
	durRange("worker.task_check_interval", c.Worker.TaskCheckInterval, time.Millisecond, time.Minute)
	durRange("worker.delayed_task_check_interval", c.Worker.DelayedTaskCheckInterval, time.Millisecond, time.Minute)
	durRange("worker.shutdown_timeout", c.Worker.ShutdownTimeout, 0, time.Hour)

	durRange("sweeper.interval", c.Sweeper.Interval, 10*time.Millisecond, time.Hour)
	durRange("sweeper.takeover_interval", c.Sweeper.TakeoverInterval, 10*time.Millisecond, time.Hour)
	if r := c.Sweeper.Retention; r != 0 && r < minRetention {
		// A kick-off's record must outlive the scheduler's catch-up (at most
		// 24h) and Redis's mark of its enqueue (25h), or a fire handled
		// already could be started again. (Claims are kept longer anyway.)
		bad("sweeper.retention", "must be 0 (keep runs for ever) or at least %s, got %s", minRetention, r)
	}

	if c.ETL.JobsFile == "" {
		bad("etl.jobs_file", "must name the jobs file, such as configs/jobs.yaml")
	}
	intRange("etl.default_timeout_seconds", c.ETL.DefaultTimeoutSeconds, 1, 7*24*3600)
	if c.HTTP.Addr != "" {
		if _, port, err := net.SplitHostPort(c.HTTP.Addr); err != nil || port == "" {
			bad("http.addr", "must be host:port (such as 127.0.0.1:8080 or :8080), or empty to serve no admin HTTP, got %q", c.HTTP.Addr)
		} else if err := c.HTTP.CheckExposure(); err != nil {
			errs = append(errs, fmt.Errorf("config: %w", err))
		}
	}
	for i, p := range c.HTTP.TrustedProxies {
		if _, err := parseProxy(p); err != nil {
			bad(fmt.Sprintf("http.trusted_proxies[%d]", i), "must be a proxy's IP or CIDR, such as 10.0.3.17 or 10.0.3.0/28, got %q: %v", p, err)
		}
	}
	if t := c.HTTP.AdminToken; t != "" {
		// The token itself stays out of every message.
		if len(t) < minAdminToken {
			bad("http.admin_token", "must be at least %d characters, or empty for no authentication", minAdminToken)
		}
		if !bearerSafe(t) {
			bad("http.admin_token", "must not contain spaces or control characters: it is sent as a bearer token")
		}
	}

	durRange("schedule.poll_interval", c.Schedule.PollInterval, 100*time.Millisecond, time.Hour)
	durRange("schedule.catch_up", c.Schedule.CatchUp, 0, 24*time.Hour)
	c.Schedule.validateEntries(bad)

	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "must be debug, info, warn or error, got %q", c.Log.Level)
	}
	switch c.Log.Format {
	case "auto", "text", "json":
	default:
		bad("log.format", "must be auto, text or json, got %q", c.Log.Format)
	}
	return errors.Join(errs...)
}

// bearerSafe reports whether s can be sent as a bearer token: no spaces
// nor control characters.
func bearerSafe(s string) bool {
	return !strings.ContainsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) })
}

// validateEntries checks each schedule entry, calling bad for each wrong key
// (such as schedule.entries[0].cron). Whether its job exists is the
// worker's to check, which reads the jobs file.
func (s Schedule) validateEntries(bad func(key, format string, args ...any)) {
	names := map[string]int{}
	for i, e := range s.Entries {
		key := func(leaf string) string { return fmt.Sprintf("schedule.entries[%d].%s", i, leaf) }
		for _, k := range slices.Sorted(maps.Keys(e.Unknown)) {
			bad(key(k), "is not a key of a schedule entry (it has name, cron, job, params, overlap)")
		}
		switch first, dup := names[e.Name]; {
		case !entryName.MatchString(e.Name):
			bad(key("name"), "must be 1 to 64 lower case letters, digits, '.', '_' or '-', got %q", e.Name)
		case dup:
			bad(key("name"), "%q is the name of schedule.entries[%d] too; names must be unique", e.Name, first)
		default:
			names[e.Name] = i
		}
		if e.Cron == "" {
			bad(key("cron"), "must be a cron spec, such as \"CRON_TZ=America/New_York 30 18 * * 1-5\"")
		} else if _, err := ParseCron(e.Cron); err != nil {
			bad(key("cron"), "is not a cron spec (minute hour day month weekday, an optional leading seconds field, "+
				"or @every 1h; with an optional CRON_TZ= prefix): %v", err)
		}
		if e.Job == "" || strings.ContainsFunc(e.Job, unicode.IsSpace) {
			bad(key("job"), "must name a job (daily-sync or an ETL job of the jobs file), got %q", e.Job)
		}
		for _, k := range slices.Sorted(maps.Keys(e.Params)) {
			if e.Params[k] == "" {
				bad(key("params."+k), "must have a value")
			}
		}
		if e.Overlap != "" && e.Overlap != OverlapSkip && e.Overlap != OverlapAllow {
			bad(key("overlap"), "must be %s (the default) or %s, got %q", OverlapSkip, OverlapAllow, e.Overlap)
		}
	}
}

// Location returns the market time zone; Validate has checked that it loads,
// so an error here falls back to UTC rather than failing.
func (c Config) Location() *time.Location {
	loc, err := time.LoadLocation(c.MarketTimezone)
	if err != nil {
		return time.UTC
	}
	return loc
}

// SlogLevel returns the configured level as slog's.
func (l Log) SlogLevel() slog.Level {
	switch l.Level {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

// NewLogger returns the logger the configuration asks for, writing to w.
// With format auto it writes text when w is a terminal and JSON otherwise.
func (l Log) NewLogger(w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: l.SlogLevel()}
	if l.formatFor(isTerminal(w)) == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// formatFor returns the format, text or json, of a logger writing to a
// terminal or not.
func (l Log) formatFor(terminal bool) string {
	if l.Format != "auto" {
		return l.Format
	}
	if terminal {
		return "text"
	}
	return "json"
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Fd() uintptr })
	return ok && term.IsTerminal(int(f.Fd()))
}

// Environ returns the configuration as environment variables, KEY=value, one
// per key: what a process started with them loads as this configuration.
func (c Config) Environ() []string {
	var out []string
	var walk func(prefix string, v reflect.Value)
	walk = func(prefix string, v reflect.Value) {
		for i := range v.NumField() {
			f := v.Type().Field(i)
			key := f.Tag.Get("mapstructure")
			if prefix != "" {
				key = prefix + "." + key
			}
			fv := v.Field(i)
			if fv.Kind() == reflect.Struct {
				walk(key, fv)
				continue
			}
			if fv.Kind() == reflect.Slice {
				// A list goes as JSON, which Load reads back (see strictTypes).
				b, _ := json.Marshal(fv.Interface()) // cannot fail: text, maps and lists of them
				if fv.Len() == 0 {
					b = []byte("[]")
				}
				out = append(out, fmt.Sprintf("%s=%s", EnvName(key), b))
				continue
			}
			out = append(out, fmt.Sprintf("%s=%v", EnvName(key), fv.Interface()))
		}
	}
	walk("", reflect.ValueOf(c))
	return out
}
