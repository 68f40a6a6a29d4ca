//! An in-process Redis: the commands this application sends (strings,
//! counters, expiry, sorted sets, sets, hashes, Lua scripts), with the same
//! replies and error texts as a real server, so `up` needs no Redis installed.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::lua::Scripting;
use super::reply::Reply;

const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
const NOT_INTEGER: &str = "ERR value is not an integer or out of range";
const NOT_FLOAT: &str = "ERR value is not a valid float";
const SYNTAX: &str = "ERR syntax error";

/// A score that sorts like Redis sorts them (by value; members break ties).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Score(f64);
impl Eq for Score {}
impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Score {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // Adding 0.0 turns -0 into 0: Redis compares them as equal.
        (self.0 + 0.0).total_cmp(&(other.0 + 0.0))
    }
}

#[derive(Debug, Clone, Default)]
struct SortedSet {
    scores: HashMap<Vec<u8>, f64>,
    order: BTreeSet<(Score, Vec<u8>)>,
}

impl SortedSet {
    /// Returns whether the member is new. A score of -0 is kept as 0, as Redis's
    /// compact encoding (every set of up to 128 members) keeps it.
    fn insert(&mut self, member: Vec<u8>, score: f64) -> bool {
        let score = score + 0.0;
        let previous = self.scores.insert(member.clone(), score);
        if let Some(old) = previous {
            self.order.remove(&(Score(old), member.clone()));
        }
        self.order.insert((Score(score), member));
        previous.is_none()
    }

    fn remove(&mut self, member: &[u8]) -> bool {
        match self.scores.remove(member) {
            Some(score) => {
                self.order.remove(&(Score(score), member.to_vec()));
                true
            }
            None => false,
        }
    }

    fn in_range<'a>(&'a self, min: &'a Bound, max: &'a Bound) -> impl Iterator<Item = &'a (Score, Vec<u8>)> + 'a {
        self.order
            .iter()
            .skip_while(move |(s, _)| !min.admits_as_min(s.0))
            .take_while(move |(s, _)| max.admits_as_max(s.0))
    }
}

/// A Redis hash: field to value.
type Fields = HashMap<Vec<u8>, Vec<u8>>;

#[derive(Debug, Clone)]
enum Value {
    Str(Vec<u8>),
    Hash(Fields),
    Set(HashSet<Vec<u8>>),
    ZSet(SortedSet),
}

impl Value {
    fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::Hash(_) => "hash",
            Value::Set(_) => "set",
            Value::ZSet(_) => "zset",
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    value: Value,
    /// Unix time in milliseconds.
    expires_at: Option<i64>,
}

/// A score bound as in `ZRANGEBYSCORE`: `-inf`, `+inf`, `5` or `(5`.
#[derive(Debug, Clone, Copy)]
struct Bound {
    value: f64,
    exclusive: bool,
}

impl Bound {
    fn parse(arg: &[u8]) -> Option<Bound> {
        let text = std::str::from_utf8(arg).ok()?;
        let (exclusive, number) = match text.strip_prefix('(') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        Some(Bound { value: parse_float(number.as_bytes())?, exclusive })
    }
    fn admits_as_min(&self, score: f64) -> bool {
        if self.exclusive { score > self.value } else { score >= self.value }
    }
    fn admits_as_max(&self, score: f64) -> bool {
        if self.exclusive { score < self.value } else { score <= self.value }
    }
}

/// An integer as Redis reads one (`string2ll`): no leading `+`, spaces or zeros.
pub(crate) fn parse_int(arg: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(arg).ok()?;
    if text.starts_with('+') || (text.len() > 1 && text.starts_with('0')) || text.starts_with("-0") {
        return None;
    }
    text.parse().ok()
}

/// A score as Redis reads one (`strtod` over the whole argument): NaN, and values
/// too large for a double unless spelled `inf`, are refused.
fn parse_float(arg: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(arg).ok()?;
    let value: f64 = text.parse().ok()?;
    let overflowed = value.is_infinite() && !text.to_ascii_lowercase().contains("inf");
    (!value.is_nan() && !overflowed).then_some(value)
}

/// Formats a double as Redis 7.0 replies with it (`%.17g`; `inf`/`-inf`).
/// Redis 7.2 and later reply with the shortest round-trip form instead.
pub(crate) fn format_score(score: f64) -> Vec<u8> {
    if score.is_nan() {
        return b"nan".to_vec();
    }
    if score.is_infinite() {
        return if score > 0.0 { b"inf".to_vec() } else { b"-inf".to_vec() };
    }
    if score == 0.0 {
        return if score.is_sign_negative() { b"-0".to_vec() } else { b"0".to_vec() };
    }
    // %g: 17 significant digits, exponent form below 1e-4 or from 1e17, trailing zeros dropped.
    let scientific = format!("{score:.16e}");
    let (mantissa, exponent) = scientific.split_once('e').expect("{:e} has an exponent");
    let exponent: i32 = exponent.parse().expect("{:e} exponent is an integer");
    let trim = |digits: &str| -> String {
        if digits.contains('.') { digits.trim_end_matches('0').trim_end_matches('.').to_string() } else { digits.to_string() }
    };
    let text = if !(-4..17).contains(&exponent) {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mantissa), exponent.abs())
    } else {
        trim(&format!("{score:.*}", (16 - exponent) as usize))
    };
    text.into_bytes()
}

fn wrong_args(name: &str) -> Reply {
    Reply::error(format!("ERR wrong number of arguments for '{name}' command"))
}

