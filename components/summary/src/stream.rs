//! GET /api/metrics/stream: the summary of the same query as Server-Sent
//! Events, sent again whenever it changes (`analytics_core::stream`).
//!
//! One instance serves a stream for its whole lifetime. It reads the
//! type's journal headers once a second (16 short values, the read every
//! summary starts with) and computes the summary, as the summary endpoint
//! does and through the same cache, only when their state moved. Between
//! checks it sleeps on a WASI monotonic-clock pollable: the runtime parks
//! the instance, which costs no CPU.

use analytics_platform::core::api_error::ApiError;
use analytics_platform::core::auth::Scope;
use analytics_platform::core::config as settings;
use analytics_platform::core::journal::{HEADER, SHARDS};
use analytics_platform::core::kv::Reader;
use analytics_platform::core::pending::{journal_keys, Pending};
use analytics_platform::core::query::Query;
use analytics_platform::core::stream::{event_id, opening, summary_event, window_moves, Step, Stream, HEARTBEAT, MAX_LIFETIME_SECONDS};
use analytics_platform::gate::{self, Admitted, Ahead};
use analytics_platform::sse::EventStream;
use analytics_platform::{clock, config, handler, respond};
use spin_sdk::http::{Request, Response, ResponseOutparam};

use crate::{ask_at, first_read, summarize, unavailable, Asked, ALLOW};

/// What a stream asks, checked before its head is sent.
struct Opened {
    query: Query,
    /// `stream_lifetime_seconds`, in milliseconds.
    lifetime_ms: u64,
}

fn open(request: &Request) -> Result<Opened, ApiError> {
    let query = Query::parse(request.query())?;
    let lifetime = settings::whole(config::lookup(), "stream_lifetime_seconds", 0, MAX_LIFETIME_SECONDS)?;
    Ok(Opened { query, lifetime_ms: lifetime * 1_000 })
}

/// The id of the summary that `heads` (values of [`first_read`], or of the
/// journal keys alone) hold.
fn id_of(journals: &[String], heads: &[Option<Vec<u8>>], moves: bool, now: i64) -> Result<String, ApiError> {
    let headers = Pending::headers(journals, &heads[..journals.len().min(heads.len())]).map_err(unavailable)?;
    Ok(event_id(&Pending::state(&headers), moves, now))
}

/// The summary of `asked` as an event, from the values of its [`first_read`].
fn event(asked: Asked, heads: Vec<Option<Vec<u8>>>, journals: &[String], moves: bool, admitted: &mut Admitted) -> Result<(String, Vec<u8>), ApiError> {
    let id = id_of(journals, &heads, moves, asked.now)?;
    let keys = first_read(&asked);
    let (_, body) = summarize(asked, keys, heads, admitted)?;
    let event = summary_event(&id, &body);
    Ok((id, event))
}

/// Answers `request` with a stream, or with the summary endpoint's error
/// (before the stream's head, so a bad query or a store down is a plain 4xx or 503).
pub async fn serve(request: Request, out: ResponseOutparam) {
    let opened_at = clock::now_ms();
    let opened = open(&request);
    let asked = opened.as_ref().map_err(Clone::clone).and_then(|o| ask_at(&o.query, opened_at));
    let ahead = Ahead { keys: asked.as_ref().map(first_read).unwrap_or_default(), heads: SHARDS, bytes: HEADER };
    let (mut admitted, heads) = match gate::admit_reading(&request, ALLOW, Scope::Read, &ahead) {
        Ok(admitted) => admitted,
        Err(response) => return handler::send(out, response).await,
    };
    let last_event_id = request.header("last-event-id").and_then(|v| v.as_str());
    let started = opened.and_then(|opened| {
        let asked = asked?;
        let moves = window_moves(&asked.summary, &opened.query);
        let journals = journal_keys(&asked.summary.metric_type);
        let mut stream = Stream::open(opened_at, opened.lifetime_ms, last_event_id);
        // The first check is made on the gate's read, before the head is
        // sent: an error then is an ordinary error response.
        let first = match stream.step(opened_at, &id_of(&journals, &heads, moves, opened_at)?) {
            Step::Summary => {
                let (id, event) = event(asked, heads, &journals, moves, &mut admitted)?;
                stream.sent(id);
                event
            }
            Step::Heartbeat | Step::End => HEARTBEAT.to_vec(),
        };
        Ok((opened.query, moves, journals, stream, first))
    });
    let (query, moves, journals, mut stream, first) = match started {
        Ok(started) => started,
        Err(e) => {
            analytics_platform::counters::count_store_failure("summary", &e);
            return handler::send(out, admitted.finish(respond::error(&e, ALLOW))).await;
        }
    };
    let head = admitted.finish(Response::builder().status(200).build());
    let mut events = match EventStream::open(out, head) {
        Ok(events) => events,
        Err(e) => return eprintln!("stream not opened: {e}"),
    };
    if events.send([opening(), first].concat()).await.is_err() {
        return;
    }
    // Ended by its lifetime, a client gone (a write fails) or the store
    // failing (the client reconnects and is told why).
    let ended = async {
        loop {
            clock::sleep_ms(stream.wait_ms(clock::now_ms()));
            let now = clock::now_ms();
            let heads = admitted.store.get_many_heads(&journals, SHARDS, HEADER).map_err(|e| unavailable(e).message)?;
            let chunk = match stream.step(now, &id_of(&journals, &heads, moves, now).map_err(|e| e.message)?) {
                Step::End => return Ok::<(), String>(()),
                Step::Heartbeat => HEARTBEAT.to_vec(),
                Step::Summary => {
                    // Read again, whole and with the cache entry, as a summary does.
                    let asked = ask_at(&query, now).map_err(|e| e.message)?;
                    let heads = admitted.store.get_many_heads(&first_read(&asked), SHARDS, HEADER).map_err(|e| unavailable(e).message)?;
                    let (id, event) = event(asked, heads, &journals, moves, &mut admitted).map_err(|e| e.message)?;
                    stream.sent(id);
                    event
                }
            };
            events.send(chunk).await.map_err(|e| e.to_string())?;
        }
    };
    if let Err(why) = ended.await {
        eprintln!("stream ended before its lifetime: {why}");
    }
}
