package schedule

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// The leader's lock is a session-level Postgres advisory lock, one per
// schema (so that tests, each in a schema of its own, do not share it), in
// the two-key space so that it can never be the sweeper's one-key lock.
// Postgres releases it when the session ends: when its process exits, when
// its connection drops, or when someone terminates its backend.
const (
	tryLockSQL = `SELECT pg_try_advisory_lock(hashtext('syncworker.scheduler'), hashtext(current_schema()))`
	holderSQL  = `SELECT a.pid, a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
		AND l.classid = hashtext('syncworker.scheduler')::oid AND l.objid = hashtext(current_schema())::oid`
)

// lock is the leader's lock, held on a connection of its own (not one of
// the pool's, which the pool may close or hand to others).
type lock struct {
	cfg  *pgx.ConnConfig
	conn *pgx.Conn
}

// tryAcquire connects if need be and tries to take the lock; it reports
// whether this process holds it now.
func (l *lock) tryAcquire(ctx context.Context) (bool, error) {
	if l.conn == nil {
		conn, err := pgx.ConnectConfig(ctx, l.cfg)
		if err != nil {
			return false, fmt.Errorf("connect for the scheduler's lock: %w", err)
		}
		l.conn = conn
	}
	var locked bool
	if err := l.conn.QueryRow(ctx, tryLockSQL).Scan(&locked); err != nil {
		l.close(ctx)
		return false, fmt.Errorf("try the scheduler's lock: %w", err)
	}
	return locked, nil
}

// check returns an error when the lock may be lost: its connection does not
// answer. A session lock lasts as long as its session, so a connection that
// answers still holds it.
func (l *lock) check(ctx context.Context) error {
	if l.conn == nil {
		return errors.New("no connection")
	}
	if err := l.conn.Ping(ctx); err != nil {
		l.close(ctx)
		return fmt.Errorf("the scheduler lock's connection: %w", err)
	}
	return nil
}

// close ends the connection, which releases the lock if it was held.
func (l *lock) close(ctx context.Context) {
	if l.conn != nil {
		_ = l.conn.Close(ctx) // the session ends either way; its lock with it
		l.conn = nil
	}
}

// Holder is the Postgres session that holds the scheduler's lock.
type Holder struct {
	// PID is its backend's process id.
	PID int32
	// Application is its application_name: "syncworker scheduler" and the
	// worker's name.
	Application string
}

// Querier is what LeaderHolder reads with: a pool, a connection or a
// transaction.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// LeaderHolder returns the session that holds the scheduler's lock of q's
// schema: who the leader is. ok is false when no one holds it.
func LeaderHolder(ctx context.Context, q Querier) (h Holder, ok bool, err error) {
	err = q.QueryRow(ctx, holderSQL).Scan(&h.PID, &h.Application)
	if errors.Is(err, pgx.ErrNoRows) {
		return Holder{}, false, nil
	}
	if err != nil {
		return Holder{}, false, fmt.Errorf("find the scheduler's leader: %w", err)
	}
	return h, true, nil
}