fn invalid_expire(name: &str) -> Reply {
    Reply::error(format!("ERR invalid expire time in '{name}' command"))
}

/// Redis's command table: name and arity (negative: at least that many, name included).
const COMMANDS: &[(&str, i32)] = &[
    ("ping", -1), ("echo", 2), ("time", 1), ("get", 2), ("mget", -2), ("set", -3),
    ("del", -2), ("unlink", -2), ("exists", -2), ("type", 2),
    ("incr", 2), ("decr", 2), ("incrby", 3), ("decrby", 3),
    ("expire", -3), ("pexpire", -3), ("persist", 2), ("ttl", 2), ("pttl", 2),
    ("zadd", -4), ("zrem", -3), ("zcard", 2), ("zscore", 3), ("zcount", 4), ("zrange", -4),
    ("zrangebyscore", -4), ("zremrangebyscore", 4),
    ("sadd", -3), ("srem", -3), ("smembers", 2), ("sismember", 3), ("scard", 2),
    ("hset", -4), ("hget", 3), ("hmget", -3), ("hdel", -3), ("hgetall", 2), ("hincrby", 4),
    ("publish", 3), ("dbsize", 1), ("flushall", -1), ("flushdb", -1),
    ("eval", -3), ("evalsha", -3), ("script", -2),
];

/// Why Redis refused a command before running it; scripts word these two differently.
#[derive(Debug, PartialEq)]
pub(crate) enum Rejected {
    Unknown,
    Arity(&'static str),
}

/// Looks a command up and checks its argument count, as Redis does before running it.
/// Returns its lowercase name.
pub(crate) fn check_command(args: &[Vec<u8>]) -> Result<&'static str, Rejected> {
    let name = args.first().map(|n| n.to_ascii_lowercase()).unwrap_or_default();
    let &(name, arity) = COMMANDS.iter().find(|(n, _)| n.as_bytes() == name).ok_or(Rejected::Unknown)?;
    let count = args.len() as i32;
    let fits = if arity >= 0 { count == arity } else { count >= -arity };
    if fits { Ok(name) } else { Err(Rejected::Arity(name)) }
}

/// Replaces CR and LF, which cannot appear in a one-line reply, as Redis does.
pub(crate) fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

impl Rejected {
    /// The error a client sees: `ERR unknown command 'foo', with args beginning with: 'a' `.
    pub(crate) fn reply(&self, args: &[Vec<u8>]) -> Reply {
        match self {
            Rejected::Arity(name) => wrong_args(name),
            Rejected::Unknown => {
                let name = args.first().map_or(&[][..], |n| &n[..n.len().min(128)]);
                let mut listed = Vec::new();
                for arg in args.iter().skip(1) {
                    if listed.len() >= 128 {
                        break;
                    }
                    let room = 128 - listed.len();
                    listed.push(b'\'');
                    listed.extend_from_slice(&arg[..arg.len().min(room)]);
                    listed.extend_from_slice(b"' ");
                }
                Reply::error(one_line(&format!(
                    "ERR unknown command '{}', with args beginning with: {}",
                    String::from_utf8_lossy(name),
                    String::from_utf8_lossy(&listed)
                )))
            }
        }
    }
}

/// The keyspace. Commands take the current time so expiry is testable without a clock.
#[derive(Debug, Default)]
pub struct Db {
    map: HashMap<Vec<u8>, Entry>,
    commands: u64,
}

impl Db {
    fn live(&mut self, key: &[u8], now: i64) -> Option<&mut Entry> {
        let expired = self.map.get(key).is_some_and(|e| e.expires_at.is_some_and(|t| t <= now));
        if expired {
            self.map.remove(key);
        }
        self.map.get_mut(key)
    }

    /// Drops expired keys now and then, so keys nobody reads again do not pile up.
    fn sweep(&mut self, now: i64) {
        self.commands += 1;
        if self.commands.is_multiple_of(1024) {
            self.map.retain(|_, e| e.expires_at.is_none_or(|t| t > now));
        }
    }

    fn string(&mut self, key: &[u8], now: i64) -> Result<Option<&mut Vec<u8>>, Reply> {
        match self.live(key, now) {
            None => Ok(None),
            Some(Entry { value: Value::Str(s), .. }) => Ok(Some(s)),
            Some(_) => Err(Reply::error(WRONGTYPE)),
        }
    }

    /// The value of `key` if it has type `pick`'s, creating it with `make` when missing.
    fn typed<T>(
        &mut self,
        key: &[u8],
        now: i64,
        create: bool,
        make: fn() -> Value,
        pick: fn(&mut Value) -> Option<&mut T>,
    ) -> Result<Option<&mut T>, Reply> {
        if self.live(key, now).is_none() {
            if !create {
                return Ok(None);
            }
            self.map.insert(key.to_vec(), Entry { value: make(), expires_at: None });
        }
        let entry = self.map.get_mut(key).expect("present");
        pick(&mut entry.value).map(Some).ok_or_else(|| Reply::error(WRONGTYPE))
    }

    fn zset(&mut self, key: &[u8], now: i64, create: bool) -> Result<Option<&mut SortedSet>, Reply> {
        self.typed(key, now, create, || Value::ZSet(SortedSet::default()), |v| match v {
            Value::ZSet(z) => Some(z),
            _ => None,
        })
    }

    fn set(&mut self, key: &[u8], now: i64, create: bool) -> Result<Option<&mut HashSet<Vec<u8>>>, Reply> {
        self.typed(key, now, create, || Value::Set(HashSet::new()), |v| match v {
            Value::Set(s) => Some(s),
            _ => None,
        })
    }

