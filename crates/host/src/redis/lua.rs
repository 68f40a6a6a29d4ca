//! `EVAL`, `EVALSHA` and `SCRIPT` for the embedded Redis: scripts run for real
//! in Lua 5.1 (the version Redis embeds), atomically against the keyspace,
//! with Redis's conversions between Lua values and replies.

use std::cell::RefCell;
use std::collections::HashMap;

use mlua::{Function, Lua, MultiValue, Table, Value};

use super::embedded::Db;
use super::reply::Reply;

/// The scripting engine: one Lua state and the scripts compiled so far.
pub struct Scripting {
    lua: Lua,
    scripts: HashMap<String, Function>,
}

impl Default for Scripting {
    fn default() -> Self {
        Self::new()
    }
}

fn sha1_hex(body: &[u8]) -> String {
    sha1_smol::Sha1::from(body).digest().to_string()
}

impl Scripting {
    pub fn new() -> Self {
        Scripting {
            lua: Lua::new(),
            scripts: HashMap::new(),
        }
    }

    /// Runs `EVAL`, `EVALSHA` or `SCRIPT ...` against `db` at time `now`.
    pub fn execute(&mut self, db: &mut Db, now: i64, args: &[Vec<u8>]) -> Reply {
        let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
        match name.as_str() {
            "script" => self.script_command(&args[1..]),
            _ => {
                if args.len() < 3 {
                    return Reply::error(format!("ERR wrong number of arguments for '{name}' command"));
                }
                let function = if name == "eval" {
                    match self.compile(&args[1]) {
                        Ok((_, f)) => f,
                        Err(e) => return e,
                    }
                } else {
                    let sha = String::from_utf8_lossy(&args[1]).to_ascii_lowercase();
                    match self.scripts.get(&sha) {
                        Some(f) => f.clone(),
                        None => return Reply::error("NOSCRIPT No matching script. Please use EVAL."),
                    }
                };
                let Some(numkeys) = std::str::from_utf8(&args[2]).ok().and_then(|n| n.parse::<i64>().ok()) else {
                    return Reply::error("ERR value is not an integer or out of range");
                };
                let rest = &args[3..];
                if numkeys < 0 {
                    return Reply::error("ERR Number of keys can't be negative");
                }
                if numkeys as usize > rest.len() {
                    return Reply::error("ERR Number of keys can't be greater than number of args");
                }
                let (keys, argv) = rest.split_at(numkeys as usize);
                self.run(function, db, now, keys, argv)
            }
        }
    }

    fn script_command(&mut self, args: &[Vec<u8>]) -> Reply {
        let sub = args.first().map(|s| String::from_utf8_lossy(s).to_ascii_lowercase()).unwrap_or_default();
        match (sub.as_str(), &args[1.min(args.len())..]) {
            ("load", [body]) => match self.compile(body) {
                Ok((sha, _)) => Reply::Bulk(sha.into_bytes()),
                Err(e) => e,
            },
            ("exists", shas) if !shas.is_empty() => Reply::Array(
                shas.iter()
                    .map(|s| Reply::bool(self.scripts.contains_key(&String::from_utf8_lossy(s).to_ascii_lowercase())))
                    .collect(),
            ),
            ("flush", _) => {
                self.scripts.clear();
                Reply::ok()
            }
            _ => Reply::error(format!("ERR unknown subcommand or wrong number of arguments for '{sub}'")),
        }
    }

    fn compile(&mut self, body: &[u8]) -> Result<(String, Function), Reply> {
        let sha = sha1_hex(body);
        if let Some(f) = self.scripts.get(&sha) {
            return Ok((sha, f.clone()));
        }
        let function = self
            .lua
            .load(body)
            .set_name(format!("@user_script:{sha}"))
            .into_function()
            .map_err(|e| Reply::error(format!("ERR Error compiling script (new function): {e}")))?;
        self.scripts.insert(sha.clone(), function.clone());
        Ok((sha, function))
    }

