//! `EVAL`, `EVALSHA` and `SCRIPT` for the embedded Redis: scripts run for real
//! in Lua 5.1 (the version Redis embeds), atomically against the keyspace, in
//! the environment Redis 7 gives them (read-only globals, `redis.*`, its
//! `pcall`), with its conversions between Lua values and replies and its
//! error texts.

use std::collections::HashMap;
use std::ffi::{c_int, CStr};

use mlua::{ffi, ChunkMode, Function, Lua, LuaOptions, MultiValue, StdLib, Table, Value};

use super::embedded::{check_command, format_score, one_line, parse_int, Db, Rejected};
use super::reply::Reply;

/// Names of the Lua built-ins a Redis 7 script can see; the rest (`print`,
/// `setfenv`, `require`, ...) are "nonexistent global variables" there.
const BUILTINS: &[&str] = &[
    "string", "math", "table", "coroutine", "xpcall", "tostring", "setmetatable", "next", "assert",
    "tonumber", "rawequal", "collectgarbage", "getmetatable", "rawset", "rawget", "type", "select",
    "unpack", "gcinfo", "pairs", "ipairs", "error", "loadstring", "load", "_VERSION",
];

/// Chunk name of [`PRELUDE`], so error locations skip its frames.
const PRELUDE_NAME: &str = "=redis";

/// Run once per Lua state, given the table of visible globals.
/// Returns the environment scripts run in.
const PRELUDE: &str = r#"
local visible = ...
local error, type, tostring, base_pcall = error, type, tostring, pcall

function visible.redis.replicate_commands() return true end

-- Redis 7's pcall hands the script a caught {err=...} as its message.
local function message_of(ok, ...)
  if not ok then
    local e = ...
    if type(e) == 'table' and (type(e.err) == 'string' or type(e.err) == 'number') then
      return false, e.err
    end
  end
  return ok, ...
end
visible.pcall = function(...) return message_of(base_pcall(...)) end

local env = setmetatable({}, {
  __index = function(_, name)
    local value = visible[name]
    if value == nil then
      error("Script attempted to access nonexistent global variable '" .. tostring(name) .. "'", 2)
    end
    return value
  end,
  __newindex = function() error('Attempt to modify a readonly table', 2) end,
})
visible._G = env
return env
"#;

/// What `redis.call` works on while a script runs, lent to the Lua state.
struct Running {
    db: Db,
    now: i64,
}