    fn hash(&mut self, key: &[u8], now: i64, create: bool) -> Result<Option<&mut Fields>, Reply> {
        self.typed(key, now, create, || Value::Hash(HashMap::new()), |v| match v {
            Value::Hash(h) => Some(h),
            _ => None,
        })
    }

    /// Removes a collection left empty, as Redis does.
    fn drop_if_empty(&mut self, key: &[u8]) {
        let empty = match self.map.get(key).map(|e| &e.value) {
            Some(Value::ZSet(z)) => z.scores.is_empty(),
            Some(Value::Set(s)) => s.is_empty(),
            Some(Value::Hash(h)) => h.is_empty(),
            _ => false,
        };
        if empty {
            self.map.remove(key);
        }
    }

    /// Runs one command (not `EVAL`, which needs the scripting engine).
    pub fn execute(&mut self, now: i64, args: &[Vec<u8>]) -> Reply {
        match check_command(args) {
            Ok(name) => self.run(name, now, args),
            Err(rejected) => rejected.reply(args),
        }
    }

    /// Runs a command that passed [`check_command`].
    pub(crate) fn run(&mut self, name: &str, now: i64, args: &[Vec<u8>]) -> Reply {
        self.sweep(now);
        match self.dispatch(name, now, &args[1..]) {
            Ok(reply) | Err(reply) => reply,
        }
    }

