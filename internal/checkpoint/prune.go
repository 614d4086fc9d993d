package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// claimLife is how long a kick-off's claim is kept: longer than asynq keeps
// an archived task (90 days), since a claim is what makes a run of its task
// again (a retry, or one by hand from the archive) find the run that an
// earlier attempt started rather than start another.
const claimLife = 91 * 24 * time.Hour

// PruneRuns deletes the runs that ended before before and that nothing will
// take up again, oldest first and at most limit of them, and returns their
// IDs. Those are the completed and cancelled runs, and the failed and timed
// out ones that a newer generation of their job and run key replaced: the
// newest failed or timed-out run is what a start of its job resumes, and is
// kept. A run goes only after its older generations, so that a newer one
// never leaves an older one as its job's newest. A run goes with everything
// it owns: its partitions, items, batch ledger, attempts and rejected
// records, through their foreign keys; the kick-off records that name it
// keep their row without it. What a run loaded (stock_prices, an ETL job's
// table) is data, not bookkeeping, and stays. Each run is deleted in a
// statement of its own, so that a large one holds no other's locks, and a
// run locked at that moment (a retry taking it up) is passed over.
func (s *Store) PruneRuns(ctx context.Context, before time.Time, limit int) ([]int64, error) {
	var ids []int64
	for len(ids) < limit {
		if err := ctx.Err(); err != nil {
			return ids, err
		}
		var id int64
		err := s.pool.QueryRow(ctx, `DELETE FROM runs WHERE id = (
				SELECT r.id FROM runs r
				WHERE r.status IN ('completed', 'failed', 'cancelled', 'timed_out') AND r.finished_at < $1
					AND (r.status IN ('completed', 'cancelled') OR EXISTS (SELECT 1 FROM runs n
						WHERE n.job = r.job AND n.run_key = r.run_key AND n.generation > r.generation))
					AND NOT EXISTS (SELECT 1 FROM runs o
						WHERE o.job = r.job AND o.run_key = r.run_key AND o.generation < r.generation)
				ORDER BY r.finished_at, r.id
				LIMIT 1 FOR UPDATE OF r SKIP LOCKED)
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
// and returns how many it deleted. A record matters only while the
// scheduler may enqueue its fire's kick-off again: within schedule.catch_up
// of the fire, and while Redis keeps the fire's mark (25h). A claim, the
// note of a kick-off that started but was not recorded, is kept for
// claimLife whatever before says: its task may still be retried, or be run
// again by hand from asynq's archive.
func (s *Store) PruneKickoffs(ctx context.Context, before time.Time) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM kickoffs
		WHERE handled_at < $1 AND (how <> '' OR handled_at < now() - $2 * interval '1 second')`,
		before, claimLife.Seconds())
	if err != nil {
		return 0, fmt.Errorf("prune kickoffs handled before %s: %w", before.Format(time.RFC3339), err)
	}
	return tag.RowsAffected(), nil
}
