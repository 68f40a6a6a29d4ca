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
        self.0.total_cmp(&other.0)
    }
}

#[derive(Debug, Clone, Default)]
struct SortedSet {
    scores: HashMap<Vec<u8>, f64>,
    order: BTreeSet<(Score, Vec<u8>)>,
}

impl SortedSet {
    /// Returns whether the member is new.
    fn insert(&mut self, member: Vec<u8>, score: f64) -> bool {
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

#[derive(Debug, Clone)]
enum Value {
    Str(Vec<u8>),
    Hash(HashMap<Vec<u8>, Vec<u8>>),
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

fn parse_int(arg: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(arg).ok()?;
    // Redis refuses leading '+', spaces and leading zeros ("01").
    if text.starts_with('+') || (text.len() > 1 && text.starts_with('0')) || text.starts_with("-0") {
        return None;
    }
    text.parse().ok()
}

fn parse_float(arg: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(arg).ok()?;
    match text.to_ascii_lowercase().as_str() {
        "inf" | "+inf" => Some(f64::INFINITY),
        "-inf" => Some(f64::NEG_INFINITY),
        t if t.contains("nan") || t.contains("inf") => None,
        t => t.parse().ok(),
    }
}

/// Formats a score the way Redis replies with it.
pub(crate) fn format_score(score: f64) -> Vec<u8> {
    if score == f64::INFINITY {
        b"inf".to_vec()
    } else if score == f64::NEG_INFINITY {
        b"-inf".to_vec()
    } else {
        format!("{score}").into_bytes()
    }
}

fn wrong_args(name: &str) -> Reply {
    Reply::error(format!("ERR wrong number of arguments for '{name}' command"))
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
        if self.commands % 1024 == 0 {
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

    fn hash(&mut self, key: &[u8], now: i64, create: bool) -> Result<Option<&mut HashMap<Vec<u8>, Vec<u8>>>, Reply> {
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
        let Some(name) = args.first() else {
            return Reply::error("ERR empty command");
        };
        let name = String::from_utf8_lossy(name).to_ascii_lowercase();
        self.sweep(now);
        match self.dispatch(&name, now, &args[1..]) {
            Ok(reply) | Err(reply) => reply,
        }
    }

    fn dispatch(&mut self, name: &str, now: i64, a: &[Vec<u8>]) -> Result<Reply, Reply> {
        let arity = |ok: bool| if ok { Ok(()) } else { Err(wrong_args(name)) };
        let int = |arg: &[u8]| parse_int(arg).ok_or_else(|| Reply::error(NOT_INTEGER));
        Ok(match name {
            "ping" => match a {
                [] => Reply::Status("PONG".into()),
                [msg] => Reply::bulk(msg.clone()),
                _ => return Err(wrong_args(name)),
            },
            "echo" => {
                arity(a.len() == 1)?;
                Reply::bulk(a[0].clone())
            }
            "time" => {
                arity(a.is_empty())?;
                Reply::Array(vec![
                    Reply::bulk((now / 1000).to_string()),
                    Reply::bulk(((now % 1000) * 1000).to_string()),
                ])
            }
            "get" => {
                arity(a.len() == 1)?;
                match self.string(&a[0], now)? {
                    Some(s) => Reply::bulk(s.clone()),
                    None => Reply::Nil,
                }
            }
            "mget" => {
                arity(!a.is_empty())?;
                Reply::Array(
                    a.iter()
                        .map(|k| match self.string(k, now) {
                            Ok(Some(s)) => Reply::bulk(s.clone()),
                            _ => Reply::Nil,
                        })
                        .collect(),
                )
            }
            "set" => self.cmd_set(now, a)?,
            "del" | "unlink" => {
                arity(!a.is_empty())?;
                let removed = a.iter().filter(|k| self.live(k, now).is_some() && self.map.remove(*k).is_some()).count();
                Reply::Int(removed as i64)
            }
            "exists" => {
                arity(!a.is_empty())?;
                Reply::Int(a.iter().filter(|k| self.live(k, now).is_some()).count() as i64)
            }
            "type" => {
                arity(a.len() == 1)?;
                Reply::Status(self.live(&a[0], now).map_or("none", |e| e.value.type_name()).into())
            }
            "incr" | "decr" | "incrby" | "decrby" => {
                let delta = match name {
                    "incr" => { arity(a.len() == 1)?; 1 }
                    "decr" => { arity(a.len() == 1)?; -1 }
                    "incrby" => { arity(a.len() == 2)?; int(&a[1])? }
                    _ => { arity(a.len() == 2)?; int(&a[1])?.checked_neg().ok_or_else(|| Reply::error(NOT_INTEGER))? }
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
            "expire" | "pexpire" => {
                arity(a.len() == 2)?;
                let amount = int(&a[1])?;
                let ms = if name == "expire" { amount.saturating_mul(1000) } else { amount };
                match self.live(&a[0], now) {
                    None => Reply::Int(0),
                    Some(_) if ms <= 0 => {
                        self.map.remove(&a[0]);
                        Reply::Int(1)
                    }
                    Some(entry) => {
                        entry.expires_at = Some(now.saturating_add(ms));
                        Reply::Int(1)
                    }
                }
            }
            "persist" => {
                arity(a.len() == 1)?;
                match self.live(&a[0], now) {
                    Some(entry) if entry.expires_at.is_some() => {
                        entry.expires_at = None;
                        Reply::Int(1)
                    }
                    _ => Reply::Int(0),
                }
            }
            "ttl" | "pttl" => {
                arity(a.len() == 1)?;
                match self.live(&a[0], now) {
                    None => Reply::Int(-2),
                    Some(Entry { expires_at: None, .. }) => Reply::Int(-1),
                    Some(Entry { expires_at: Some(t), .. }) => {
                        let ms = *t - now;
                        Reply::Int(if name == "ttl" { (ms + 500) / 1000 } else { ms })
                    }
                }
            }
            "zadd" => self.cmd_zadd(now, a)?,
            "zrem" => {
                arity(a.len() >= 2)?;
                let removed = match self.zset(&a[0], now, false)? {
                    Some(z) => a[1..].iter().filter(|m| z.remove(m)).count(),
                    None => 0,
                };
                self.drop_if_empty(&a[0]);
                Reply::Int(removed as i64)
            }
            "zcard" => {
                arity(a.len() == 1)?;
                Reply::Int(self.zset(&a[0], now, false)?.map_or(0, |z| z.scores.len()) as i64)
            }
            "zscore" => {
                arity(a.len() == 2)?;
                match self.zset(&a[0], now, false)?.and_then(|z| z.scores.get(&a[1]).copied()) {
                    Some(score) => Reply::Bulk(format_score(score)),
                    None => Reply::Nil,
                }
            }
            "zcount" => {
                arity(a.len() == 3)?;
                let (min, max) = bounds(&a[1], &a[2])?;
                Reply::Int(self.zset(&a[0], now, false)?.map_or(0, |z| z.in_range(&min, &max).count()) as i64)
            }
            "zrange" => self.cmd_zrange(now, a)?,
            "zrangebyscore" => self.cmd_zrangebyscore(now, a)?,
            "zremrangebyscore" => {
                arity(a.len() == 3)?;
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
                arity(a.len() >= 2)?;
                let set = self.set(&a[0], now, true)?.expect("created");
                Reply::Int(a[1..].iter().filter(|m| set.insert((*m).clone())).count() as i64)
            }
            "srem" => {
                arity(a.len() >= 2)?;
                let removed = match self.set(&a[0], now, false)? {
                    Some(set) => a[1..].iter().filter(|m| set.remove(*m)).count(),
                    None => 0,
                };
                self.drop_if_empty(&a[0]);
                Reply::Int(removed as i64)
            }
            "smembers" => {
                arity(a.len() == 1)?;
                let mut members: Vec<Vec<u8>> = self.set(&a[0], now, false)?.map(|s| s.iter().cloned().collect()).unwrap_or_default();
                members.sort();
                Reply::Array(members.into_iter().map(Reply::Bulk).collect())
            }
            "sismember" => {
                arity(a.len() == 2)?;
                Reply::bool(self.set(&a[0], now, false)?.is_some_and(|s| s.contains(&a[1])))
            }
            "scard" => {
                arity(a.len() == 1)?;
                Reply::Int(self.set(&a[0], now, false)?.map_or(0, |s| s.len()) as i64)
            }
            "hset" => {
                arity(a.len() >= 3 && a.len() % 2 == 1)?;
                let hash = self.hash(&a[0], now, true)?.expect("created");
                let added = a[1..].chunks(2).filter(|kv| hash.insert(kv[0].clone(), kv[1].clone()).is_none()).count();
                Reply::Int(added as i64)
            }
            "hget" => {
                arity(a.len() == 2)?;
                match self.hash(&a[0], now, false)?.and_then(|h| h.get(&a[1]).cloned()) {
                    Some(v) => Reply::Bulk(v),
                    None => Reply::Nil,
                }
            }
            "hdel" => {
                arity(a.len() >= 2)?;
                let removed = match self.hash(&a[0], now, false)? {
                    Some(h) => a[1..].iter().filter(|f| h.remove(*f).is_some()).count(),
                    None => 0,
                };
                self.drop_if_empty(&a[0]);
                Reply::Int(removed as i64)
            }
            "hgetall" => {
                arity(a.len() == 1)?;
                let mut pairs: Vec<(Vec<u8>, Vec<u8>)> =
                    self.hash(&a[0], now, false)?.map(|h| h.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default();
                pairs.sort();
                Reply::Array(pairs.into_iter().flat_map(|(k, v)| [Reply::Bulk(k), Reply::Bulk(v)]).collect())
            }
            "hincrby" => {
                arity(a.len() == 3)?;
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
            "publish" => {
                arity(a.len() == 2)?;
                Reply::Int(0)
            }
            "dbsize" => {
                arity(a.is_empty())?;
                self.map.retain(|_, e| e.expires_at.is_none_or(|t| t > now));
                Reply::Int(self.map.len() as i64)
            }
            "flushall" | "flushdb" => {
                self.map.clear();
                Reply::ok()
            }
            _ => Reply::error(format!("ERR unknown command '{name}', with args beginning with: ")),
        })
    }

    fn cmd_set(&mut self, now: i64, a: &[Vec<u8>]) -> Result<Reply, Reply> {
        if a.len() < 2 {
            return Err(wrong_args("set"));
        }
        let (mut expires_at, mut nx, mut xx, mut keep_ttl, mut get) = (None, false, false, false, false);
        let mut i = 2;
        while i < a.len() {
            let option = String::from_utf8_lossy(&a[i]).to_ascii_uppercase();
            match option.as_str() {
                "NX" => nx = true,
                "XX" => xx = true,
                "KEEPTTL" => keep_ttl = true,
                "GET" => get = true,
                "EX" | "PX" | "EXAT" | "PXAT" => {
                    let amount = a.get(i + 1).and_then(|v| parse_int(v)).ok_or_else(|| Reply::error(NOT_INTEGER))?;
                    if amount <= 0 {
                        return Err(Reply::error("ERR invalid expire time in 'set' command"));
                    }
                    expires_at = Some(match option.as_str() {
                        "EX" => now.saturating_add(amount.saturating_mul(1000)),
                        "PX" => now.saturating_add(amount),
                        "EXAT" => amount.saturating_mul(1000),
                        _ => amount,
                    });
                    i += 1;
                }
                _ => return Err(Reply::error(SYNTAX)),
            }
            i += 1;
        }
        if (nx && xx) || (keep_ttl && expires_at.is_some()) {
            return Err(Reply::error(SYNTAX));
        }
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

    fn cmd_zadd(&mut self, now: i64, a: &[Vec<u8>]) -> Result<Reply, Reply> {
        if a.len() < 3 {
            return Err(wrong_args("zadd"));
        }
        let (mut nx, mut xx, mut ch) = (false, false, false);
        let mut i = 1;
        while i < a.len() {
            match String::from_utf8_lossy(&a[i]).to_ascii_uppercase().as_str() {
                "NX" => nx = true,
                "XX" => xx = true,
                "CH" => ch = true,
                _ => break,
            }
            i += 1;
        }
        let pairs = &a[i..];
        if pairs.is_empty() || pairs.len() % 2 != 0 {
            return Err(Reply::error(SYNTAX));
        }
        if nx && xx {
            return Err(Reply::error("ERR XX and NX options at the same time are not compatible"));
        }
        let scored: Vec<(f64, Vec<u8>)> = pairs
            .chunks(2)
            .map(|p| parse_float(&p[0]).map(|s| (s, p[1].clone())).ok_or_else(|| Reply::error(NOT_FLOAT)))
            .collect::<Result<_, _>>()?;
        let zset = self.zset(&a[0], now, true)?.expect("created");
        let mut counted = 0;
        for (score, member) in scored {
            let old = zset.scores.get(&member).copied();
            if (nx && old.is_some()) || (xx && old.is_none()) {
                continue;
            }
            zset.insert(member, score);
            if old.is_none() || (ch && old != Some(score)) {
                counted += 1;
            }
        }
        self.drop_if_empty(&a[0]);
        Ok(Reply::Int(counted))
    }

    fn cmd_zrange(&mut self, now: i64, a: &[Vec<u8>]) -> Result<Reply, Reply> {
        if a.len() < 3 {
            return Err(wrong_args("zrange"));
        }
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
        if a.len() < 3 {
            return Err(wrong_args("zrangebyscore"));
        }
        let (min, max) = bounds(&a[1], &a[2])?;
        let (mut with_scores, mut offset, mut count) = (false, 0usize, usize::MAX);
        let mut i = 3;
        while i < a.len() {
            if a[i].eq_ignore_ascii_case(b"withscores") {
                with_scores = true;
                i += 1;
            } else if a[i].eq_ignore_ascii_case(b"limit") && i + 2 < a.len() {
                let o = parse_int(&a[i + 1]).ok_or_else(|| Reply::error(NOT_INTEGER))?;
                let c = parse_int(&a[i + 2]).ok_or_else(|| Reply::error(NOT_INTEGER))?;
                if o < 0 {
                    return Ok(Reply::Array(Vec::new()));
                }
                offset = o as usize;
                count = if c < 0 { usize::MAX } else { c as usize };
                i += 3;
            } else {
                return Err(Reply::error(SYNTAX));
            }
        }
        let Some(zset) = self.zset(&a[0], now, false)? else {
            return Ok(Reply::Array(Vec::new()));
        };
        let items = zset.in_range(&min, &max).skip(offset).take(count);
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
        let name = args.first().map(|n| n.to_ascii_lowercase()).unwrap_or_default();
        Ok(match name.as_slice() {
            b"eval" | b"evalsha" | b"script" => scripting.execute(db, now, args),
            _ => db.execute(now, args),
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
    fn a_stopped_server_refuses_commands() {
        let redis = EmbeddedRedis::new();
        redis.set_available(false);
        assert!(redis.execute(&[b"PING".to_vec()]).is_err());
        redis.set_available(true);
        assert_eq!(redis.execute(&[b"PING".to_vec()]), Ok(Reply::Status("PONG".into())));
    }
}