/// The scripting engine: one Lua state and the scripts compiled so far.
pub struct Scripting {
    lua: Lua,
    /// The globals scripts see; `KEYS` and `ARGV` are replaced on each run.
    visible: Table,
    /// The read-only environment every script function runs in.
    env: Table,
    xpcall: Function,
    locate: Function,
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
        Self::build().expect("the Lua environment for scripts builds")
    }

    fn build() -> mlua::Result<Self> {
        let lua = Lua::new_with(StdLib::TABLE | StdLib::STRING | StdLib::MATH, LuaOptions::default())?;
        let globals = lua.globals();
        let visible = lua.create_table()?;
        for name in BUILTINS {
            visible.raw_set(*name, globals.raw_get::<Value>(*name)?)?;
        }
        visible.raw_set("redis", redis_library(&lua)?)?;
        let env: Table = lua.load(PRELUDE).set_name(PRELUDE_NAME).call(visible.clone())?;
        Ok(Scripting {
            xpcall: globals.raw_get("xpcall")?,
            locate: lua.create_function(locate)?,
            lua,
            visible,
            env,
            scripts: HashMap::new(),
        })
    }

    /// Runs `EVAL`, `EVALSHA` or `SCRIPT ...` (already checked for arity) against `db` at time `now`.
    pub fn execute(&mut self, db: &mut Db, now: i64, name: &str, args: &[Vec<u8>]) -> Reply {
        if name == "script" {
            return self.script_command(args);
        }
        // Redis's order of checks: the SHA's length, the key count, then the script.
        if name == "evalsha" && args[1].len() != 40 {
            return Reply::error(NOSCRIPT);
        }
        let Some(numkeys) = parse_int(&args[2]) else {
            return Reply::error("ERR value is not an integer or out of range");
        };
        let rest = &args[3..];
        if numkeys > rest.len() as i64 {
            return Reply::error("ERR Number of keys can't be greater than number of args");
        }
        if numkeys < 0 {
            return Reply::error("ERR Number of keys can't be negative");
        }
        let (sha, function) = if name == "eval" {
            match self.compile(&args[1]) {
                Ok(compiled) => compiled,
                Err(e) => return e,
            }
        } else {
            let sha = String::from_utf8_lossy(&args[1]).to_ascii_lowercase();
            match self.scripts.get(&sha) {
                Some(f) => (sha, f.clone()),
                None => return Reply::error(NOSCRIPT),
            }
        };
        let (keys, argv) = rest.split_at(numkeys as usize);
        match self.run(&function, db, now, keys, argv) {
            Ok((true, value)) => lua_to_reply(value),
            Ok((false, Value::Table(error))) => script_error(&error, &sha),
            Ok((false, _)) => Reply::error(format!("ERR Error running script {sha}, execution failure")),
            Err(e) => Reply::error(one_line(&format!("ERR Error running script {sha}, {}", error_message(&e)))),
        }
    }

    fn script_command(&mut self, args: &[Vec<u8>]) -> Reply {
        let sub = String::from_utf8_lossy(&args[1]);
        let rest = &args[2..];
        match (sub.to_ascii_lowercase().as_str(), rest) {
            ("load", [body]) => match self.compile(body) {
                Ok((sha, _)) => Reply::Bulk(sha.into_bytes()),
                Err(e) => e,
            },
            ("exists", shas) if !shas.is_empty() => Reply::Array(
                shas.iter()
                    .map(|s| Reply::bool(self.scripts.contains_key(&String::from_utf8_lossy(s).to_ascii_lowercase())))
                    .collect(),
            ),
            ("flush", []) => {
                self.scripts.clear();
                Reply::ok()
            }
            ("flush", [mode]) if mode.eq_ignore_ascii_case(b"sync") || mode.eq_ignore_ascii_case(b"async") => {
                self.scripts.clear();
                Reply::ok()
            }
            ("flush", _) => Reply::error("ERR SCRIPT FLUSH only support SYNC|ASYNC option"),
            (sub @ ("load" | "exists"), _) => {
                Reply::error(format!("ERR wrong number of arguments for 'script|{sub}' command"))
            }
            _ => {
                let shown: String = sub.chars().take(128).collect();
                Reply::error(one_line(&format!("ERR unknown subcommand '{shown}'. Try SCRIPT HELP.")))
            }
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
            .set_name("@user_script")
            .set_mode(ChunkMode::Text)
            .set_environment(self.env.clone())
            .into_function()
            .map_err(|e| {
                let message = match &e {
                    mlua::Error::SyntaxError { message, .. } => message.clone(),
                    other => other.to_string(),
                };
                Reply::error(one_line(&format!("ERR Error compiling script (new function): {message}")))
            })?;
        self.scripts.insert(sha.clone(), function.clone());
        Ok((sha, function))
    }

    /// Calls `function` as Redis does, under an error handler that records where it failed.
    fn run(&self, function: &Function, db: &mut Db, now: i64, keys: &[Vec<u8>], argv: &[Vec<u8>]) -> mlua::Result<(bool, Value)> {
        self.visible.raw_set("KEYS", byte_table(&self.lua, keys)?)?;
        self.visible.raw_set("ARGV", byte_table(&self.lua, argv)?)?;
        self.lua.set_app_data(Running { db: std::mem::take(db), now });
        let result = self.xpcall.call::<(bool, Value)>((function, &self.locate));
        *db = self.lua.remove_app_data::<Running>().expect("lent above").db;
        result
    }
}