    /// `a` are the arguments after the name, whose count [`COMMANDS`] has checked.
    fn dispatch(&mut self, name: &str, now: i64, a: &[Vec<u8>]) -> Result<Reply, Reply> {
        let int = |arg: &[u8]| parse_int(arg).ok_or_else(|| Reply::error(NOT_INTEGER));
        Ok(match name {
            "ping" => match a {
                [] => Reply::Status("PONG".into()),
                [msg] => Reply::bulk(msg.clone()),
                _ => return Err(wrong_args(name)),
            },
            "echo" => Reply::bulk(a[0].clone()),
            "time" => Reply::Array(vec![
                Reply::bulk((now / 1000).to_string()),
                Reply::bulk(((now % 1000) * 1000).to_string()),
            ]),
            "get" => match self.string(&a[0], now)? {
                Some(s) => Reply::bulk(s.clone()),
                None => Reply::Nil,
            },
            "mget" => Reply::Array(
                a.iter()
                    .map(|k| match self.string(k, now) {
                        Ok(Some(s)) => Reply::bulk(s.clone()),
                        _ => Reply::Nil,
                    })
                    .collect(),
            ),
            "set" => self.cmd_set(now, a)?,
            "del" | "unlink" => {
                let removed = a.iter().filter(|k| self.live(k, now).is_some() && self.map.remove(*k).is_some()).count();
                Reply::Int(removed as i64)
            }
            "exists" => Reply::Int(a.iter().filter(|k| self.live(k, now).is_some()).count() as i64),
            "type" => Reply::Status(self.live(&a[0], now).map_or("none", |e| e.value.type_name()).into()),
            "incr" | "decr" | "incrby" | "decrby" => {
                let delta = match name {
                    "incr" => 1,
                    "decr" => -1,
                    "incrby" => int(&a[1])?,
                    _ => int(&a[1])?.checked_neg().ok_or_else(|| Reply::error("ERR decrement would overflow"))?,
                };
                let current = match self.string(&a[0], now)? {
                    Some(s) => parse_int(s).ok_or_else(|| Reply::error(NOT_INTEGER))?,
                    None => 0,
                };
                let next = current
                    .checked_add(delta)
                    .ok_or_else(|| Reply::error("ERR increment or decrement would overflow"))?;
                match self.string(&a[0], now)? {
                    Some(s) => *s = next.to_string().into_bytes(),
                    None => {
                        self.map.insert(a[0].clone(), Entry { value: Value::Str(next.to_string().into_bytes()), expires_at: None });
                    }
                }
                Reply::Int(next)
            }
            "expire" | "pexpire" => self.cmd_expire(name, now, a)?,
            "persist" => match self.live(&a[0], now) {
                Some(entry) if entry.expires_at.is_some() => {
                    entry.expires_at = None;
                    Reply::Int(1)
                }
                _ => Reply::Int(0),
            },
            "ttl" | "pttl" => match self.live(&a[0], now) {
                None => Reply::Int(-2),
                Some(Entry { expires_at: None, .. }) => Reply::Int(-1),
                Some(Entry { expires_at: Some(t), .. }) => {
                    let ms = *t - now;
                    Reply::Int(if name == "ttl" { (ms + 500) / 1000 } else { ms })
                }
            },
            "zadd" => self.cmd_zadd(now, a)?,
            "zrem" => {
                let removed = match self.zset(&a[0], now, false)? {
                    Some(z) => a[1..].iter().filter(|m| z.remove(m)).count(),
                    None => 0,
                };
                self.drop_if_empty(&a[0]);
                Reply::Int(removed as i64)
            }
            "zcard" => Reply::Int(self.zset(&a[0], now, false)?.map_or(0, |z| z.scores.len()) as i64),
            "zscore" => match self.zset(&a[0], now, false)?.and_then(|z| z.scores.get(&a[1]).copied()) {
                Some(score) => Reply::Bulk(format_score(score)),
                None => Reply::Nil,
            },
            "zcount" => {
                let (min, max) = bounds(&a[1], &a[2])?;
                Reply::Int(self.zset(&a[0], now, false)?.map_or(0, |z| z.in_range(&min, &max).count()) as i64)
            }
            "zrange" => self.cmd_zrange(now, a)?,
            "zrangebyscore" => self.cmd_zrangebyscore(now, a)?,
            "zremrangebyscore" => {
                let (min, max) = bounds(&a[1], &a[2])?;
                let removed = match self.zset(&a[0], now, false)? {
                    Some(z) => {
                        let doomed: Vec<Vec<u8>> = z.in_range(&min, &max).map(|(_, m)| m.clone()).collect();
                        doomed.iter().filter(|m| z.remove(m)).count()
                    }
                    None => 0,
                };
                self.drop_if_empty(&a[0]);
                Reply::Int(removed as i64)
            }
            "sadd" => {
                let set = self.set(&a[0], now, true)?.expect("created");
                Reply::Int(a[1..].iter().filter(|m| set.insert((*m).clone())).count() as i64)
            }
            "srem" => {
                let removed = match self.set(&a[0], now, false)? {
                    Some(set) => a[1..].iter().filter(|m| set.remove(*m)).count(),
                    None => 0,
                };
                self.drop_if_empty(&a[0]);
                Reply::Int(removed as i64)
            }
            "smembers" => {
                let mut members: Vec<Vec<u8>> = self.set(&a[0], now, false)?.map(|s| s.iter().cloned().collect()).unwrap_or_default();
                members.sort();
                Reply::Array(members.into_iter().map(Reply::Bulk).collect())
            }
            "sismember" => Reply::bool(self.set(&a[0], now, false)?.is_some_and(|s| s.contains(&a[1]))),
            "scard" => Reply::Int(self.set(&a[0], now, false)?.map_or(0, |s| s.len()) as i64),
            "hset" => {
                if a.len().is_multiple_of(2) {
                    return Err(wrong_args(name));
                }
                let hash = self.hash(&a[0], now, true)?.expect("created");
                let added = a[1..].chunks(2).filter(|kv| hash.insert(kv[0].clone(), kv[1].clone()).is_none()).count();
                Reply::Int(added as i64)
            }
            "hget" => match self.hash(&a[0], now, false)?.and_then(|h| h.get(&a[1]).cloned()) {
                Some(v) => Reply::Bulk(v),
                None => Reply::Nil,
            },
            "hmget" => {
                let hash = self.hash(&a[0], now, false)?;
                Reply::Array(
                    a[1..]
                        .iter()
                        .map(|f| hash.as_ref().and_then(|h| h.get(f)).map_or(Reply::Nil, |v| Reply::Bulk(v.clone())))
                        .collect(),
                )
            }
            "hdel" => {
                let removed = match self.hash(&a[0], now, false)? {
                    Some(h) => a[1..].iter().filter(|f| h.remove(*f).is_some()).count(),
                    None => 0,
                };
                self.drop_if_empty(&a[0]);
                Reply::Int(removed as i64)
            }
            "hgetall" => {
                let mut pairs: Vec<(Vec<u8>, Vec<u8>)> =
                    self.hash(&a[0], now, false)?.map(|h| h.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default();
                pairs.sort();
                Reply::Array(pairs.into_iter().flat_map(|(k, v)| [Reply::Bulk(k), Reply::Bulk(v)]).collect())
            }
            "hincrby" => {
                let delta = int(&a[2])?;
                let hash = self.hash(&a[0], now, true)?.expect("created");
                let current = match hash.get(&a[1]) {
                    Some(v) => parse_int(v).ok_or_else(|| Reply::error("ERR hash value is not an integer"))?,
                    None => 0,
                };
                let next = current
                    .checked_add(delta)
                    .ok_or_else(|| Reply::error("ERR increment or decrement would overflow"))?;
                hash.insert(a[1].clone(), next.to_string().into_bytes());
                Reply::Int(next)
            }
            "publish" => Reply::Int(0),
            "dbsize" => {
                self.map.retain(|_, e| e.expires_at.is_none_or(|t| t > now));
                Reply::Int(self.map.len() as i64)
            }
            "flushall" | "flushdb" => match a {
                [] => {
                    self.map.clear();
                    Reply::ok()
                }
                [mode] if mode.eq_ignore_ascii_case(b"sync") || mode.eq_ignore_ascii_case(b"async") => {
                    self.map.clear();
                    Reply::ok()
                }
                _ => return Err(Reply::error(SYNTAX)),
            },
            _ => return Err(Rejected::Unknown.reply(&[name.as_bytes().to_vec()])),
        })
    }

    fn cmd_set(&mut self, now: i64, a: &[Vec<u8>]) -> Result<Reply, Reply> {
        // Options are read first (an option that contradicts an earlier one is a syntax
        // error), then the expire time, then the key.
        let (mut expire, mut nx, mut xx, mut keep_ttl, mut get) = (None::<(String, &[u8])>, false, false, false, false);
        let mut i = 2;
        while i < a.len() {
            let option = String::from_utf8_lossy(&a[i]).to_ascii_uppercase();
            let next = a.get(i + 1);
            match option.as_str() {
                "NX" if !xx => nx = true,
                "XX" if !nx => xx = true,
                "GET" => get = true,
                "KEEPTTL" if expire.is_none() => keep_ttl = true,
                "EX" | "PX" | "EXAT" | "PXAT"
                    if !keep_ttl && next.is_some() && expire.as_ref().is_none_or(|(unit, _)| *unit == option) =>
                {
                    expire = Some((option, next.expect("checked")));
                    i += 1;
                }
                _ => return Err(Reply::error(SYNTAX)),
            }
            i += 1;
        }
        let expires_at = match expire {
            None => None,
            Some((unit, amount)) => {
                let amount = parse_int(amount).ok_or_else(|| Reply::error(NOT_INTEGER))?;
                let ms = match unit.as_str() {
                    "EX" | "EXAT" => amount.checked_mul(1000),
                    _ => Some(amount),
                };
                let at = match unit.as_str() {
                    "EX" | "PX" => ms.and_then(|ms| ms.checked_add(now)),
                    _ => ms,
                };
                match at {
                    Some(at) if amount > 0 && at > 0 => Some(at),
                    _ => return Err(invalid_expire("set")),
                }
            }
        };
        let previous = match self.live(&a[0], now) {
            None => None,
            Some(Entry { value: Value::Str(s), expires_at }) => Some((s.clone(), *expires_at)),
            Some(_) if get => return Err(Reply::error(WRONGTYPE)),
            Some(entry) => Some((Vec::new(), entry.expires_at)),
        };
        let exists = previous.is_some();
        let old_reply = || match &previous {
            Some((s, _)) => Reply::Bulk(s.clone()),
            None => Reply::Nil,
        };
        if (nx && exists) || (xx && !exists) {
            return Ok(if get { old_reply() } else { Reply::Nil });
        }
        let expires_at = if keep_ttl { previous.as_ref().and_then(|(_, t)| *t) } else { expires_at };
        let reply = if get { old_reply() } else { Reply::ok() };
        self.map.insert(a[0].clone(), Entry { value: Value::Str(a[1].clone()), expires_at });
        Ok(reply)
    }

    /// `EXPIRE key seconds [NX|XX|GT|LT]`; a time in the past deletes the key.
    fn cmd_expire(&mut self, name: &str, now: i64, a: &[Vec<u8>]) -> Result<Reply, Reply> {
        let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
        for option in &a[2..] {
            match String::from_utf8_lossy(option).to_ascii_uppercase().as_str() {
                "NX" => nx = true,
                "XX" => xx = true,
                "GT" => gt = true,
                "LT" => lt = true,
                _ => return Err(Reply::error(format!("ERR Unsupported option {}", String::from_utf8_lossy(option)))),
            }
        }
        if nx && (xx || gt || lt) {
            return Err(Reply::error("ERR NX and XX, GT or LT options at the same time are not compatible"));
        }
        if gt && lt {
            return Err(Reply::error("ERR GT and LT options at the same time are not compatible"));
        }
        let amount = parse_int(&a[1]).ok_or_else(|| Reply::error(NOT_INTEGER))?;
        let ms = if name == "expire" { amount.checked_mul(1000) } else { Some(amount) };
        let when = ms.and_then(|ms| ms.checked_add(now)).ok_or_else(|| invalid_expire(name))?;
        let Some(entry) = self.live(&a[0], now) else {
            return Ok(Reply::Int(0));
        };
        // A key without a TTL counts as expiring never: GT always fails, LT always passes.
        let refused = match entry.expires_at {
            None => xx || gt,
            Some(current) => nx || (gt && when <= current) || (lt && when >= current),
        };
        if refused {
            return Ok(Reply::Int(0));
        }
        if when <= now {
            self.map.remove(&a[0]);
        } else {
            entry.expires_at = Some(when);
        }
        Ok(Reply::Int(1))
    }

    /// `ZADD key [NX|XX] [GT|LT] [CH] [INCR] score member ...`
    fn cmd_zadd(&mut self, now: i64, a: &[Vec<u8>]) -> Result<Reply, Reply> {
        let (mut nx, mut xx, mut gt, mut lt, mut ch, mut incr) = (false, false, false, false, false, false);
        let mut i = 1;
        while i < a.len() {
            match String::from_utf8_lossy(&a[i]).to_ascii_uppercase().as_str() {
                "NX" => nx = true,
                "XX" => xx = true,
                "GT" => gt = true,
                "LT" => lt = true,
                "CH" => ch = true,
                "INCR" => incr = true,
                _ => break,
            }
            i += 1;
        }
        let pairs = &a[i..];
        if pairs.is_empty() || !pairs.len().is_multiple_of(2) {
            return Err(Reply::error(SYNTAX));
        }
        if incr && pairs.len() > 2 {
            return Err(Reply::error("ERR INCR option supports a single increment-element pair"));
        }
        if nx && xx {
            return Err(Reply::error("ERR XX and NX options at the same time are not compatible"));
        }
        if (nx && (gt || lt)) || (gt && lt) {
            return Err(Reply::error("ERR GT, LT, and/or NX options at the same time are not compatible"));
        }
        let scored: Vec<(f64, Vec<u8>)> = pairs
            .chunks(2)
            .map(|p| parse_float(&p[0]).map(|s| (s, p[1].clone())).ok_or_else(|| Reply::error(NOT_FLOAT)))
            .collect::<Result<_, _>>()?;
        let (mut added, mut updated, mut last) = (0, 0, None);
        if let Some(zset) = self.zset(&a[0], now, !xx)? {
            for (score, member) in scored {
                let new = match zset.scores.get(&member).copied() {
                    None if xx => continue,
                    None => {
                        added += 1;
                        score
                    }
                    Some(_) if nx => continue,
                    Some(old) => {
                        let new = if incr { old + score } else { score };
                        if new.is_nan() {
                            return Err(Reply::error("ERR resulting score is not a number (NaN)"));
                        }
                        if (gt && new <= old) || (lt && new >= old) {
                            continue;
                        }
                        if new != old {
                            updated += 1;
                        }
                        new
                    }
                };
                zset.insert(member, new);
                last = Some(new);
            }
        }
        Ok(match (incr, last) {
            (true, Some(score)) => Reply::Bulk(format_score(score)),
            (true, None) => Reply::Nil,
            (false, _) => Reply::Int(if ch { added + updated } else { added }),
        })
    }

    fn cmd_zrange(&mut self, now: i64, a: &[Vec<u8>]) -> Result<Reply, Reply> {
        let with_scores = match &a[3..] {
            [] => false,
            [opt] if opt.eq_ignore_ascii_case(b"withscores") => true,
            _ => return Err(Reply::error(SYNTAX)),
        };
        let start = parse_int(&a[1]).ok_or_else(|| Reply::error(NOT_INTEGER))?;
        let stop = parse_int(&a[2]).ok_or_else(|| Reply::error(NOT_INTEGER))?;
        let Some(zset) = self.zset(&a[0], now, false)? else {
            return Ok(Reply::Array(Vec::new()));
        };
        let len = zset.order.len() as i64;
        let start = if start < 0 { (len + start).max(0) } else { start };
        let stop = if stop < 0 { len + stop } else { stop.min(len - 1) };
        if start > stop || start >= len {
            return Ok(Reply::Array(Vec::new()));
        }
        let items = zset.order.iter().skip(start as usize).take((stop - start + 1) as usize);
        Ok(Reply::Array(range_reply(items, with_scores)))
    }

    fn cmd_zrangebyscore(&mut self, now: i64, a: &[Vec<u8>]) -> Result<Reply, Reply> {
        // Redis reads the options before the bounds, so a bad LIMIT is reported first.
        let (mut with_scores, mut offset, mut count) = (false, 0i64, -1i64);
        let mut i = 3;
        while i < a.len() {
            if a[i].eq_ignore_ascii_case(b"withscores") {
                with_scores = true;
                i += 1;
            } else if a[i].eq_ignore_ascii_case(b"limit") && i + 2 < a.len() {
                offset = parse_int(&a[i + 1]).ok_or_else(|| Reply::error(NOT_INTEGER))?;
                count = parse_int(&a[i + 2]).ok_or_else(|| Reply::error(NOT_INTEGER))?;
                i += 3;
            } else {
                return Err(Reply::error(SYNTAX));
            }
        }
        let (min, max) = bounds(&a[1], &a[2])?;
        let Some(zset) = self.zset(&a[0], now, false)? else {
            return Ok(Reply::Array(Vec::new()));
        };
        if offset < 0 {
            return Ok(Reply::Array(Vec::new()));
        }
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        let items = zset.in_range(&min, &max).skip(offset as usize).take(count);
        Ok(Reply::Array(range_reply(items, with_scores)))
    }
}

fn bounds(min: &[u8], max: &[u8]) -> Result<(Bound, Bound), Reply> {
    match (Bound::parse(min), Bound::parse(max)) {
        (Some(min), Some(max)) => Ok((min, max)),
        _ => Err(Reply::error("ERR min or max is not a float")),
    }
}

fn range_reply<'a>(items: impl Iterator<Item = &'a (Score, Vec<u8>)>, with_scores: bool) -> Vec<Reply> {
    items
        .flat_map(|(score, member)| {
            let mut out = vec![Reply::Bulk(member.clone())];
            if with_scores {
                out.push(Reply::Bulk(format_score(score.0)));
            }
            out
        })
        .collect()
}

