//! Live streams: events as Server-Sent Events, and a followed task log as byte chunks.

use std::pin::Pin;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use gofer_core::id::EventId;
use gofer_core::model::Event;

use crate::Error;

/// Chunks of a streamed body (an object's content, a followed log), as the server sends them.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, Error>> + Send>>;

/// Chunks of a followed log, as the server sends them.
pub type LogStream = ByteStream;

/// A live stream of events (Server-Sent Events). It does not end by itself; after a failure,
/// follow again from [`EventStream::last_event_id`] to miss nothing.
pub struct EventStream {
    body: Pin<Box<dyn Stream<Item = Result<Bytes, reqwest::Error>> + Send>>,
    buffer: Vec<u8>,
    last_event_id: Option<EventId>,
}

impl EventStream {
    pub(crate) fn new(response: reqwest::Response, after: Option<EventId>) -> Self {
        Self { body: Box::pin(response.bytes_stream()), buffer: Vec::new(), last_event_id: after }
    }

    /// The next event; `None` when the server closed the stream.
    pub async fn next(&mut self) -> Option<Result<Event, Error>> {
        loop {
            while let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let frame: Vec<u8> = self.buffer.drain(..end + 2).collect();
                if let Some(event) = self.parse_frame(&frame) {
                    return Some(event);
                }
            }
            match self.body.next().await? {
                // Line ends may be CRLF; the JSON in data lines never holds a raw CR.
                Ok(chunk) => self.buffer.extend(chunk.iter().filter(|b| **b != b'\r')),
                Err(e) => return Some(Err(Error::Transport(e))),
            }
        }
    }

    /// The id of the last event received (or the one the stream started after; `None` for a
    /// stream from the first event that has received nothing yet).
    pub fn last_event_id(&self) -> Option<&EventId> {
        self.last_event_id.as_ref()
    }

    /// One frame: comments and frames without data (`retry:`) are skipped.
    fn parse_frame(&mut self, frame: &[u8]) -> Option<Result<Event, Error>> {
        let text = match std::str::from_utf8(frame) {
            Ok(text) => text,
            Err(e) => return Some(Err(Error::Decode(e.to_string()))),
        };
        let mut data = String::new();
        for line in text.lines() {
            if let Some(value) = line.strip_prefix("data:") {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(value.strip_prefix(' ').unwrap_or(value));
            }
        }
        if data.is_empty() {
            return None;
        }
        match serde_json::from_str::<Event>(&data) {
            Ok(event) => {
                self.last_event_id = Some(event.id.clone());
                Some(Ok(event))
            }
            Err(e) => Some(Err(Error::Decode(e.to_string()))),
        }
    }
}
