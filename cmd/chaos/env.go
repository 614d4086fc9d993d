package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/syncworker/syncworker/internal/db"
	"github.com/syncworker/syncworker/internal/testenv"
)

// environment is where the command runs its scenario: a database of its own
// on a Postgres server, a Redis database of its own on a Redis server.
type environment struct {
	dbURL, dbName string
	redisURL      string
	redisDB       int
}

// prepare drops and creates the scenario's database and migrates it, claims
// and flushes its Redis database, and sets o's URLs. release flushes the
// Redis database and frees it.
func (e environment) prepare(ctx context.Context, o *Options) (release func(), err error) {
	if !strings.Contains(e.dbName, "chaos") {
		return nil, fmt.Errorf("--database %q: it is dropped and created again, so its name must contain 'chaos'", e.dbName)
	}
	if o.DatabaseURL, err = e.recreateDatabase(ctx); err != nil {
		return nil, err
	}
	if e.redisDB < 1 {
		return nil, fmt.Errorf("--redis-db must be 1 or more (database 0 holds the allocation locks), got %d", e.redisDB)
	}
	u, err := url.Parse(e.redisURL)
	if err != nil {
		return nil, fmt.Errorf("--redis-url: %w", err)
	}
	u.Path = "/" + strconv.Itoa(e.redisDB)
	o.RedisURL = u.String()
	return e.claimRedis(ctx, o.RedisURL)
}

// recreateDatabase drops the scenario's database, creates it, migrates it
// and returns its URL.
func (e environment) recreateDatabase(ctx context.Context) (string, error) {
	u, err := db.RecreateDatabase(ctx, e.dbURL, e.dbName)
	if err != nil {
		return "", fmt.Errorf("--database-url: %w", err)
	}
	return u, nil
}

// claimRedis claims the Redis database of dbURL in the tests' allocation
// (testenv.ClaimRedis), so that neither flushes the other's, and flushes it.
// release flushes it again and frees it.
func (e environment) claimRedis(ctx context.Context, dbURL string) (func(), error) {
	opt, err := redis.ParseURL(dbURL)
	if err != nil {
		return nil, fmt.Errorf("--redis-url: %w", err)
	}
	return testenv.ClaimRedisFlushed(ctx, opt, "chaos/"+strconv.Itoa(os.Getpid()))
}