const NOSCRIPT: &str = "NOSCRIPT No matching script. Please use EVAL.";

/// Redis's `__redis__err__handler`: makes what a script raised an `{err=...}`
/// table and notes the script line it came from: the first Lua frame, skipping
/// the C function that raised (`error`, `redis.call`) and the prelude's
/// metamethods (which blame the line that read or wrote a global).
fn locate(lua: &Lua, raised: Value) -> mlua::Result<Table> {
    let error = match raised {
        Value::Table(table) => table,
        Value::Error(e) => lua.create_table_from([("err", format!("ERR {}", error_message(&e)))])?,
        other => {
            let text: mlua::String = lua.globals().raw_get::<Function>("tostring")?.call(other)?;
            lua.create_table_from([("err", lua.create_string([&b"ERR "[..], &text.as_bytes()].concat())?)])?
        }
    };
    let frame = (1..)
        .map_while(|level| {
            lua.inspect_stack(level, |d| {
                let source = d.source();
                (source.what, source.source.map(|s| s.into_owned()), d.current_line())
            })
        })
        .find(|(what, source, _)| *what != "C" && source.as_deref() != Some(PRELUDE_NAME));
    if let Some((_, Some(source), Some(line))) = frame {
        error.raw_set("source", source)?;
        error.raw_set("line", line)?;
    }
    Ok(error)
}

/// The reply for a script that raised: `WRONGTYPE ... script: <sha>, on @user_script:3.`
fn script_error(error: &Table, sha: &str) -> Reply {
    let message = error.get::<Option<mlua::String>>("err").ok().flatten();
    let message = message.map_or_else(|| "(null)".to_string(), |m| m.to_string_lossy());
    let source = error.get::<Option<String>>("source").ok().flatten();
    let line = error.get::<Option<i64>>("line").ok().flatten();
    Reply::Error(one_line(&match (source, line) {
        (Some(source), Some(line)) => format!("{message} script: {sha}, on {source}:{line}."),
        _ => message,
    }))
}

/// The text of an error raised by Rust code, without mlua's wrapping.
fn error_message(error: &mlua::Error) -> String {
    match error {
        mlua::Error::CallbackError { cause, .. } => error_message(cause),
        mlua::Error::WithContext { cause, .. } => error_message(cause),
        mlua::Error::RuntimeError(message) => message.clone(),
        other => other.to_string(),
    }
}

/// `redis.call`/`redis.pcall` on the Rust side: runs the command, errors come back as `{err=...}`.
fn redis_command(lua: &Lua, args: MultiValue) -> mlua::Result<Value> {
    let reply = match command_args(args) {
        Err(message) => Reply::error(message),
        Ok(command) => match check_command(&command) {
            Err(Rejected::Unknown) => Reply::error("ERR Unknown Redis command called from script"),
            Err(Rejected::Arity(_)) => Reply::error("ERR Wrong number of args calling Redis command from script"),
            Ok("eval" | "evalsha" | "script") => Reply::error("ERR This Redis command is not allowed from script"),
            Ok(name) => {
                let mut running = lua.app_data_mut::<Running>().expect("a script is running");
                let now = running.now;
                running.db.run(name, now, &command)
            }
        },
    };
    reply_to_lua(lua, reply)
}

/// Registry key of `redis.pcall`, which [`redis_call`] calls.
const PCALL_KEY: &CStr = c"redis.pcall";

