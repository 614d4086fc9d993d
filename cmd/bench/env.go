package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/syncworker/syncworker/internal/db"
	"github.com/syncworker/syncworker/internal/testenv"
)

// recreateDatabase drops the benchmark's database on the server of
// serverURL, creates and migrates it again, and returns its URL.
func recreateDatabase(ctx context.Context, serverURL, name string) (string, error) {
	if !strings.Contains(name, "bench") {
		return "", fmt.Errorf("--database %q: it is dropped and created again, so its name must contain 'bench'", name)
	}
	u, err := db.RecreateDatabase(ctx, serverURL, name)
	if err != nil {
		return "", fmt.Errorf("--database-url: %w", err)
	}
	return u, nil
}

// claimRedis claims Redis database db of the server of serverURL in the
// tests' allocation and flushes it (testenv.ClaimRedisFlushed); it returns
// its URL and release, which flushes it again and frees it.
func claimRedis(ctx context.Context, serverURL string, db int) (string, func(), error) {
	if db < 1 {
		return "", nil, fmt.Errorf("--redis-db must be 1 or more (database 0 holds the allocation locks), got %d", db)
	}
	u, err := url.Parse(serverURL)
	if err != nil {
		return "", nil, fmt.Errorf("--redis-url: %w", err)
	}
	u.Path = "/" + strconv.Itoa(db)
	opt, err := redis.ParseURL(u.String())
	if err != nil {
		return "", nil, fmt.Errorf("--redis-url: %w", err)
	}
	release, err := testenv.ClaimRedisFlushed(ctx, opt, "bench/"+strconv.Itoa(os.Getpid()))
	if err != nil {
		return "", nil, err
	}
	return u.String(), release, nil
}

// Machine describes where the benchmark ran.
type Machine struct {
	CPU                 string
	Cores               int
	RAM                 string
	Go, Postgres, Redis string
	LoadStart, LoadEnd  string
}

// describeMachine reads the CPU, memory and versions.
func describeMachine(ctx context.Context, pool *pgxpool.Pool, rdb *redis.Client) Machine {
	m := Machine{Cores: runtime.NumCPU(), Go: runtime.Version(), CPU: "unknown", RAM: "unknown",
		Postgres: "unknown", Redis: "unknown"}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if n, err := statusKB("/proc/meminfo", "MemTotal:"); err == nil {
		m.RAM = fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	}
	var v string
	if err := pool.QueryRow(ctx, "SHOW server_version").Scan(&v); err == nil {
		m.Postgres = v
	}
	if info, err := rdb.Info(ctx, "server").Result(); err == nil {
		for line := range strings.SplitSeq(info, "\n") {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
				m.Redis = rest
			}
		}
	}
	m.LoadStart = loadAvg()
	return m
}

// loadAvg returns the 1, 5 and 15 minute load averages.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