    fn run(&self, function: Function, db: &mut Db, now: i64, keys: &[Vec<u8>], argv: &[Vec<u8>]) -> Reply {
        let db = RefCell::new(db);
        let result = self.lua.scope(|scope| {
            let lua = &self.lua;
            let globals = lua.globals();
            globals.set("KEYS", byte_table(lua, keys)?)?;
            globals.set("ARGV", byte_table(lua, argv)?)?;
            let redis = lua.create_table()?;
            let call = |raise: bool| {
                let db = &db;
                scope.create_function_mut(move |lua, args: MultiValue| {
                    let command = command_args(args)?;
                    let name = command.first().map(|c| c.to_ascii_lowercase()).unwrap_or_default();
                    let reply = if matches!(name.as_slice(), b"eval" | b"evalsha" | b"script") {
                        Reply::error("ERR This Redis command is not allowed from script")
                    } else {
                        db.borrow_mut().execute(now, &command)
                    };
                    match reply {
                        Reply::Error(e) if raise => Err(mlua::Error::RuntimeError(e)),
                        reply => reply_to_lua(lua, reply),
                    }
                })
            };
            redis.set("call", call(true)?)?;
            redis.set("pcall", call(false)?)?;
            redis.set("error_reply", lua.create_function(|lua, msg: String| status_table(lua, "err", msg))?)?;
            redis.set("status_reply", lua.create_function(|lua, msg: String| status_table(lua, "ok", msg))?)?;
            redis.set("sha1hex", lua.create_function(|_, s: mlua::String| Ok(sha1_hex(&s.as_bytes())))?)?;
            redis.set("log", lua.create_function(|_, _: MultiValue| Ok(()))?)?;
            for (name, level) in [("LOG_DEBUG", 0), ("LOG_VERBOSE", 1), ("LOG_NOTICE", 2), ("LOG_WARNING", 3)] {
                redis.set(name, level)?;
            }
            globals.set("redis", redis)?;
            let value: Value = function.call(())?;
            Ok(lua_to_reply(value))
        });
        match result {
            Ok(reply) => reply,
            Err(error) => Reply::error(script_error(&error)),
        }
    }
}

/// Redis reports a failed `redis.call` with the command's own error text.
fn script_error(error: &mlua::Error) -> String {
    let mut cause = error;
    loop {
        match cause {
            mlua::Error::CallbackError { cause: inner, .. } => cause = inner,
            mlua::Error::WithContext { cause: inner, .. } => cause = inner,
            mlua::Error::RuntimeError(message) if message.starts_with("ERR") || message.starts_with("WRONGTYPE") => {
                return message.clone();
            }
            other => return format!("ERR Error running script: {other}"),
        }
    }
}

fn byte_table(lua: &Lua, items: &[Vec<u8>]) -> mlua::Result<Table> {
    let table = lua.create_table_with_capacity(items.len(), 0)?;
    for (i, item) in items.iter().enumerate() {
        table.raw_set(i + 1, lua.create_string(item)?)?;
    }
    Ok(table)
}

fn status_table(lua: &Lua, field: &str, message: String) -> mlua::Result<Table> {
    let table = lua.create_table()?;
    table.set(field, message)?;
    Ok(table)
}

/// Arguments of `redis.call`: strings and numbers only, as in Redis.
fn command_args(args: MultiValue) -> mlua::Result<Vec<Vec<u8>>> {
    if args.is_empty() {
        return Err(mlua::Error::RuntimeError(
            "ERR Please specify at least one argument for this redis lib call".into(),
        ));
    }
    args.into_iter()
        .map(|value| match value {
            Value::String(s) => Ok(s.as_bytes().to_vec()),
            Value::Integer(i) => Ok(i.to_string().into_bytes()),
            Value::Number(n) => Ok(super::embedded::format_score(n)),
            _ => Err(mlua::Error::RuntimeError(
                "ERR Lua redis lib command arguments must be strings or integers".into(),
            )),
        })
        .collect()
}

