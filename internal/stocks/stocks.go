// Package stocks owns the stock universe (table stocks) and the daily prices
// (table stock_prices): importing symbols, listing the active ones a run
// freezes, and the bulk upsert of a batch's prices.
package stocks

import (
	"cmp"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// symbolPattern is the form of a symbol; the table holds the same check.
var symbolPattern = regexp.MustCompile(`^[A-Z0-9][A-Z0-9.\-]{0,19}$`)

// NormalizeSymbol returns symbol trimmed and in upper case, or an error when
// it is not a valid symbol (letters, digits, '.' and '-', at most 20).
func NormalizeSymbol(symbol string) (string, error) {
	s := strings.ToUpper(strings.TrimSpace(symbol))
	if !symbolPattern.MatchString(s) {
		return "", fmt.Errorf("invalid symbol %q: want 1 to 20 letters, digits, '.' or '-', starting with a letter or digit", truncate(symbol))
	}
	return s, nil
}

// truncate shortens s for a message, at a character boundary.
func truncate(s string) string {
	if len(s) <= 40 {
		return s
	}
	cut := 40
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// maxText bounds the length of a stock's name and exchange, in characters.
const maxText = 200

// checkText checks a name or exchange: text Postgres stores (valid UTF-8, no
// NUL) and a terminal shows as it is (no control characters), of at most
// maxText characters. Anything else, quotes and SQL included, is stored as
// it is: it only ever travels as a query parameter.
func checkText(s string) error {
	switch {
	case !utf8.ValidString(s):
		return fmt.Errorf("%q is not valid UTF-8", truncate(s))
	case strings.ContainsFunc(s, unicode.IsControl):
		return fmt.Errorf("%q has control characters", truncate(s))
	case utf8.RuneCountInString(s) > maxText:
		return fmt.Errorf("%q is longer than %d characters", truncate(s), maxText)
	}
	return nil
}

// Stock is one row of the universe.
type Stock struct {
	Symbol   string
	Name     string
	Exchange string
	Active   bool
}

// ImportResult counts what an import changed.
type ImportResult struct {
	Inserted int64 `json:"inserted"`
	Updated  int64 `json:"updated"`
}

// ReadCSV reads stocks from CSV: a header row with a symbol column and
// optional name, exchange and active columns (any order, any case), then one
// stock per row. Every error names its line; a symbol that repeats is an error.
func ReadCSV(r io.Reader) ([]Stock, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, errors.New("csv is empty: want a header row with a symbol column")
	}
	if err != nil {
		return nil, fmt.Errorf("read csv header: %w", err)
	}
	col := map[string]int{}
	for i, h := range header {
		name := strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))
		if _, dup := col[name]; dup && name != "" {
			return nil, fmt.Errorf("csv header: column %q appears twice", name)
		}
		col[name] = i
	}
	symCol, ok := col["symbol"]
	if !ok {
		return nil, fmt.Errorf("csv header %q has no symbol column", strings.Join(header, ","))
	}
	field := func(rec []string, name string) (string, bool) {
		i, ok := col[name]
		if !ok || i >= len(rec) {
			return "", false
		}
		return strings.TrimSpace(rec[i]), true
	}

	var out []Stock
	seen := map[string]int{}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read csv: %w", err) // it names the line
		}
		line, _ := cr.FieldPos(0) // which panics without a record
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue // blank line
		}
		if symCol >= len(rec) {
			return nil, fmt.Errorf("csv line %d: no symbol field", line)
		}
		sym, err := NormalizeSymbol(rec[symCol])
		if err != nil {
			return nil, fmt.Errorf("csv line %d: %w", line, err)
		}
		if prev, dup := seen[sym]; dup {
			return nil, fmt.Errorf("csv line %d: symbol %s repeats line %d", line, sym, prev)
		}
		seen[sym] = line
		s := Stock{Symbol: sym, Active: true}
		s.Name, _ = field(rec, "name")
		s.Exchange, _ = field(rec, "exchange")
		for _, f := range []struct{ name, v string }{{"name", s.Name}, {"exchange", s.Exchange}} {
			if err := checkText(f.v); err != nil {
				return nil, fmt.Errorf("csv line %d: %s %w", line, f.name, err)
			}
		}
		if v, ok := field(rec, "active"); ok && v != "" {
			b, err := strconv.ParseBool(strings.ToLower(v))
			if err != nil {
				return nil, fmt.Errorf("csv line %d: active is %q, want true or false", line, truncate(v))
			}
			s.Active = b
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, errors.New("csv has no stocks below its header")
	}
	return out, nil
}