/// `redis.call`: `redis.pcall`, raising the `{err=...}` tables it returns. A C
/// function, as in Redis, so that `return redis.call(...)` keeps the script's
/// frame (a Lua function would be tail-called, and the error's line lost).
///
/// It holds no Rust values that need dropping, so the `longjmp` of `lua_error`
/// (or of an error inside `lua_call`) across it is sound.
unsafe extern "C-unwind" fn redis_call(state: *mut ffi::lua_State) -> c_int {
    // SAFETY: called by Lua with a valid state; a C function has LUA_MINSTACK free
    // slots, of which this uses two (the function, then the `err` field).
    unsafe {
        let arguments = ffi::lua_gettop(state);
        ffi::lua_getfield(state, ffi::LUA_REGISTRYINDEX, PCALL_KEY.as_ptr());
        ffi::lua_insert(state, 1);
        ffi::lua_call(state, arguments, 1);
        if ffi::lua_istable(state, -1) != 0 {
            ffi::lua_getfield(state, -1, c"err".as_ptr());
            let failed = ffi::lua_isnil(state, -1) == 0;
            ffi::lua_pop(state, 1);
            if failed {
                ffi::lua_error(state);
            }
        }
        1
    }
}

/// Arguments of `redis.call`: strings, and numbers written as Redis 7.0 writes them (`%.17g`).
fn command_args(args: MultiValue) -> Result<Vec<Vec<u8>>, &'static str> {
    if args.is_empty() {
        return Err("ERR Please specify at least one argument for this redis lib call");
    }
    args.into_iter()
        .map(|value| match value {
            Value::String(s) => Ok(s.as_bytes().to_vec()),
            Value::Integer(i) => Ok(format_score(i as f64)),
            Value::Number(n) => Ok(format_score(n)),
            _ => Err("ERR Lua redis lib command arguments must be strings or integers"),
        })
        .collect()
}

/// `redis.error_reply`, `redis.status_reply`, `redis.sha1hex`, `redis.log` and the log levels.
fn redis_library(lua: &Lua) -> mlua::Result<Table> {
    let redis = lua.create_table()?;
    let pcall = lua.create_function(redis_command)?;
    lua.set_named_registry_value(PCALL_KEY.to_str().expect("ASCII"), &pcall)?;
    redis.raw_set("pcall", pcall)?;
    // SAFETY: `redis_call` keeps to the Lua C API's rules (see there).
    redis.raw_set("call", unsafe { lua.create_c_function(redis_call)? })?;
    // Redis answers a bad call of the two with an error table rather than raising.
    let reply_table = |field: &'static str, text: fn(&[u8]) -> Vec<u8>| {
        lua.create_function(move |lua, args: MultiValue| match only_string(args) {
            Some(message) => status_table(lua, field, &text(&message.as_bytes())),
            None => status_table(lua, "err", b"ERR wrong number or type of arguments"),
        })
    };
    redis.raw_set("error_reply", reply_table("err", error_reply_text)?)?;
    redis.raw_set("status_reply", reply_table("ok", |message| message.to_vec())?)?;
    redis.raw_set(
        "sha1hex",
        lua.create_function(|lua, args: MultiValue| {
            if args.len() != 1 {
                return Err(mlua::Error::RuntimeError("wrong number of arguments".into()));
            }
            let text = lua.coerce_string(args.into_iter().next().expect("one argument"))?;
            Ok(sha1_hex(&text.map(|s| s.as_bytes().to_vec()).unwrap_or_default()))
        })?,
    )?;
    redis.raw_set("log", lua.create_function(|_, _: MultiValue| Ok(()))?)?;
    for (name, level) in [("LOG_DEBUG", 0), ("LOG_VERBOSE", 1), ("LOG_NOTICE", 2), ("LOG_WARNING", 3)] {
        redis.raw_set(name, level)?;
    }
    Ok(redis)
}

/// The one argument, if it is one string (numbers do not count).
fn only_string(args: MultiValue) -> Option<mlua::String> {
    let mut args = args.into_iter();
    match (args.next(), args.next()) {
        (Some(Value::String(s)), None) => Some(s),
        _ => None,
    }
}

