//! Grouping rows into batches within the server's limits.

use crate::input::{Item, Row};
use crate::reply::{Rejection, PAYLOAD_TOO_LARGE};

/// The server's limits for one `POST /api/metrics/batch`.
pub const MAX_BATCH_ITEMS: usize = 1000;
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;

/// Rows to send together, numbered in file order so results can be reported
/// in that order whatever order concurrent requests finish in.
#[derive(Debug, Default, PartialEq)]
pub struct Batch {
    pub seq: u64,
    pub items: Vec<Item>,
    /// Rows refused before sending, reported with this batch.
    pub refused: Vec<(u64, Rejection)>,
}

impl Batch {
    pub fn rows(&self) -> usize {
        self.items.len() + self.refused.len()
    }
}

/// The request body: a JSON array of the items' objects, as they were read.
pub fn body(items: &[Item]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body_len(items));
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(item.json.as_bytes());
    }
    out.push(b']');
    out
}

pub fn body_len(items: &[Item]) -> usize {
    2 + items.iter().map(|i| i.json.len()).sum::<usize>() + items.len().saturating_sub(1)
}

/// Fills batches of at most `max_items` rows and `max_bytes` of body.
pub struct Batcher {
    max_items: usize,
    max_bytes: usize,
    current: Batch,
    bytes: usize,
}

impl Batcher {
    pub fn new(max_items: usize, max_bytes: usize) -> Batcher {
        Batcher { max_items: max_items.max(1), max_bytes, current: Batch::default(), bytes: 2 }
    }

    /// Adds a row; returns the batch it completed, if any. An item that
    /// alone would be over the byte limit is refused here (the server would
    /// answer 413 for any batch holding it).
    pub fn push(&mut self, row: Row) -> Option<Batch> {
        let mut done = None;
        match row {
            Row::Item(item) if item.json.len() + 2 > self.max_bytes => {
                let message = format!("the row is {} bytes as JSON, over the {} byte limit of a batch", item.json.len(), self.max_bytes);
                self.current.refused.push((item.line, Rejection::new(PAYLOAD_TOO_LARGE, message)));
            }
            Row::Item(item) => {
                let added = item.json.len() + usize::from(!self.current.items.is_empty());
                if !self.current.items.is_empty() && self.bytes + added > self.max_bytes {
                    done = Some(self.take());
                }
                self.bytes += item.json.len() + usize::from(!self.current.items.is_empty());
                self.current.items.push(item);
            }
            Row::Rejected(line, rejection) => self.current.refused.push((line, rejection)),
        }
        if done.is_none() && self.current.rows() >= self.max_items {
            done = Some(self.take());
        }
        done
    }

    /// The last, partly filled batch.
    pub fn finish(mut self) -> Option<Batch> {
        (self.current.rows() > 0).then(|| self.take())
    }

    fn take(&mut self) -> Batch {
        let seq = self.current.seq;
        self.bytes = 2;
        std::mem::replace(&mut self.current, Batch { seq: seq + 1, ..Batch::default() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(line: u64, json: &str) -> Row {
        Row::Item(Item { line, json: json.to_string() })
    }

    #[test]
    fn body_is_a_json_array_of_the_items() {
        let items = vec![Item { line: 2, json: r#"{"a":1}"#.into() }, Item { line: 3, json: "{}".into() }];
        assert_eq!(body(&items), br#"[{"a":1},{}]"#);
        assert_eq!(body_len(&items), body(&items).len());
        assert_eq!(body(&[]), b"[]");
        assert_eq!(body_len(&[]), 2);
    }

    #[test]
    fn batches_by_count_in_order() {
        let mut batcher = Batcher::new(2, MAX_BATCH_BYTES);
        assert_eq!(batcher.push(item(2, "{}")), None);
        let first = batcher.push(Row::Rejected(3, Rejection::new("invalid_csv", "x"))).unwrap();
        assert_eq!((first.seq, first.items.len(), first.refused.len()), (0, 1, 1));
        assert_eq!(batcher.push(item(4, "{}")), None);
        let last = batcher.finish().unwrap();
        assert_eq!((last.seq, last.items[0].line), (1, 4));
        assert_eq!(Batcher::new(2, 100).finish(), None);
    }

    #[test]
    fn batches_by_bytes_and_refuses_items_over_the_limit() {
        // Bodies: [x] is 3 + 8, two items 2 + 8 + 1 + 8 = 19.
        let mut batcher = Batcher::new(10, 19);
        let json = "{\"a\":12}";
        assert_eq!(batcher.push(item(2, json)), None);
        assert_eq!(batcher.push(item(3, json)), None);
        let full = batcher.push(item(4, json)).unwrap();
        assert_eq!(body(&full.items).len(), 19);
        assert_eq!(full.items.len(), 2);
        assert_eq!(batcher.push(item(5, &format!("{{\"a\":\"{}\"}}", "x".repeat(20)))), None);
        let last = batcher.finish().unwrap();
        assert_eq!(last.items.iter().map(|i| i.line).collect::<Vec<_>>(), vec![4]);
        assert_eq!(last.refused[0].0, 5);
        assert_eq!(last.refused[0].1.error, PAYLOAD_TOO_LARGE);
    }
}