struct Inner {
    db: Db,
    scripting: Scripting,
}

/// The embedded server. It can be stopped and started to rehearse outages.
pub struct EmbeddedRedis {
    inner: Mutex<Inner>,
    available: AtomicBool,
}

/// The error a client sees while the embedded server is stopped.
pub const UNAVAILABLE: &str = "Connection refused (embedded Redis is stopped)";

impl Default for EmbeddedRedis {
    fn default() -> Self {
        Self::new()
    }
}

impl EmbeddedRedis {
    pub fn new() -> Self {
        EmbeddedRedis {
            inner: Mutex::new(Inner {
                db: Db::default(),
                scripting: Scripting::new(),
            }),
            available: AtomicBool::new(true),
        }
    }

    /// Stops or restarts the server; a restart keeps the data unless flushed.
    pub fn set_available(&self, available: bool) {
        self.available.store(available, Ordering::SeqCst);
    }

    pub fn is_available(&self) -> bool {
        self.available.load(Ordering::SeqCst)
    }

    /// Runs a command at the current wall-clock time.
    pub fn execute(&self, args: &[Vec<u8>]) -> Result<Reply, String> {
        self.execute_at(chrono::Utc::now().timestamp_millis(), args)
    }

    /// Runs a command at `now` (Unix milliseconds).
    pub fn execute_at(&self, now: i64, args: &[Vec<u8>]) -> Result<Reply, String> {
        if !self.is_available() {
            return Err(UNAVAILABLE.to_string());
        }
        let mut inner = self.inner.lock().map_err(|_| "embedded Redis lock poisoned".to_string())?;
        let Inner { db, scripting } = &mut *inner;
        Ok(match check_command(args) {
            Err(rejected) => rejected.reply(args),
            Ok(name @ ("eval" | "evalsha" | "script")) => scripting.execute(db, now, name, args),
            Ok(name) => db.run(name, now, args),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(db: &mut Db, now: i64, cmd: &str) -> Reply {
        let args: Vec<Vec<u8>> = cmd.split(' ').map(|s| s.as_bytes().to_vec()).collect();
        db.execute(now, &args)
    }

    #[test]
    fn keys_expire_on_time() {
        let mut db = Db::default();
        assert_eq!(run(&mut db, 0, "SET k v PX 100"), Reply::ok());
        assert_eq!(run(&mut db, 50, "PTTL k"), Reply::Int(50));
        assert_eq!(run(&mut db, 99, "GET k"), Reply::bulk("v"));
        assert_eq!(run(&mut db, 100, "GET k"), Reply::Nil);
        assert_eq!(run(&mut db, 100, "TTL k"), Reply::Int(-2));
    }

    #[test]
    fn counters_refuse_non_integers_and_overflow() {
        let mut db = Db::default();
        assert_eq!(run(&mut db, 0, "INCR n"), Reply::Int(1));
        assert_eq!(run(&mut db, 0, "INCRBY n 41"), Reply::Int(42));
        run(&mut db, 0, "SET s abc");
        assert_eq!(run(&mut db, 0, "INCR s"), Reply::error(NOT_INTEGER));
        run(&mut db, 0, "SET big 9223372036854775807");
        assert!(matches!(run(&mut db, 0, "INCR big"), Reply::Error(e) if e.contains("overflow")));
    }

    #[test]
    fn sorted_set_ranges_and_removal() {
        let mut db = Db::default();
        assert_eq!(run(&mut db, 0, "ZADD z 3 c 1 a 2 b"), Reply::Int(3));
        assert_eq!(run(&mut db, 0, "ZADD z 5 a"), Reply::Int(0));
        assert_eq!(
            run(&mut db, 0, "ZRANGE z 0 0 WITHSCORES"),
            Reply::Array(vec![Reply::bulk("b"), Reply::bulk("2")])
        );
        assert_eq!(run(&mut db, 0, "ZREMRANGEBYSCORE z -inf (3"), Reply::Int(1));
        assert_eq!(run(&mut db, 0, "ZCARD z"), Reply::Int(2));
        assert_eq!(run(&mut db, 0, "ZREMRANGEBYSCORE z -inf +inf"), Reply::Int(2));
        assert_eq!(run(&mut db, 0, "EXISTS z"), Reply::Int(0));
    }

    #[test]
    fn wrong_types_are_refused() {
        let mut db = Db::default();
        run(&mut db, 0, "SADD s a");
        assert_eq!(run(&mut db, 0, "GET s"), Reply::error(WRONGTYPE));
        assert_eq!(run(&mut db, 0, "ZADD s 1 a"), Reply::error(WRONGTYPE));
    }

    #[test]
    fn set_options() {
        let mut db = Db::default();
        assert_eq!(run(&mut db, 0, "SET k 1 NX"), Reply::ok());
        assert_eq!(run(&mut db, 0, "SET k 2 NX"), Reply::Nil);
        assert_eq!(run(&mut db, 0, "SET k 3 XX GET"), Reply::bulk("1"));
        assert_eq!(run(&mut db, 0, "SET k 4 EX 0"), Reply::error("ERR invalid expire time in 'set' command"));
        assert_eq!(run(&mut db, 0, "SET k 4 BOGUS"), Reply::error(SYNTAX));
    }

    #[test]
    fn unknown_commands_and_wrong_arity_are_refused_like_redis() {
        let mut db = Db::default();
        assert_eq!(
            run(&mut db, 0, "FooBar a b"),
            Reply::error("ERR unknown command 'FooBar', with args beginning with: 'a' 'b' ")
        );
        let long = format!("NOPE {} b", "x".repeat(200));
        let expected = format!("ERR unknown command 'NOPE', with args beginning with: '{}' ", "x".repeat(128));
        assert_eq!(run(&mut db, 0, &long), Reply::error(expected));
        assert_eq!(run(&mut db, 0, "GET"), wrong_args("get"));
        assert_eq!(run(&mut db, 0, "ZADD z 1"), wrong_args("zadd"));
        assert_eq!(check_command(&[b"EVAL".to_vec()]), Err(Rejected::Arity("eval")));
        assert_eq!(check_command(&[b"nope".to_vec()]), Err(Rejected::Unknown));
    }

    #[test]
    fn set_reads_all_options_before_the_expire_time() {
        let mut db = Db::default();
        assert_eq!(run(&mut db, 0, "SET k v EX"), Reply::error(SYNTAX));
        assert_eq!(run(&mut db, 0, "SET k v EX 10 PX 10"), Reply::error(SYNTAX));
        assert_eq!(run(&mut db, 0, "SET k v EX abc BOGUS"), Reply::error(SYNTAX));
        assert_eq!(run(&mut db, 0, "SET k v EX abc"), Reply::error(NOT_INTEGER));
        assert_eq!(run(&mut db, 0, "SET k v EX 9223372036854775807"), invalid_expire("set"));
        assert_eq!(run(&mut db, 1, "SET k v PX 9223372036854775807"), invalid_expire("set"));
        assert_eq!(run(&mut db, 0, "SET k v EX 10 EX 20"), Reply::ok());
        assert_eq!(run(&mut db, 0, "PTTL k"), Reply::Int(20_000));
    }

    #[test]
    fn decrby_of_the_smallest_integer_overflows() {
        let mut db = Db::default();
        assert_eq!(run(&mut db, 0, "DECRBY n -9223372036854775808"), Reply::error("ERR decrement would overflow"));
    }

    #[test]
    fn expire_options_and_overflow() {
        let mut db = Db::default();
        run(&mut db, 0, "SET k v");
        assert_eq!(run(&mut db, 0, "EXPIRE k 100 GT"), Reply::Int(0), "no TTL counts as forever");
        assert_eq!(run(&mut db, 0, "EXPIRE k 100 XX"), Reply::Int(0));
        assert_eq!(run(&mut db, 0, "EXPIRE k 100 NX"), Reply::Int(1));
        assert_eq!(run(&mut db, 0, "EXPIRE k 50 NX"), Reply::Int(0));
        assert_eq!(run(&mut db, 0, "EXPIRE k 50 GT"), Reply::Int(0));
        assert_eq!(run(&mut db, 0, "EXPIRE k 50 LT"), Reply::Int(1));
        assert_eq!(run(&mut db, 0, "TTL k"), Reply::Int(50));
        assert_eq!(run(&mut db, 0, "EXPIRE k 1 bogus"), Reply::error("ERR Unsupported option bogus"));
        assert!(matches!(run(&mut db, 0, "EXPIRE k 1 NX LT"), Reply::Error(e) if e.starts_with("ERR NX and XX")));
        assert_eq!(run(&mut db, 0, "EXPIRE nokey 9223372036854775807"), invalid_expire("expire"));
        assert_eq!(run(&mut db, 5, "PEXPIRE k 9223372036854775807"), invalid_expire("pexpire"));
        assert_eq!(run(&mut db, 0, "PEXPIRE k -9223372036854775808"), Reply::Int(1));
        assert_eq!(run(&mut db, 0, "EXISTS k"), Reply::Int(0));
    }

    #[test]
    fn zadd_gt_lt_and_incr() {
        let mut db = Db::default();
        run(&mut db, 0, "ZADD z 5 a");
        assert_eq!(run(&mut db, 0, "ZADD z GT CH 1 a 2 b"), Reply::Int(1), "b is added, a is not lowered");
        assert_eq!(run(&mut db, 0, "ZADD z LT CH 1 a"), Reply::Int(1));
        assert_eq!(run(&mut db, 0, "ZADD z INCR 1.5 a"), Reply::bulk("2.5"));
        assert_eq!(run(&mut db, 0, "ZADD z INCR NX 1 a"), Reply::Nil);
        assert_eq!(run(&mut db, 0, "ZADD z INCR 1 a 1 b"), Reply::error("ERR INCR option supports a single increment-element pair"));
        assert!(matches!(run(&mut db, 0, "ZADD z GT LT 1 a"), Reply::Error(e) if e.starts_with("ERR GT, LT")));
        run(&mut db, 0, "ZADD z inf a");
        assert_eq!(run(&mut db, 0, "ZADD z INCR -inf a"), Reply::error("ERR resulting score is not a number (NaN)"));
        assert_eq!(run(&mut db, 0, "ZADD none XX 1 a"), Reply::Int(0));
        assert_eq!(run(&mut db, 0, "EXISTS none"), Reply::Int(0));
    }

    #[test]
    fn scores_parse_and_print_like_redis_7_0() {
        assert_eq!(parse_float(b"-Infinity"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_float(b"1e500"), None, "overflow is refused");
        assert_eq!(parse_float(b"nan"), None);
        assert_eq!(parse_float(b" 1"), None);
        for (score, text) in [
            (0.1, "0.10000000000000001"),
            (1e-7, "9.9999999999999995e-08"),
            (1e16, "10000000000000000"),
            (2e17, "2e+17"),
            (123456789.123, "123456789.123"),
            (-2.5, "-2.5"),
            (1700000000000.0, "1700000000000"),
            (-0.0, "-0"),
            (f64::INFINITY, "inf"),
        ] {
            assert_eq!(String::from_utf8(format_score(score)).unwrap(), text);
        }
        let mut db = Db::default();
        run(&mut db, 0, "ZADD z 0 b -0 a");
        assert_eq!(
            run(&mut db, 0, "ZRANGE z 0 -1 WITHSCORES"),
            Reply::Array(vec![Reply::bulk("a"), Reply::bulk("0"), Reply::bulk("b"), Reply::bulk("0")]),
            "-0 is stored as 0 and ties with it"
        );
    }

    #[test]
    fn zrangebyscore_reads_limit_before_the_bounds() {
        let mut db = Db::default();
        assert_eq!(run(&mut db, 0, "ZRANGEBYSCORE z a b LIMIT x y"), Reply::error(NOT_INTEGER));
        assert_eq!(run(&mut db, 0, "ZRANGEBYSCORE z a b"), Reply::error("ERR min or max is not a float"));
    }

    #[test]
    fn flushall_takes_only_sync_or_async() {
        let mut db = Db::default();
        assert_eq!(run(&mut db, 0, "FLUSHALL ASYNC"), Reply::ok());
        assert_eq!(run(&mut db, 0, "FLUSHALL x"), Reply::error(SYNTAX));
    }

    #[test]
    fn a_stopped_server_refuses_commands() {
        let redis = EmbeddedRedis::new();
        redis.set_available(false);
        assert!(redis.execute(&[b"PING".to_vec()]).is_err());
        redis.set_available(true);
        assert_eq!(redis.execute(&[b"PING".to_vec()]), Ok(Reply::Status("PONG".into())));
    }
}