/// The `err` of `redis.error_reply(message)`: `-CODE text` and `CODE text`
/// keep their code, a single word gets `ERR` in front; CR/LF around the text go.
fn error_reply_text(message: &[u8]) -> Vec<u8> {
    let body = message.strip_prefix(b"-").unwrap_or(message);
    let (code, text) = match body.iter().position(|&b| b == b' ') {
        Some(space) => (&body[..space], &body[space + 1..]),
        None => (&b"ERR"[..], body),
    };
    let kept = |b: &u8| !b"\r\n".contains(b);
    let start = text.iter().position(kept).unwrap_or(text.len());
    let end = text.iter().rposition(kept).map_or(start, |i| i + 1);
    [code, b" ", &text[start..end]].concat()
}

fn byte_table(lua: &Lua, items: &[Vec<u8>]) -> mlua::Result<Table> {
    let table = lua.create_table_with_capacity(items.len(), 0)?;
    for (i, item) in items.iter().enumerate() {
        table.raw_set(i + 1, lua.create_string(item)?)?;
    }
    Ok(table)
}

fn status_table(lua: &Lua, field: &str, message: &[u8]) -> mlua::Result<Table> {
    let table = lua.create_table()?;
    table.raw_set(field, lua.create_string(message)?)?;
    Ok(table)
}

fn reply_to_lua(lua: &Lua, reply: Reply) -> mlua::Result<Value> {
    Ok(match reply {
        Reply::Nil => Value::Boolean(false),
        Reply::Int(n) => Value::Number(n as f64),
        Reply::Bulk(b) => Value::String(lua.create_string(&b)?),
        Reply::Status(s) => Value::Table(status_table(lua, "ok", s.as_bytes())?),
        Reply::Error(e) => Value::Table(status_table(lua, "err", e.as_bytes())?),
        Reply::Array(items) => {
            let table = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.into_iter().enumerate() {
                table.raw_set(i + 1, reply_to_lua(lua, item)?)?;
            }
            Value::Table(table)
        }
    })
}

/// A Lua number as Redis converts it, a C cast to `long long`: truncated, and
/// `i64::MIN` when out of range or NaN (what x86-64 produces).
fn lua_number_to_int(n: f64) -> i64 {
    const LIMIT: f64 = 9_223_372_036_854_775_808.0; // 2^63
    if (-LIMIT..LIMIT).contains(&n) { n as i64 } else { i64::MIN }
}

