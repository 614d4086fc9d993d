// Package testenv gives tests their own piece of the real Postgres and Redis:
// a fresh, migrated schema per test and a Redis database number per test from
// a small allocator, both removed when the test ends. A service that does not
// answer fails the test with a message that says how to get one; nothing is
// ever skipped.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/syncworker/syncworker/internal/db"
)

// Environment variables that point the tests at their services.
const (
	DatabaseURLEnv = "TEST_DATABASE_URL"
	RedisURLEnv    = "TEST_REDIS_URL"
)

const (
	defaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/syncworker_test?sslmode=disable"
	defaultRedisURL    = "redis://127.0.0.1:6379/0"
	hint               = "start one, or run the tests through `make test` (scripts/dev), which starts throwaway services where none answer"
)

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// DB is a test's own Postgres schema, migrated to the newest version.
type DB struct {
	// Pool is connected with search_path set to Schema.
	Pool *pgxpool.Pool
	// URL connects to the same schema, for worker processes and tools.
	URL string
	// Schema is the schema's name.
	Schema string
}

var createDBOnce sync.Once
var createDBErr error

// Postgres creates a migrated schema for t and drops it when t ends.
func Postgres(t testing.TB) *DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	base := envOr(DatabaseURLEnv, defaultDatabaseURL)
	createDBOnce.Do(func() { createDBErr = db.CreateDatabase(ctx, base) })
	if createDBErr != nil {
		t.Fatalf("postgres at %s (%s) is not usable: %v; %s", redactURL(base), DatabaseURLEnv, createDBErr, hint)
	}

	schema := schemaName(t.Name())
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("postgres at %s (%s) does not answer: %v; %s", redactURL(base), DatabaseURLEnv, err, hint)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
		t.Fatalf("create schema %s: %v", schema, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})

	u, err := db.WithParam(base, "search_path", schema)
	if err != nil {
		t.Fatalf("%s: %v", DatabaseURLEnv, err)
	}
	if _, err := db.Migrate(ctx, u, 0); err != nil {
		t.Fatalf("migrate schema %s: %v", schema, err)
	}
	pool, err := db.Open(ctx, u, 0)
	if err != nil {
		t.Fatalf("open pool on schema %s: %v", schema, err)
	}
	t.Cleanup(pool.Close)
	return &DB{Pool: pool, URL: u, Schema: schema}
}

var nonIdent = regexp.MustCompile(`[^a-z0-9]+`)

func schemaName(testName string) string {
	name := nonIdent.ReplaceAllString(strings.ToLower(testName), "_")
	if len(name) > 40 {
		name = name[:40]
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "t_" + strings.Trim(name, "_") + "_" + hex.EncodeToString(b[:])
}

func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable url)"
	}
	return u.Redacted()
}

// Redis is a test's own Redis database number, empty at the start.
type Redis struct {
	// URL selects the test's database.
	URL string
	// DB is the database number.
	DB int
	// Client is connected to the test's database.
	Client *redis.Client
	// Opt is the same connection for asynq.
	Opt asynq.RedisClientOpt
}

// NewRedis allocates a Redis database for t, flushes it, and frees it (flushed
// again) when t ends. Only that database is ever flushed.
func NewRedis(t testing.TB) *Redis {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	base := envOr(RedisURLEnv, defaultRedisURL)
	opt, err := redis.ParseURL(base)
	if err != nil {
		t.Fatalf("%s: %v", RedisURLEnv, err)
	}
	opt.DB = 0
	admin := redis.NewClient(opt)
	defer admin.Close()
	if err := admin.Ping(ctx).Err(); err != nil {
		t.Fatalf("redis at %s (%s) does not answer: %v; %s", redactURL(base), RedisURLEnv, err, hint)
	}
	n := 16
	if res, err := admin.ConfigGet(ctx, "databases").Result(); err == nil {
		if v, err := strconv.Atoi(res["databases"]); err == nil {
			n = v
		}
	}
	if n < 2 {
		t.Fatalf("redis at %s has %d database(s); the tests need at least 2", redactURL(base), n)
	}

	token := t.Name() + "/" + strconv.Itoa(os.Getpid()) + "/" + strconv.FormatInt(time.Now().UnixNano(), 10)
	var release func()
	dbOpt := *opt
	for release == nil {
		for i := 1; i < n && release == nil; i++ {
			dbOpt.DB = i
			r, ok, err := ClaimRedis(ctx, &dbOpt, token)
			if err != nil {
				t.Fatalf("allocate a redis database: %v", err)
			}
			if ok {
				release = r
			}
		}
		if release != nil {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no free redis database among 1..%d after 2m; raise `databases` in redis.conf", n-1)
		case <-time.After(100 * time.Millisecond):
		}
	}
	dbNum := dbOpt.DB

	client := redis.NewClient(&dbOpt)
	if err := client.FlushDB(ctx).Err(); err != nil {
		t.Fatalf("flush redis db %d: %v", dbNum, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		client.FlushDB(ctx)
		client.Close()
		release()
	})

	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("%s: %v", RedisURLEnv, err)
	}
	u.Path = "/" + strconv.Itoa(dbNum)
	return &Redis{
		URL:    u.String(),
		DB:     dbNum,
		Client: client,
		Opt: asynq.RedisClientOpt{
			Addr:     dbOpt.Addr,
			Username: dbOpt.Username,
			Password: dbOpt.Password,
			DB:       dbNum,
		},
	}
}
