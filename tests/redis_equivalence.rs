//! The embedded Redis answers like a real `redis-server`.
//!
//! Each test sends the same commands to `EmbeddedRedis` and to a fresh real
//! server (through the host's own client) and compares the replies, error
//! texts included. Without `redis-server` on PATH the tests fail, unless
//! `SKIP_REAL_REDIS=1` is set (CI always installs it).

use std::time::Duration;

use spin_host::redis::{Connection, EmbeddedRedis, RedisService, Reply};
use support::redis_server::{self, RedisServer};

/// The embedded server and a real one, fed the same commands.
struct Both {
    embedded: EmbeddedRedis,
    real: RedisService,
    connection: Connection,
    server: RedisServer,
}

impl Both {
    async fn start() -> Option<Both> {
        if !redis_server::available() {
            if std::env::var("SKIP_REAL_REDIS").as_deref() == Ok("1") {
                eprintln!("skipped: redis-server is not on PATH (SKIP_REAL_REDIS=1)");
                return None;
            }
            panic!(
                "redis-server is not on PATH: these tests compare the embedded Redis with a real one. \
                 Install it (apt-get install redis-server) or set SKIP_REAL_REDIS=1 to skip them."
            );
        }
        let server = RedisServer::start();
        let real = RedisService::new(false, None, None);
        let connection = real.open(&server.url()).await.unwrap_or_else(|e| panic!("connecting to redis-server: {e}"));
        Some(Both { embedded: EmbeddedRedis::new(), real, connection, server })
    }

    async fn replies(&mut self, command: &[&str]) -> (Reply, Reply) {
        let args: Vec<Vec<u8>> = command.iter().map(|a| a.as_bytes().to_vec()).collect();
        let embedded = self.embedded.execute(&args).expect("the embedded server is up");
        let real = self.real.execute(&mut self.connection, &args).await.unwrap_or_else(|e| panic!("redis-server: {e}"));
        (first_error(embedded), real)
    }

    /// Asserts both give the same reply; returns it.
    async fn same(&mut self, command: &[&str]) -> Reply {
        let (embedded, real) = self.replies(command).await;
        assert_eq!(embedded, real, "{command:?}: embedded (left) vs redis-server (right)");
        real
    }

    /// [`Both::same`] for each line, split on spaces.
    async fn same_lines(&mut self, lines: &str) {
        for line in lines.lines().map(str::trim).filter(|l| !l.is_empty()) {
            self.same(&line.split_whitespace().collect::<Vec<_>>()).await;
        }
    }

    async fn eval(&mut self, script: &str, keys: &[&str], args: &[&str]) -> Reply {
        let numkeys = keys.len().to_string();
        let mut command = vec!["EVAL", script, &numkeys];
        command.extend(keys.iter().chain(args));
        self.same(&command).await
    }

    /// Both answer with integers no further apart than `tolerance` (TTLs tick between the two calls).
    async fn close(&mut self, command: &[&str], tolerance: i64) -> i64 {
        match self.replies(command).await {
            (Reply::Int(a), Reply::Int(b)) if (a - b).abs() <= tolerance => b,
            (a, b) => panic!("{command:?}: embedded {a:?} vs redis-server {b:?} (tolerance {tolerance})"),
        }
    }

    /// Both answer with the same members, in any order (Redis does not order sets).
    async fn same_set(&mut self, command: &[&str]) {
        let (mut embedded, mut real) = self.replies(command).await;
        for reply in [&mut embedded, &mut real] {
            if let Reply::Array(items) = reply {
                items.sort_by_key(|item| format!("{item:?}"));
            }
        }
        assert_eq!(embedded, real, "{command:?}: embedded (left) vs redis-server (right), unordered");
    }

    /// Field/value pairs in any order (HGETALL).
    async fn same_pairs(&mut self, command: &[&str]) {
        let pairs = |reply: Reply| match reply {
            Reply::Array(items) => {
                let mut pairs: Vec<String> = items.chunks(2).map(|p| format!("{p:?}")).collect();
                pairs.sort();
                pairs
            }
            other => panic!("{command:?}: not an array: {other:?}"),
        };
        let (embedded, real) = self.replies(command).await;
        assert_eq!(pairs(embedded), pairs(real), "{command:?}: embedded (left) vs redis-server (right), unordered");
    }

