//! Framing: each message is a 4-byte big-endian length and that many bytes of JSON.

use crate::message::Message;

/// The largest frame accepted (a whole node's configuration fits many times over).
pub const MAX_FRAME: usize = 16 << 20;

/// Why a stream of frames cannot be read further. The connection is closed with the
/// reason logged; nothing else is harmed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes is over the {MAX_FRAME}-byte limit")]
    TooLong(usize),
    #[error("frame is not a message: {0}")]
    Malformed(String),
}

/// Appends `message` as a frame to `out`.
pub fn encode(message: &Message, out: &mut Vec<u8>) {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    // A Message is plain data: serializing it cannot fail.
    let _ = serde_json::to_writer(&mut *out, message);
    let len = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

/// Reads frames out of the bytes of a stream as they arrive.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Takes bytes from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole message, if one has arrived. After an error the stream is
    /// unusable (its framing is lost).
    pub fn next_message(&mut self) -> Result<Option<Message>, FrameError> {
        let Some(header) = self.buf.get(..4) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        if len > MAX_FRAME {
            return Err(FrameError::TooLong(len));
        }
        let Some(body) = self.buf.get(4..4 + len) else {
            return Ok(None);
        };
        let message =
            serde_json::from_slice(body).map_err(|e| FrameError::Malformed(e.to_string()));
        self.buf.drain(..4 + len);
        message.map(Some)
    }
}