fn lua_to_reply(value: Value) -> Reply {
    match value {
        Value::Boolean(true) => Reply::Int(1),
        Value::Integer(i) => Reply::Int(i),
        Value::Number(n) => Reply::Int(lua_number_to_int(n)),
        Value::String(s) => Reply::Bulk(s.as_bytes().to_vec()),
        Value::Table(table) => {
            if let Ok(Value::String(e)) = table.raw_get::<Value>("err") {
                return Reply::Error(one_line(&e.to_string_lossy()));
            }
            if let Ok(Value::String(s)) = table.raw_get::<Value>("ok") {
                return Reply::Status(one_line(&s.to_string_lossy()));
            }
            match table.raw_get::<Value>("double") {
                Ok(Value::Number(d)) => return Reply::Bulk(format_score(d)),
                Ok(Value::Integer(d)) => return Reply::Bulk(format_score(d as f64)),
                _ => {}
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
        // nil, false, functions, userdata.
        _ => Reply::Nil,
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    fn command(s: &mut Scripting, db: &mut Db, args: &[&str]) -> Reply {
        let args: Vec<Vec<u8>> = args.iter().map(|a| a.as_bytes().to_vec()).collect();
        let name = check_command(&args).expect("a known command with enough arguments");
        s.execute(db, 1_000, name, &args)
    }

    fn eval(s: &mut Scripting, db: &mut Db, script: &str, keys: &[&str], argv: &[&str]) -> Reply {
        let numkeys = keys.len().to_string();
        let mut args = vec!["EVAL", script, &numkeys];
        args.extend(keys.iter().chain(argv));
        command(s, db, &args)
    }

    fn error_of(reply: Reply) -> String {
        match reply {
            Reply::Error(e) => e,
            other => panic!("not an error: {other:?}"),
        }
    }

    #[test]
    fn scripts_call_redis_and_convert_replies() {
        let (mut s, mut db) = (Scripting::new(), Db::default());
        let reply = eval(
            &mut s,
            &mut db,
            "redis.call('SET', KEYS[1], ARGV[1]); return {redis.call('GET', KEYS[1]), redis.call('INCR', 'n'), 3.9, -3.9, 'x', false, nil, 'unreached'}",
            &["k"],
            &["v"],
        );
        assert_eq!(
            reply,
            Reply::Array(vec![Reply::bulk("v"), Reply::Int(1), Reply::Int(3), Reply::Int(-3), Reply::bulk("x"), Reply::Nil])
        );
        assert_eq!(eval(&mut s, &mut db, "return {1e20, 0/0}", &[], &[]), Reply::Array(vec![Reply::Int(i64::MIN); 2]));
        assert_eq!(eval(&mut s, &mut db, "return {double = 1.5}", &[], &[]), Reply::bulk("1.5"));
    }

    #[test]
    fn numbers_passed_to_redis_are_written_with_17_digits() {
        let (mut s, mut db) = (Scripting::new(), Db::default());
        let reply = eval(&mut s, &mut db, "redis.call('SET', 'a', 0.1); redis.call('SET', 'b', 2^53); return {redis.call('GET', 'a'), redis.call('GET', 'b')}", &[], &[]);
        assert_eq!(reply, Reply::Array(vec![Reply::bulk("0.10000000000000001"), Reply::bulk("9007199254740992")]));
    }

    #[test]
    fn errors_raise_in_call_with_the_script_line_and_return_in_pcall() {
        let (mut s, mut db) = (Scripting::new(), Db::default());
        db.execute(0, &[b"SADD".to_vec(), b"set".to_vec(), b"a".to_vec()]);
        let script = "local x = 1\nreturn redis.call('GET', 'set')";
        let sha = sha1_hex(script.as_bytes());
        assert_eq!(
            error_of(eval(&mut s, &mut db, script, &[], &[])),
            format!("WRONGTYPE Operation against a key holding the wrong kind of value script: {sha}, on @user_script:2.")
        );
        let reply = eval(&mut s, &mut db, "local r = redis.pcall('GET', 'set'); return r.err", &[], &[]);
        assert!(matches!(reply, Reply::Bulk(b) if b.starts_with(b"WRONGTYPE")));
        // Redis 7's pcall gives the message, not the table.
        let reply = eval(&mut s, &mut db, "local ok, e = pcall(redis.call, 'GET', 'set'); return e", &[], &[]);
        assert!(matches!(reply, Reply::Bulk(b) if b.starts_with(b"WRONGTYPE")));
        let reply = eval(&mut s, &mut db, "error('boom')", &[], &[]);
        assert!(error_of(reply).starts_with("ERR user_script:1: boom script: "));
    }

    #[test]
    fn commands_refused_inside_scripts() {
        let (mut s, mut db) = (Scripting::new(), Db::default());
        for (script, message) in [
            ("return redis.pcall('NOSUCH')", "ERR Unknown Redis command called from script"),
            ("return redis.pcall('GET')", "ERR Wrong number of args calling Redis command from script"),
            ("return redis.pcall()", "ERR Please specify at least one argument for this redis lib call"),
            ("return redis.pcall('GET', {})", "ERR Lua redis lib command arguments must be strings or integers"),
            ("return redis.pcall('EVAL', 'return 1', 0)", "ERR This Redis command is not allowed from script"),
        ] {
            assert_eq!(eval(&mut s, &mut db, script, &[], &[]), Reply::error(message), "{script}");
        }
    }

    #[test]
    fn error_and_status_replies() {
        let (mut s, mut db) = (Scripting::new(), Db::default());
        for (script, reply) in [
            ("return redis.error_reply('boom')", Reply::error("ERR boom")),
            ("return redis.error_reply('My Error')", Reply::error("My Error")),
            ("return redis.error_reply('-CODE text')", Reply::error("CODE text")),
            ("return redis.error_reply(5)", Reply::error("ERR wrong number or type of arguments")),
            ("return redis.status_reply('FINE')", Reply::Status("FINE".into())),
            ("return {err = 'raw'}", Reply::error("raw")),
        ] {
            assert_eq!(eval(&mut s, &mut db, script, &[], &[]), reply, "{script}");
        }
    }

    #[test]
    fn globals_are_read_only_and_limited() {
        let (mut s, mut db) = (Scripting::new(), Db::default());
        let error = error_of(eval(&mut s, &mut db, "x = 5", &[], &[]));
        assert!(error.starts_with("ERR user_script:1: Attempt to modify a readonly table script: "), "{error}");
        let error = error_of(eval(&mut s, &mut db, "return print", &[], &[]));
        assert!(error.starts_with("ERR user_script:1: Script attempted to access nonexistent global variable 'print'"), "{error}");
        assert_eq!(eval(&mut s, &mut db, "return type(string.format)", &[], &[]), Reply::bulk("function"));
    }

    #[test]
    fn compile_errors_name_the_user_script() {
        let (mut s, mut db) = (Scripting::new(), Db::default());
        assert_eq!(
            eval(&mut s, &mut db, "return 1 +", &[], &[]),
            Reply::error("ERR Error compiling script (new function): user_script:1: unexpected symbol near '<eof>'")
        );
        // The key count is checked before the script is compiled.
        assert_eq!(
            command(&mut s, &mut db, &["EVAL", "return 1 +", "abc"]),
            Reply::error("ERR value is not an integer or out of range")
        );
    }

    #[test]
    fn evalsha_needs_a_loaded_script() {
        let (mut s, mut db) = (Scripting::new(), Db::default());
        let Reply::Bulk(sha) = command(&mut s, &mut db, &["SCRIPT", "LOAD", "return 7"]) else { panic!("SCRIPT LOAD") };
        let sha = String::from_utf8(sha).unwrap();
        assert_eq!(command(&mut s, &mut db, &["EVALSHA", &sha.to_uppercase(), "0"]), Reply::Int(7));
        let missing = "f".repeat(40);
        assert!(error_of(command(&mut s, &mut db, &["EVALSHA", &missing, "0"])).starts_with("NOSCRIPT"));
        // A SHA of the wrong length is refused before the key count is read.
        assert!(error_of(command(&mut s, &mut db, &["EVALSHA", "abc", "x"])).starts_with("NOSCRIPT"));
        assert_eq!(command(&mut s, &mut db, &["SCRIPT", "FLUSH"]), Reply::ok());
        assert!(error_of(command(&mut s, &mut db, &["EVALSHA", &sha, "0"])).starts_with("NOSCRIPT"));
    }

    #[test]
    fn script_subcommand_errors() {
        let (mut s, mut db) = (Scripting::new(), Db::default());
        for (args, message) in [
            (&["SCRIPT", "LOAD"][..], "ERR wrong number of arguments for 'script|load' command"),
            (&["SCRIPT", "EXISTS"], "ERR wrong number of arguments for 'script|exists' command"),
            (&["SCRIPT", "FLUSH", "bogus"], "ERR SCRIPT FLUSH only support SYNC|ASYNC option"),
            (&["SCRIPT", "Foo"], "ERR unknown subcommand 'Foo'. Try SCRIPT HELP."),
        ] {
            assert_eq!(command(&mut s, &mut db, args), Reply::error(message), "{args:?}");
        }
    }
}
