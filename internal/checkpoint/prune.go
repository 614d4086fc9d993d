package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// PruneRuns deletes the runs that ended (completed, failed, cancelled or
// timed out) before before, oldest first and at most limit of them, and
// returns their IDs. A run goes with everything it owns: its partitions,
// items, batch ledger, attempts and rejected records, through their
// foreign keys; the kick-off records that name it keep their row without
// it. What a run loaded (stock_prices, an ETL job's table) is data, not
// bookkeeping, and stays. Each run is deleted in a statement of its own, so
// that a large one holds no other's locks, and a run locked at that moment
// (a retry or a restart taking it up again) is passed over: it is no
// longer ended once they commit.
func (s *Store) PruneRuns(ctx context.Context, before time.Time, limit int) ([]int64, error) {
	var ids []int64
	for len(ids) < limit {
		if err := ctx.Err(); err != nil {
			return ids, err
		}
		var id int64
		err := s.pool.QueryRow(ctx, `DELETE FROM runs WHERE id = (
				SELECT id FROM runs
				WHERE status IN ('completed', 'failed', 'cancelled', 'timed_out')
					AND coalesce(finished_at, updated_at) < $1
				ORDER BY coalesce(finished_at, updated_at), id
				LIMIT 1 FOR UPDATE SKIP LOCKED)
			RETURNING id`, before).Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) {
			break
		}
		if err != nil {
			return ids, fmt.Errorf("prune runs ended before %s: %w", before.Format(time.RFC3339), err)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// PruneKickoffs deletes the records of the kick-offs handled before before,
// claims included, and returns how many it deleted. A record matters only
// while the scheduler may enqueue its fire's kick-off again (within
// schedule.catch_up, and while Redis keeps the fire's mark).
func (s *Store) PruneKickoffs(ctx context.Context, before time.Time) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM kickoffs WHERE handled_at < $1`, before)
	if err != nil {
		return 0, fmt.Errorf("prune kickoffs handled before %s: %w", before.Format(time.RFC3339), err)
	}
	return tag.RowsAffected(), nil
}