fn reply_to_lua(lua: &Lua, reply: Reply) -> mlua::Result<Value> {
    Ok(match reply {
        Reply::Nil => Value::Boolean(false),
        Reply::Int(n) => Value::Number(n as f64),
        Reply::Bulk(b) => Value::String(lua.create_string(&b)?),
        Reply::Status(s) => Value::Table(status_table(lua, "ok", s)?),
        Reply::Error(e) => Value::Table(status_table(lua, "err", e)?),
        Reply::Array(items) => {
            let table = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.into_iter().enumerate() {
                table.raw_set(i + 1, reply_to_lua(lua, item)?)?;
            }
            Value::Table(table)
        }
    })
}

fn lua_to_reply(value: Value) -> Reply {
    match value {
        Value::Nil | Value::Boolean(false) => Reply::Nil,
        Value::Boolean(true) => Reply::Int(1),
        Value::Integer(i) => Reply::Int(i),
        // Redis truncates Lua numbers to integers.
        Value::Number(n) => Reply::Int(n.trunc() as i64),
        Value::String(s) => Reply::Bulk(s.as_bytes().to_vec()),
        Value::Table(table) => {
            if let Ok(Value::String(e)) = table.raw_get::<Value>("err") {
                return Reply::Error(e.to_string_lossy());
            }
            if let Ok(Value::String(s)) = table.raw_get::<Value>("ok") {
                return Reply::Status(s.to_string_lossy());
            }
            let mut items = Vec::new();
            for i in 1.. {
                match table.raw_get::<Value>(i) {
                    Ok(Value::Nil) | Err(_) => break,
                    Ok(v) => items.push(lua_to_reply(v)),
                }
            }
            Reply::Array(items)
        }
        _ => Reply::Nil,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(s: &mut Scripting, db: &mut Db, script: &str, keys: &[&str], argv: &[&str]) -> Reply {
        let mut args = vec![b"EVAL".to_vec(), script.as_bytes().to_vec(), keys.len().to_string().into_bytes()];
        args.extend(keys.iter().chain(argv).map(|a| a.as_bytes().to_vec()));
        s.execute(db, 1_000, &args)
    }

    #[test]
    fn scripts_call_redis_and_convert_replies() {
        let (mut s, mut db) = (Scripting::new(), Db::default());
        let reply = eval(
            &mut s,
            &mut db,
            "redis.call('SET', KEYS[1], ARGV[1]); return {redis.call('GET', KEYS[1]), redis.call('INCR', 'n'), 3.9, false, 'x'}",
            &["k"],
            &["v"],
        );
        assert_eq!(
            reply,
            Reply::Array(vec![Reply::bulk("v"), Reply::Int(1), Reply::Int(3), Reply::Nil, Reply::bulk("x")])
        );
    }

    #[test]
    fn errors_raise_in_call_and_return_in_pcall() {
        let (mut s, mut db) = (Scripting::new(), Db::default());
        db.execute(0, &[b"SADD".to_vec(), b"set".to_vec(), b"a".to_vec()]);
        let reply = eval(&mut s, &mut db, "return redis.call('GET', 'set')", &[], &[]);
        assert!(matches!(&reply, Reply::Error(e) if e.starts_with("WRONGTYPE")), "{reply:?}");
        let reply = eval(&mut s, &mut db, "local r = redis.pcall('GET', 'set'); return r.err ~= nil", &[], &[]);
        assert_eq!(reply, Reply::Int(1));
        let reply = eval(&mut s, &mut db, "return redis.status_reply('FINE')", &[], &[]);
        assert_eq!(reply, Reply::Status("FINE".into()));
    }

    #[test]
    fn evalsha_needs_a_loaded_script() {
        let (mut s, mut db) = (Scripting::new(), Db::default());
        let sha = match s.execute(&mut db, 0, &[b"SCRIPT".to_vec(), b"LOAD".to_vec(), b"return 7".to_vec()]) {
            Reply::Bulk(sha) => sha,
            other => panic!("{other:?}"),
        };
        assert_eq!(s.execute(&mut db, 0, &[b"EVALSHA".to_vec(), sha, b"0".to_vec()]), Reply::Int(7));
        let reply = s.execute(&mut db, 0, &[b"EVALSHA".to_vec(), b"ffff".to_vec(), b"0".to_vec()]);
        assert!(matches!(reply, Reply::Error(e) if e.starts_with("NOSCRIPT")));
    }
}
