// Package db opens syncworker's Postgres pool and applies its schema
// migrations, which it embeds from the migrations directory.
package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	neturl "net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/golang-migrate/migrate/v4"
	pgxmigrate "github.com/golang-migrate/migrate/v4/database/pgx/v5"
	"github.com/golang-migrate/migrate/v4/source/iofs"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/syncworker/syncworker/migrations"
)

// ErrSchemaBehind is returned by CheckSchema when the database has not been
// migrated to the version this binary needs.
var ErrSchemaBehind = errors.New("database schema is behind")

// Open returns a pool connected to url, after checking that the server
// answers. maxConns, when positive and the URL has no pool_max_conns, sizes
// the pool.
func Open(ctx context.Context, url string, maxConns int32) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	if maxConns > 0 && !strings.Contains(url, "pool_max_conns") {
		cfg.MaxConns = maxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to database %s@%s:%d/%s: %w",
			cfg.ConnConfig.User, cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database, err)
	}
	return pool, nil
}

// LatestVersion returns the version of the newest embedded migration.
func LatestVersion() (uint, error) {
	names, err := fs.Glob(migrations.FS, "*.up.sql")
	if err != nil {
		return 0, fmt.Errorf("list migrations: %w", err)
	}
	var versions []uint
	re := regexp.MustCompile(`^(\d+)_`)
	for _, n := range names {
		m := re.FindStringSubmatch(n)
		if m == nil {
			return 0, fmt.Errorf("migration %s is not named NNNNNN_name.up.sql", n)
		}
		v, err := strconv.ParseUint(m[1], 10, 32)
		if err != nil {
			return 0, fmt.Errorf("migration %s: %w", n, err)
		}
		versions = append(versions, uint(v))
	}
	if len(versions) == 0 {
		return 0, errors.New("no migrations embedded")
	}
	return slices.Max(versions), nil
}

// Migrate applies the embedded migrations to the database at url: all
// pending ones when steps is 0, else that many steps up (positive) or down
// (negative). It returns the version the database ends at. Concurrent callers
// are serialised by golang-migrate's advisory lock.
func Migrate(ctx context.Context, url string, steps int) (uint, error) {
	m, closeFn, err := newMigrate(url)
	if err != nil {
		return 0, err
	}
	defer closeFn()

	done := make(chan error, 1)
	go func() {
		if steps == 0 {
			done <- m.Up()
		} else {
			done <- m.Steps(steps)
		}
	}()
	select {
	case err = <-done:
	case <-ctx.Done():
		m.GracefulStop <- true
		err = <-done
		if err == nil {
			err = ctx.Err()
		}
	}
	if err != nil && !errors.Is(err, migrate.ErrNoChange) {
		return 0, fmt.Errorf("migrate: %w", err)
	}
	v, dirty, err := m.Version()
	if errors.Is(err, migrate.ErrNilVersion) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	if dirty {
		return v, fmt.Errorf("schema version %d is dirty: a migration failed half-way; fix it by hand, then force the version", v)
	}
	return v, nil
}

// Version returns the schema version of the database at url (0 when no
// migration was applied) and whether a migration failed half-way.
func Version(ctx context.Context, url string) (version uint, dirty bool, err error) {
	m, closeFn, err := newMigrate(url)
	if err != nil {
		return 0, false, err
	}
	defer closeFn()
	v, dirty, err := m.Version()
	if errors.Is(err, migrate.ErrNilVersion) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("read schema version: %w", err)
	}
	return v, dirty, nil
}

func newMigrate(url string) (*migrate.Migrate, func(), error) {
	connCfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, nil, fmt.Errorf("parse database url: %w", err)
	}
	sqlDB := stdlib.OpenDB(*connCfg)
	driver, err := pgxmigrate.WithInstance(sqlDB, &pgxmigrate.Config{})
	if err != nil {
		sqlDB.Close()
		return nil, nil, fmt.Errorf("open migration driver: %w", err)
	}
	src, err := iofs.New(migrations.FS, ".")
	if err != nil {
		sqlDB.Close()
		return nil, nil, fmt.Errorf("open embedded migrations: %w", err)
	}
	m, err := migrate.NewWithInstance("iofs", src, "pgx5", driver)
	if err != nil {
		sqlDB.Close()
		return nil, nil, fmt.Errorf("init migrations: %w", err)
	}
	return m, func() { m.Close(); sqlDB.Close() }, nil
}

// CheckSchema returns an error wrapping ErrSchemaBehind when the database
// behind pool is not at the newest embedded migration, so that a worker never
// runs against tables it does not know.
func CheckSchema(ctx context.Context, pool *pgxpool.Pool) error {
	want, err := LatestVersion()
	if err != nil {
		return err
	}
	var (
		have  int64
		dirty bool
	)
	err = pool.QueryRow(ctx, `SELECT version, dirty FROM schema_migrations LIMIT 1`).Scan(&have, &dirty)
	switch {
	case isUndefinedTable(err), errors.Is(err, pgx.ErrNoRows):
		have = 0
	case err != nil:
		return fmt.Errorf("read schema version: %w", err)
	}
	if dirty {
		return fmt.Errorf("schema version %d is dirty: a migration failed half-way", have)
	}
	if uint(have) < want {
		return fmt.Errorf("%w: it is at version %d, this binary needs %d; run `worker migrate`", ErrSchemaBehind, have, want)
	}
	return nil
}

// CreateDatabase creates the database that url names when it does not exist,
// connecting to the server's postgres database to do it.
func CreateDatabase(ctx context.Context, url string) error {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return fmt.Errorf("parse database url: %w", err)
	}
	name := cfg.Database
	cfg.Database = "postgres"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("connect to database postgres to create %s: %w", name, err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return fmt.Errorf("look up database %s: %w", name, err)
	}
	if exists {
		return nil
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil && !isDuplicateDatabase(err) {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

// RecreateDatabase drops database name on the server of serverURL (ending
// its sessions), creates it again and migrates it to the latest version; it
// returns its URL. It is for the tools that run on a database of their own
// (cmd/chaos, cmd/bench), never for a database that holds data to keep.
func RecreateDatabase(ctx context.Context, serverURL, name string) (string, error) {
	cfg, err := pgx.ParseConfig(serverURL)
	if err != nil {
		return "", fmt.Errorf("parse database url: %w", err)
	}
	cfg.Database = "postgres"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return "", fmt.Errorf("connect to postgres at %s:%d: %w", cfg.Host, cfg.Port, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return "", fmt.Errorf("drop database %s: %w", name, err)
	}
	u, err := neturl.Parse(serverURL)
	if err != nil {
		return "", errors.New("parse database url: invalid url")
	}
	u.Path = "/" + name
	if err := CreateDatabase(ctx, u.String()); err != nil {
		return "", err
	}
	if _, err := Migrate(ctx, u.String(), 0); err != nil {
		return "", err
	}
	return u.String(), nil
}

// OpenSQL returns a database/sql handle on url, for tools that need one.
func OpenSQL(url string) (*sql.DB, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	return stdlib.OpenDB(*cfg), nil
}

// WithParam returns the connection URL raw with the parameter key set to
// value, such as a search_path or an application_name.
func WithParam(raw, key, value string) (string, error) {
	u, err := neturl.Parse(raw)
	if err != nil {
		return "", errors.New("parse database url: invalid url")
	}
	q := u.Query()
	q.Set(key, value)
	u.RawQuery = q.Encode()
	return u.String(), nil
}
