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
