package testenv

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisLockPrefix names the keys in database 0 that hold the allocation of
// the other databases (the prefix and the number); they expire, so a crashed
// test frees its database. cmd/chaos claims its database with them too.
const RedisLockPrefix = "syncworker:testenv:db:"

const lockTTL = 90 * time.Second

// ClaimRedis claims Redis database opt.DB in the allocation the tests
// share, under token, so that no test (nor cmd/chaos) uses or flushes it
// meanwhile: the lock is a key in database 0 that expires unless renewed,
// and is renewed until release is called, which deletes it if it is still
// token's. ok is false when another holds the database.
func ClaimRedis(ctx context.Context, opt *redis.Options, token string) (release func(), ok bool, err error) {
	lockOpt := *opt
	lockOpt.DB = 0
	admin := redis.NewClient(&lockOpt)
	key := RedisLockPrefix + strconv.Itoa(opt.DB)
	ok, err = admin.SetNX(ctx, key, token, lockTTL).Result()
	if err != nil || !ok {
		admin.Close()
		if err != nil {
			return nil, false, fmt.Errorf("claim redis database %d: %w", opt.DB, err)
		}
		return nil, false, nil
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(lockTTL / 3)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				admin.Expire(context.WithoutCancel(ctx), key, lockTTL)
			}
		}
	})
	return func() {
		close(stop)
		wg.Wait()
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		admin.Eval(ctx, `if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`, []string{key}, token)
		admin.Close()
	}, true, nil
}

// RedisHolder returns who holds the claim of database db, if anyone.
func RedisHolder(ctx context.Context, opt *redis.Options, db int) string {
	lockOpt := *opt
	lockOpt.DB = 0
	admin := redis.NewClient(&lockOpt)
	defer admin.Close()
	holder, _ := admin.Get(ctx, RedisLockPrefix+strconv.Itoa(db)).Result()
	return holder
}

// ClaimRedisFlushed claims Redis database opt.DB under token, like
// ClaimRedis, and flushes it, for a tool that runs on a database of its own
// (cmd/chaos, cmd/bench). A database another holds is an error naming the
// holder. release flushes the database again and frees it.
func ClaimRedisFlushed(ctx context.Context, opt *redis.Options, token string) (release func(), err error) {
	free, ok, err := ClaimRedis(ctx, opt, token)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("redis database %d is in use (%s holds it); pick another --redis-db",
			opt.DB, RedisHolder(ctx, opt, opt.DB))
	}
	client := redis.NewClient(opt)
	if err := client.FlushDB(ctx).Err(); err != nil {
		client.Close()
		free()
		return nil, fmt.Errorf("flush redis database %d: %w", opt.DB, err)
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		client.FlushDB(ctx)
		client.Close()
		free()
	}, nil
}
