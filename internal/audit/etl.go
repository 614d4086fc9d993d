package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/syncworker/syncworker/internal/checkpoint"
	"github.com/syncworker/syncworker/internal/simulator"
)

// CheckRecords: a landed record is missing, has other content than the
// source's, or should not be there.
const CheckRecords = "records"

// ETL audits ETL run id, which pulled the simulator's records into
// etl_records: the run completed; its ledger is a gapless, non-overlapping
// cover of every partition's pages, one page per batch, whose sums are the
// run's counters; and the job's rows under the run's key prefix are exactly
// want, each with the source's content, none missing and none besides.
func ETL(ctx context.Context, pool *pgxpool.Pool, id int64, want []simulator.Record) (Report, error) {
	rep, parts, a, err := begin(ctx, pool, id)
	if err != nil {
		return Report{}, err
	}
	if rep.Run.Unit != checkpoint.UnitPages {
		a.add(CheckStatus, "run %d is a run of %s, want pages", id, rep.Run.Unit)
	}
	auditPages(a, rep.Run, parts, rep.Ledger)
	if err := auditRecords(ctx, a, pool, rep.Run, want); err != nil {
		return Report{}, fmt.Errorf("audit run %d: %w", id, err)
	}
	return finish(rep, parts, a), nil
}

// auditPages checks that each partition's ledger covers its pages one by
// one from its start to its end, and that the ledger sums to the counters.
func auditPages(a *auditor, run checkpoint.Run, parts []checkpoint.Partition, ledger []Batch) {
	byPart := map[int][]Batch{}
	for _, b := range ledger {
		byPart[b.Partition] = append(byPart[b.Partition], b)
	}
	var items, ok, failed, records int64
	for _, p := range parts {
		cursor := p.StartPos
		for i, b := range byPart[p.Index] {
			if b.Seq != int64(i) || b.From != cursor || b.To != b.From+1 {
				a.add(CheckLedger, "partition %d: batch seq %d [%d, %d) does not follow seq %d at page %d",
					p.Index, b.Seq, b.From, b.To, i, cursor)
			}
			if b.OK+b.Failed > b.Items || int64(b.Records) != int64(b.OK) {
				a.add(CheckLedgerSums, "partition %d batch %d: %d records received, %d loaded, %d rejected, %d rows written",
					p.Index, b.Seq, b.Items, b.OK, b.Failed, b.Records)
			}
			cursor = b.To
			items, ok, failed, records = items+int64(b.Items), ok+int64(b.OK), failed+int64(b.Failed), records+int64(b.Records)
		}
		if cursor != p.EndPos || p.Cursor != p.EndPos || p.Status != checkpoint.PartitionCompleted ||
			p.Seq != int64(len(byPart[p.Index])) {
			a.add(CheckLedger, "partition %d [%d, %d): the ledger covers up to page %d in %d batches; the partition is %s at page %d, seq %d",
				p.Index, p.StartPos, p.EndPos, cursor, len(byPart[p.Index]), p.Status, p.Cursor, p.Seq)
		}
		delete(byPart, p.Index)
	}
	for index, bs := range byPart {
		a.add(CheckLedger, "%d batches of partition %d, which run %d does not have", len(bs), index, run.ID)
	}
	if items != run.Processed || ok != run.Succeeded || failed != run.Failed || records != run.Records {
		a.add(CheckLedgerSums, "the ledger sums %d records received, %d loaded, %d rejected, %d written; the run counts %d, %d, %d, %d",
			items, ok, failed, records, run.Processed, run.Succeeded, run.Failed, run.Records)
	}
}

// auditRecords checks that the job's rows in etl_records under the run's
// key prefix (the run's tenant, say) are exactly want.
func auditRecords(ctx context.Context, a *auditor, pool *pgxpool.Pool, run checkpoint.Run, want []simulator.Record) error {
	rows, err := pool.Query(ctx, `SELECT substr(record_key, length($2) + 1), payload::text FROM etl_records
		WHERE job = $1 AND starts_with(record_key, $2)`, run.Job, run.KeyPrefix)
	if err != nil {
		return fmt.Errorf("read records of job %s: %w", run.Job, err)
	}
	type row struct {
		Key     string
		Payload string
	}
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
	if err != nil {
		return fmt.Errorf("read records of job %s: %w", run.Job, err)
	}
	byKey := make(map[string]string, len(got))
	for _, r := range got {
		byKey[r.Key] = r.Payload
	}
	var missing, wrong int
	for _, rec := range want {
		payload, ok := byKey[rec.ID]
		if !ok {
			if missing++; missing <= 5 {
				a.add(CheckRecords, "record %s is missing", rec.ID)
			}
			continue
		}
		delete(byKey, rec.ID)
		if !sameJSON(payload, rec) {
			if wrong++; wrong <= 5 {
				a.add(CheckRecords, "record %s is %s, want %+v", rec.ID, payload, rec)
			}
		}
	}
	if missing > 5 || wrong > 5 {
		a.add(CheckRecords, "%d records missing and %d wrong in all", missing, wrong)
	}
	if len(byKey) > 0 {
		a.add(CheckRecords, "%d rows of job %s (key prefix %q) are not among the %d records of the source", len(byKey), run.Job, run.KeyPrefix, len(want))
	}
	return nil
}

// sameJSON reports whether the jsonb text payload is rec.
func sameJSON(payload string, rec simulator.Record) bool {
	var got simulator.Record
	dec := json.NewDecoder(bytes.NewReader([]byte(payload)))
	dec.DisallowUnknownFields()
	return dec.Decode(&got) == nil && got == rec
}