// Upsert inserts the stocks or updates the ones that exist, in one
// transaction: all of them or none.
func Upsert(ctx context.Context, pool *pgxpool.Pool, list []Stock) (ImportResult, error) {
	n := len(list)
	syms, names, exchanges := make([]string, n), make([]*string, n), make([]*string, n)
	active := make([]bool, n)
	for i, s := range list {
		syms[i], active[i] = s.Symbol, s.Active
		if s.Name != "" {
			names[i] = &list[i].Name
		}
		if s.Exchange != "" {
			exchanges[i] = &list[i].Exchange
		}
	}
	var res ImportResult
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `
			INSERT INTO stocks (symbol, name, exchange, active)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bool[])
			ON CONFLICT (symbol) DO UPDATE SET
				name = coalesce(EXCLUDED.name, stocks.name),
				exchange = coalesce(EXCLUDED.exchange, stocks.exchange),
				active = EXCLUDED.active, updated_at = now()
			RETURNING (xmax = 0)`, syms, names, exchanges, active)
		if err != nil {
			return err
		}
		inserted, err := pgx.CollectRows(rows, pgx.RowTo[bool])
		if err != nil {
			return err
		}
		for _, ins := range inserted {
			if ins {
				res.Inserted++
			} else {
				res.Updated++
			}
		}
		return nil
	})
	if err != nil {
		return ImportResult{}, fmt.Errorf("upsert %d stocks: %w", n, err)
	}
	return res, nil
}

// ActiveSymbols returns the symbols of the active stocks, in order: the items
// a daily sync freezes when its run is created.
func ActiveSymbols(ctx context.Context, pool *pgxpool.Pool) ([]string, error) {
	rows, err := pool.Query(ctx, `SELECT symbol FROM stocks WHERE active ORDER BY symbol`)
	if err != nil {
		return nil, fmt.Errorf("list active symbols: %w", err)
	}
	syms, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list active symbols: %w", err)
	}
	return syms, nil
}

// Price is one symbol's prices on one day; prices are decimal text.
type Price struct {
	Symbol, Date           string
	Open, High, Low, Close string
	Volume                 int64
}

// UpsertPrices writes prices in one statement within tx, recording runID as
// the writer, and returns the number of rows written.
func UpsertPrices(ctx context.Context, tx pgx.Tx, runID int64, prices []Price) (int64, error) {
	if len(prices) == 0 {
		return 0, nil
	}
	tag, err := tx.Exec(ctx, upsertPricesSQL, upsertPricesArgs(runID, prices)...)
	if err != nil {
		return 0, fmt.Errorf("upsert %d prices: %w", len(prices), err)
	}
	return tag.RowsAffected(), nil
}

// QueueUpsertPrices queues UpsertPrices's statement into q, to run in the
// transaction q is sent in (see checkpoint.Batch.QueueData); its result
// must be every price written.
func QueueUpsertPrices(q *pgx.Batch, runID int64, prices []Price) {
	if len(prices) == 0 {
		return
	}
	q.Queue(upsertPricesSQL, upsertPricesArgs(runID, prices)...).Exec(func(tag pgconn.CommandTag) error {
		if n := tag.RowsAffected(); n != int64(len(prices)) {
			return fmt.Errorf("upserted %d prices, want %d", n, len(prices))
		}
		return nil
	})
}

// upsertPricesSQL writes the prices of upsertPricesArgs.
const upsertPricesSQL = `
	INSERT INTO stock_prices (symbol, trade_date, open, high, low, close, volume, run_id)
	SELECT u.symbol, u.trade_date::date, u.open::numeric, u.high::numeric, u.low::numeric,
		u.close::numeric, u.volume, $8
	FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[])
		AS u(symbol, trade_date, open, high, low, close, volume)
	ON CONFLICT (symbol, trade_date) DO UPDATE SET
		open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,
		volume = EXCLUDED.volume, run_id = EXCLUDED.run_id, updated_at = now()`

// upsertPricesArgs returns the arguments of upsertPricesSQL for prices.
func upsertPricesArgs(runID int64, prices []Price) []any {
	n := len(prices)
	// In the order of their keys, so that two transactions writing the
	// same rows (partitions of a run at once, a stale batch beside the
	// live one) lock them in the same order and cannot deadlock on them.
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		return cmp.Or(strings.Compare(prices[a].Symbol, prices[b].Symbol), strings.Compare(prices[a].Date, prices[b].Date))
	})
	sym, date := make([]string, n), make([]string, n)
	open, high, low, closing := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	vol := make([]int64, n)
	for i, j := range order {
		p := prices[j]
		sym[i], date[i] = p.Symbol, p.Date
		open[i], high[i], low[i], closing[i], vol[i] = p.Open, p.High, p.Low, p.Close, p.Volume
	}
	return []any{sym, date, open, high, low, closing, vol, runID}
}