    /// The real server's `major.minor`.
    async fn version(&mut self) -> (u32, u32) {
        let info = self.real.execute(&mut self.connection, &[b"INFO".to_vec(), b"server".to_vec()]).await;
        let Ok(Reply::Bulk(info)) = info else { panic!("INFO server: {info:?}") };
        let info = String::from_utf8_lossy(&info);
        let version = info.lines().find_map(|l| l.strip_prefix("redis_version:")).expect("redis_version in INFO");
        let mut parts = version.trim().split('.').map(|p| p.parse().unwrap_or(0));
        (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
    }
}

/// The `redis` client reports an array holding an error as that error (and
/// guests get an error either way), so the embedded reply is compared likewise.
fn first_error(reply: Reply) -> Reply {
    fn find(reply: &Reply) -> Option<&Reply> {
        match reply {
            Reply::Error(_) => Some(reply),
            Reply::Array(items) => items.iter().find_map(find),
            _ => None,
        }
    }
    find(&reply).cloned().unwrap_or(reply)
}

macro_rules! both {
    () => {
        match Both::start().await {
            Some(both) => both,
            None => return,
        }
    };
}

#[tokio::test]
async fn strings_and_set_options() {
    let mut r = both!();
    r.same_lines(
        "SET k v
         GET k
         SET k v2 XX
         SET k v3 NX
         GET k
         SET n 1 NX
         SET k v4 GET
         SET missing v GET
         SET k v5 NX GET
         SET k v6 XX GET
         SET nokey v XX
         SET nokey v XX GET
         GET nokey
         SET k v EX 0
         SET k v EX -5
         SET k v EX abc
         SET k v EX
         SET k v EX 10 PX 10
         SET k v NX XX
         SET k v KEEPTTL EX 5
         SET k v EX 5 KEEPTTL
         SET k v EX 9223372036854775807
         SET k v PX 9223372036854775807
         SET k v EXAT 9223372036854775807
         SET k v EX abc BOGUS
         SET k v EX 0 GET
         SET k v BOGUS
         SET k v PXAT 1
         GET k
         SET k v ex 10 EX 20
         TTL k
         SET k
         GET
         GET a b
         MGET k nokey n
         MGET
         EXISTS k k n nokey
         TYPE k
         TYPE nokey
         SADD s a
         SET s v GET
         MGET s k
         TYPE s
         SET s v
         TYPE s
         DEL k nokey n k
         EXISTS k n",
    )
    .await;
    r.same(&["SET", "spaced", "a value with spaces"]).await;
    r.same(&["GET", "spaced"]).await;
    r.same_lines("SET t v EX 100").await;
    r.close(&["TTL", "t"], 1).await;
    r.same_lines("SET t v2 KEEPTTL").await;
    r.close(&["TTL", "t"], 1).await;
    r.same_lines("SET t v3\n TTL t\n SET t v PX 100000").await;
    r.close(&["PTTL", "t"], 200).await;
}

#[tokio::test]
async fn counters() {
    let mut r = both!();
    r.same_lines(
        "INCR c
         INCRBY c 41
         DECR c
         DECRBY c 10
         INCRBY c -5
         INCRBY c abc
         INCRBY c 1.5
         INCRBY c 01
         INCRBY c +1
         DECRBY c -9223372036854775808
         INCRBY c -9223372036854775808
         SET big 9223372036854775807
         INCR big
         DECR big
         INCRBY big 2
         SET small -9223372036854775808
         DECR small
         DECRBY small 1
         SET s abc
         INCR s
         SET f 1.5
         INCR f
         SET z 010
         INCR z
         INCR
         INCRBY c
         DECRBY c 1 2
         HSET h f v
         INCR h
         GET c",
    )
    .await;
    r.same(&["SET", "sp", " 1"]).await;
    r.same(&["INCR", "sp"]).await;
    // INCR keeps the key's TTL.
    r.same_lines("SET t 1 EX 100\n INCR t").await;
    r.close(&["TTL", "t"], 1).await;
}

#[tokio::test]
async fn expiry_commands() {
    let mut r = both!();
    r.same_lines(
        "SET k v
         TTL k
         PTTL k
         TTL nokey
         PTTL nokey
         EXPIRE k 100",
    )
    .await;
    r.close(&["TTL", "k"], 1).await;
    r.same_lines("PEXPIRE k 200000").await;
    r.close(&["PTTL", "k"], 200).await;
    r.same_lines(
        "PERSIST k
         PERSIST k
         PERSIST nokey
         TTL k
         EXPIRE nokey 10
         EXPIRE k abc
         EXPIRE k 01
         EXPIRE k 10 bogus
         EXPIRE k 10 nx xx
         EXPIRE k 10 nx gt
         EXPIRE k 10 gt lt
         EXPIRE k abc nx
         EXPIRE k 100 GT
         EXPIRE k 100 XX
         EXPIRE k 100 LT
         PERSIST k
         EXPIRE k 100 NX
         EXPIRE k 50 NX
         EXPIRE k 50 GT
         EXPIRE k 200 gt
         EXPIRE k 50 LT
         EXPIRE k 60 lt
         EXPIRE k 60 XX
         TTL k
         EXPIRE k 9223372036854775807
         EXPIRE nokey 9223372036854775807
         EXPIRE k -9223372036854775808
         PEXPIRE k 9223372036854775807
         TTL k
         EXPIRE k
         TTL
         PERSIST a b
         EXPIRE k 0
         EXISTS k
         SET k v
         PEXPIRE k -1
         GET k
         SET k v
         PEXPIRE k -9223372036854775808
         EXISTS k",
    )
    .await;
}

#[tokio::test]
async fn keys_really_expire() {
    let mut r = both!();
    r.same_lines("SET k v PX 50\n SET e v\n PEXPIRE e 50\n SADD s a\n PEXPIRE s 50\n GET k").await;
    tokio::time::sleep(Duration::from_millis(120)).await;
    r.same_lines("GET k\n EXISTS k e s\n TTL k\n PTTL e\n TYPE s\n SCARD s").await;
    assert_eq!(r.same(&["GET", "k"]).await, Reply::Nil);
}

#[tokio::test]
async fn sorted_sets() {
    let mut r = both!();
    r.same_lines(
        "ZADD z 1 a 2 b 3 c
         ZADD z 1 a
         ZADD z NX 10 a 4 d
         ZADD z XX 10 a 5 e
         ZSCORE z a
         ZADD z CH 11 a 6 f
         ZADD z XX CH 12 a 13 nosuch
         ZADD z GT 1 a
         ZSCORE z a
         ZADD z GT CH 20 a 7 g
         ZADD z LT CH 30 a 0.5 b
         ZADD z lt 15 a
         ZADD z INCR 5 a
         ZADD z INCR NX 5 a
         ZADD z INCR XX 5 nosuch
         ZADD z INCR GT -1 a
         ZADD z INCR 1.5 h
         ZADD z INCR 1 a 2 b
         ZADD z NX XX 1 a
         ZADD z GT LT 1 a
         ZADD z GT NX 1 a
         ZADD z abc a
         ZADD z nan a
         ZADD z 1e500 a
         ZADD z 1
         ZADD z 1 a 2
         ZADD z BOGUS 1 a
         ZADD z 2.25 i -2.5 j .5 k +3 l
         ZADD z inf top -inf bottom
         ZADD z +inf top2 -Infinity bottom2
         ZADD z INCR -inf top
         ZADD newz XX 1 a
         EXISTS newz
         ZCARD z
         ZCARD nokey
         ZCARD
         ZSCORE z nosuch
         ZSCORE nokey a
         ZSCORE z top
         ZRANGE z 0 -1 WITHSCORES
         ZRANGE z 0 0 WITHSCORES
         ZRANGE z 0 0 withscores
         ZRANGE z -2 -1
         ZRANGE z -100 100
         ZRANGE z 5 2
         ZRANGE z 100 200
         ZRANGE z -1 -2
         ZRANGE z 0 abc
         ZRANGE z 0 1 foo
         ZRANGE z 0 1 WITHSCORES foo
         ZRANGE nokey 0 -1
         ZRANGE z 0
         ZRANGEBYSCORE z 2 10
         ZRANGEBYSCORE z (2 10
         ZRANGEBYSCORE z 2 (10
         ZRANGEBYSCORE z (2 (3
         ZRANGEBYSCORE z -inf +inf WITHSCORES
         ZRANGEBYSCORE z (-inf (inf
         ZRANGEBYSCORE z -inf +inf LIMIT 1 2
         ZRANGEBYSCORE z -inf +inf WITHSCORES LIMIT 0 -1
         ZRANGEBYSCORE z -inf +inf LIMIT 2 3 WITHSCORES
         ZRANGEBYSCORE z -inf +inf LIMIT -1 2
         ZRANGEBYSCORE z -inf +inf LIMIT 0 0
         ZRANGEBYSCORE z 10 2
         ZRANGEBYSCORE z a b
         ZRANGEBYSCORE z ((1 3
         ZRANGEBYSCORE z -inf +inf LIMIT x y
         ZRANGEBYSCORE z a b LIMIT x y
         ZRANGEBYSCORE z a b WITHSCORES foo
         ZRANGEBYSCORE z -inf +inf LIMIT 0
         ZRANGEBYSCORE nokey -inf +inf
         ZCOUNT z (2 (5
         ZCOUNT z -inf +inf
         ZCOUNT nokey -inf +inf
         ZCOUNT z a 1
         ZREM z a nosuch
         ZREM nokey a
         ZREM z
         ZREMRANGEBYSCORE z -inf (3
         ZREMRANGEBYSCORE z a 1
         ZREMRANGEBYSCORE nokey -inf +inf
         ZRANGE z 0 -1 WITHSCORES
         ZREMRANGEBYSCORE z -inf +inf
         EXISTS z
         ZADD ties 1 b 1 a 1 c 0 z -0 y
         ZRANGE ties 0 -1 WITHSCORES
         ZSCORE ties y
         SET s v
         ZADD s 1 a
         ZRANGE s 0 1
         ZRANGEBYSCORE s 0 1
         ZCARD s
         ZSCORE s a
         ZREM s a
         ZCOUNT s 0 1
         ZREMRANGEBYSCORE s 0 1",
    )
    .await;
}

/// Redis 7.0 writes doubles with `%.17g` (`0.10000000000000001`), 7.2 and later
/// with the shortest form that reads back the same (`0.1`). The embedded server
/// follows 7.0; against a later server the values must still be the same doubles.
#[tokio::test]
async fn double_formatting() {
    let mut r = both!();
    let exact = r.version().await < (7, 2);
    let commands: &[&[&str]] = &[
        &["ZADD", "f", "0.1", "a", "1e-7", "b", "123456789.123", "c", "1e16", "d", "2e17", "e", "3.14159", "f", "-0.3", "g"],
        &["ZRANGE", "f", "0", "-1", "WITHSCORES"],
        &["ZSCORE", "f", "a"],
        &["ZADD", "f", "INCR", "0.2", "a"],
        &["EVAL", "redis.call('SET', 'x', 0.1); redis.call('SET', 'y', 1e17); return {redis.call('GET', 'x'), redis.call('GET', 'y')}", "0"],
        &["EVAL", "return {double = 0.1}", "0"],
    ];
    for command in commands {
        let (embedded, real) = r.replies(command).await;
        if exact {
            assert_eq!(embedded, real, "{command:?}: embedded (left) vs redis-server (right)");
        } else {
            assert_eq!(as_numbers(&embedded), as_numbers(&real), "{command:?}: embedded {embedded:?} vs redis-server {real:?}");
        }
    }
}

fn as_numbers(reply: &Reply) -> Vec<Option<f64>> {
    match reply {
        Reply::Array(items) => items.iter().flat_map(as_numbers).collect(),
        Reply::Bulk(b) => vec![String::from_utf8_lossy(b).parse().ok()],
        Reply::Int(n) => vec![Some(*n as f64)],
        other => panic!("not a number: {other:?}"),
    }
}

#[tokio::test]
async fn sets_and_hashes() {
    let mut r = both!();
    r.same_lines(
        "SADD s a b c
         SADD s a d
         SCARD s
         SISMEMBER s a
         SISMEMBER s zz
         SISMEMBER nokey a
         SREM s a zz
         SREM nokey a
         SADD s
         SREM s
         SCARD nokey
         SMEMBERS nokey
         SET str v
         SADD str a
         SREM str a
         SMEMBERS str
         SCARD str
         SISMEMBER str a
         HSET h f1 v1 f2 v2
         HSET h f1 x f3 y
         HGET h f1
         HGET h nosuch
         HGET nokey f
         HMGET h f1 nosuch f2
         HMGET nokey a b
         HMGET h
         HMGET str f
         HDEL h f1 nosuch
         HDEL nokey f
         HINCRBY h n 5
         HINCRBY h n -7
         HINCRBY h f2 1
         HINCRBY h n abc
         HINCRBY h n 1.5
         HSET h big 9223372036854775807
         HINCRBY h big 1
         HSET h f
         HSET h f v g
         HGET h
         HGETALL nokey
         HGET str f
         HSET str f v
         HGETALL str
         HINCRBY str f 1
         HDEL str f",
    )
    .await;
    r.same_set(&["SMEMBERS", "s"]).await;
    r.same_lines("SADD nums 10 9 1 100").await;
    r.same_set(&["SMEMBERS", "nums"]).await;
    r.same_pairs(&["HGETALL", "h"]).await;
    r.same_lines("SREM s b c d\n EXISTS s\n HDEL h f2 f3 n big\n EXISTS h").await;
}

#[tokio::test]
async fn connection_commands_and_command_errors() {
    let mut r = both!();
    r.same_lines(
        "PING
         PING hello
         PING a b
         ECHO hello
         ECHO
         ECHO a b
         FOO
         foo a b
         FooBar x
         GET
         SET
         DEL
         EXISTS
         TYPE
         TYPE a b
         MGET
         PUBLISH channel message
         PUBLISH channel
         TIME x
         DBSIZE x
         FLUSHALL x
         FLUSHALL ASYNC
         FLUSHALL",
    )
    .await;
    let long = "a".repeat(200);
    r.same(&["NOSUCHCOMMAND", &long, "b"]).await;
    r.same(&["NOSUCHCOMMAND", "x", &long, "c"]).await;
    r.same(&["NOSUCH", "line\r\nbreak"]).await;
    r.same(&["ECHO", "two words"]).await;
}

#[tokio::test]
async fn lua_values_and_conversions() {
    let mut r = both!();
    let reply = r.eval("return {KEYS[1], KEYS[2], ARGV[1], #KEYS, #ARGV}", &["k1", "k2"], &["a1", "a2"]).await;
    assert_eq!(reply, Reply::Array(vec![Reply::bulk("k1"), Reply::bulk("k2"), Reply::bulk("a1"), Reply::Int(2), Reply::Int(2)]));
    for script in [
        "return redis.call('SET', KEYS[1], ARGV[1])",
        "return redis.call('GET', KEYS[1])",
        "return redis.call('GET', 'nokey')",
        "return redis.call('GET', 'nokey') == false",
        "return tostring(redis.call('GET', 'nokey'))",
        "return redis.call('PING')",
        "return type(redis.call('PING'))",
        "return redis.call('PING')['ok']",
        "return redis.call('INCRBY', 'n', 5) + 0.5",
        "return {redis.call('EXISTS', KEYS[1]), redis.call('INCRBY', 'n', 5)}",
        "redis.call('ZADD', 'z', 1, 'a', 2.5, 'b'); return redis.call('ZRANGE', 'z', 0, -1, 'WITHSCORES')",
        "return 3.99",
        "return -3.99",
        "return 1e20",
        "return -1e20",
        "return 0/0",
        "return 1/0",
        "return 2^53",
        "return 'text'",
        "return ''",
        "return true",
        "return false",
        "return nil",
        "return",
        "return print",
        "return {1, 2.9, -2.9, 'x', true, false, nil, 3}",
        "return {1, {2, {3, 'a'}}, {}}",
        "local t = {}; t[1] = 1; t[3] = 3; return t",
        "return {1, {err = 'x'}, {ok = 'y'}}",
        "return {err = 5}",
        "return {ok = 5}",
        "return {double = 1.5}",
        "return {err = 'My boom'}",
        "return {ok = 'x y'}",
        "return {ok = 'fine', err = 'bad'}",
        "return redis.status_reply('FINE')",
        "return redis.error_reply('boom')",
        "return redis.error_reply('My Error')",
        "return redis.error_reply('-MY err')",
        "return redis.error_reply('a\nb')",
        "return redis.status_reply('a\nb')",
        "return redis.status_reply()",
        "return redis.error_reply(5)",
        "return redis.error_reply('a', 'b')",
        "return redis.error_reply('boom').err",
        "return redis.sha1hex('')",
        "return redis.sha1hex('abc')",
        "return redis.log(redis.LOG_WARNING, 'a message')",
        "return redis.replicate_commands()",
        "return redis.call('SET', 'n', 2^53) and redis.call('GET', 'n')",
        "return redis.call('SET', 'n', 1.5) and redis.call('GET', 'n')",
        "return redis.call('SET', 'n', -0.0) and redis.call('GET', 'n')",
        "return redis.call('SET', 'n', 1/0) and redis.call('GET', 'n')",
        "return redis.call('SET', 'n', 3) and redis.call('GET', 'n')",
        "return tostring(0.1) .. ' ' .. 2^53 .. ' ' .. string.format('%d', 3)",
        "return _VERSION",
        "return {type(string), type(math), type(table), type(coroutine), type(unpack), type(loadstring)}",
    ] {
        r.eval(script, &["k"], &["v"]).await;
    }
    for script in ["return 1", "return 1 +"] {
        for numkeys in ["abc", "01", "-1", "+0", "5"] {
            r.same(&["EVAL", script, numkeys, "a"]).await;
        }
    }
    r.same(&["EVAL", "return 1"]).await;
    r.same(&["EVAL"]).await;
    r.same(&["eval", "return ARGV[1]", "0", "a", "b"]).await;
}

#[tokio::test]
async fn lua_errors() {
    let mut r = both!();
    r.same_lines("HSET h f v").await;
    for script in [
        // redis.call raises (with the script line), redis.pcall returns the error.
        "return redis.call('INCR', KEYS[1])",
        "local x = 1\nredis.call('SET', 'k2', 'v')\nreturn redis.call('INCR', KEYS[1])",
        "return redis.pcall('INCR', KEYS[1])",
        "return redis.pcall('INCR', KEYS[1]).err",
        "return type(redis.pcall('INCR', KEYS[1]))",
        "return {redis.pcall('INCR', KEYS[1])}",
        "redis.pcall('INCR', KEYS[1]); return 'went on'",
        // Redis 7's pcall turns a caught error table into its message.
        "local ok, e = pcall(redis.call, 'INCR', KEYS[1]); return {tostring(ok), e}",
        "local ok, e = pcall(error, {err = 'boom'}); return e",
        "local ok, e = pcall(error, 'boom'); return e",
        "local ok, e = pcall(function() return 1, 2 end); return {tostring(ok), e}",
        "local ok, e = pcall(error, {code = 1}); return type(e)",
        "local ok, e = xpcall(function() redis.call('INCR', KEYS[1]) end, function(m) return type(m) end); return e",
        "local ok, e = xpcall(function() redis.call('INCR', KEYS[1]) end, function(m) return m.err end); return e",
        // Refused before running.
        "return redis.call('NOSUCH')",
        "return redis.pcall('NOSUCH')",
        "return redis.call('GET')",
        "return redis.pcall('GET')",
        "return redis.call()",
        "return redis.pcall()",
        "return redis.call('SET', 'k', {})",
        "return redis.pcall('SET', 'k', true)",
        "return redis.call('EVAL', 'return 1', 0)",
        "return redis.pcall('SCRIPT', 'FLUSH')",
        "return redis.call('PING', 'a', 'b')",
        "return redis.pcall('HSET', 'h2', 'f', 'v', 'g')",
        // Raised by the script itself.
        "error('boom')",
        "error('x', 0)",
        "error()",
        "error(5)",
        "error({err = 'custom'})",
        "error({err = 'CODE with a code'})",
        "local function f()\n  error('deep')\nend\nf()",
        "return nil + 1",
        "return redis.sha1hex()",
        // The global table is read-only and holds only what Redis offers.
        "x = 5",
        "_G.x = 1",
        "KEYS = {}",
        "return y",
        "return _G.nosuch",
        "return tostring(print)",
        "return os.time()",
        "return setfenv",
        "return require",
        "local t = {}; t.x = 1; return t.x",
        "return type(_G)",
        // Compile errors.
        "return 1 +",
        "retrun 1",
        "local x = \n\n = 2",
    ] {
        r.eval(script, &["h"], &[]).await;
    }
    r.same(&["SCRIPT", "LOAD", "return 1 +"]).await;
    // A failed script leaves nothing behind: the next one sees a clean environment.
    r.eval("local ok = pcall(function() x = 1 end); return tostring(ok)", &[], &[]).await;
    r.eval("return type(rawget(_G, 'x'))", &[], &[]).await;
}

#[tokio::test]
async fn evalsha_and_the_script_cache() {
    let mut r = both!();
    let Reply::Bulk(sha) = r.same(&["SCRIPT", "LOAD", "return 'loaded'"]).await else { panic!("SCRIPT LOAD") };
    let sha = String::from_utf8(sha).expect("hex");
    let missing = "f".repeat(40);
    r.same(&["EVALSHA", &sha, "0"]).await;
    r.same(&["EVALSHA", &sha.to_uppercase(), "0"]).await;
    r.same(&["evalsha", &sha, "1", "k", "a"]).await;
    r.same(&["SCRIPT", "EXISTS", &sha, &missing, &sha.to_uppercase()]).await;
    // EVAL caches what it runs, so EVALSHA finds it afterwards.
    let Reply::Bulk(seven) = r.same(&["EVAL", "return redis.sha1hex('return 7')", "0"]).await else { panic!("sha1hex") };
    let seven = String::from_utf8(seven).expect("hex");
    r.same(&["SCRIPT", "EXISTS", &seven]).await;
    r.same(&["EVAL", "return 7", "0"]).await;
    r.same(&["SCRIPT", "EXISTS", &seven]).await;
    r.same(&["EVALSHA", &seven, "0"]).await;
    r.same(&["EVALSHA", &sha, "abc"]).await;
    r.same(&["EVALSHA", &sha, "2", "k"]).await;
    r.same(&["EVALSHA", &missing, "0"]).await;
    r.same(&["EVALSHA", &missing, "abc"]).await;
    r.same(&["EVALSHA", "abc", "abc"]).await;
    r.same(&["EVALSHA", "abc", "0"]).await;
    r.same(&["EVALSHA", &sha]).await;
    r.same_lines(
        "SCRIPT FLUSH
         SCRIPT FLUSH ASYNC
         SCRIPT FLUSH sync
         SCRIPT FLUSH bogus
         SCRIPT FLUSH SYNC ASYNC
         SCRIPT
         SCRIPT LOAD
         SCRIPT EXISTS
         SCRIPT Foo
         SCRIPT foo bar",
    )
    .await;
    r.same(&["SCRIPT", "LOAD", "a", "b"]).await;
    r.same(&["EVALSHA", &sha, "0"]).await;
    r.same(&["SCRIPT", "EXISTS", &sha, &seven]).await;
}

/// The API's rate-limit script, by EVAL and EVALSHA, decides like the core's
/// plain model of the same sliding window, on both servers.
#[tokio::test]
async fn sliding_window_rate_limit_script() {
    use analytics_core::rate_limit::{RateLimit, SlidingLog, SLIDING_WINDOW_SCRIPT};
    let mut r = both!();
    let Reply::Bulk(sha) = r.same(&["SCRIPT", "LOAD", SLIDING_WINDOW_SCRIPT]).await else { panic!("SCRIPT LOAD") };
    let sha = String::from_utf8(sha).expect("hex");
    let policy = RateLimit { limit: 3, window_ms: 1_000 };
    let mut model = SlidingLog::default();
    let start = 1_700_000_000_000i64;
    let mut allowed = Vec::new();
    // Limit 3 per 1000 ms: the fourth quick request is refused; later ones get in as
    // earlier ones leave the window, until three fall within one window again.
    for (i, offset) in [0, 100, 200, 300, 1050, 1150, 1250, 1260].into_iter().enumerate() {
        let now = start + offset;
        let [now_arg, window, limit, member] = policy.script_args(now, &format!("req-{i}"));
        let reply = if i % 2 == 0 {
            r.eval(SLIDING_WINDOW_SCRIPT, &["rl:client"], &[&now_arg, &window, &limit, &member]).await
        } else {
            r.same(&["EVALSHA", &sha, "1", "rl:client", &now_arg, &window, &limit, &member]).await
        };
        let decided = model.check(policy, now);
        assert_eq!(reply, Reply::Array(decided.iter().copied().map(Reply::Int).collect()), "request {i} at +{offset} ms");
        allowed.push(policy.decide(&decided, now).expect("three fields").allowed);
    }
    assert_eq!(allowed, [true, true, true, false, true, true, true, false]);
    r.same(&["ZRANGE", "rl:client", "0", "-1", "WITHSCORES"]).await;
    r.close(&["PTTL", "rl:client"], 200).await;
}

/// The harness's outage rehearsal: a stopped server refuses, a restarted one is
/// back on the same address, empty.
#[tokio::test]
async fn real_server_stops_and_restarts_on_the_same_port() {
    let Some(mut r) = Both::start().await else { return };
    r.same(&["SET", "k", "v"]).await;
    let port = r.server.port();
    r.server.stop();
    let get = [b"GET".to_vec(), b"k".to_vec()];
    assert!(r.real.execute(&mut r.connection, &get).await.is_err(), "a stopped server answered");
    r.server.restart();
    assert_eq!(r.server.port(), port);
    r.connection = r.real.open(&r.server.url()).await.expect("reconnect after restart");
    assert_eq!(r.real.execute(&mut r.connection, &get).await, Ok(Reply::Nil));
}

/// The application's own rate-limit script, verbatim, and the other commands it sends.
#[tokio::test]
async fn the_applications_commands() {
    let mut r = both!();
    let script = analytics_core::rate_limit::SLIDING_WINDOW_SCRIPT;
    let start = 1_700_000_000_000i64;
    for (i, offset) in [0, 10, 20, 30, 1015, 1025, 5000].into_iter().enumerate() {
        let now = (start + offset).to_string();
        let reply = r.eval(script, &["rl:203.0.113.7"], &[&now, "1000", "3", &format!("{now}-{i}")]).await;
        let Reply::Array(fields) = &reply else { panic!("not a table: {reply:?}") };
        assert!(fields.len() == 3 && fields.iter().all(|f| matches!(f, Reply::Int(_))), "{reply:?}");
    }
    r.close(&["PTTL", "rl:203.0.113.7"], 200).await;
    r.same_lines(
        "PING
         SET cache:summary {\"v\":1} EX 30
         GET cache:summary
         SET state v
         GET state
         INCRBY version:latency 1
         INCRBY version:latency 1
         GET version:latency",
    )
    .await;
    r.close(&["TTL", "cache:summary"], 1).await;
}
