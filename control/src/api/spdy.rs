//! SPDY/3.1 framing, as much of it as `kubectl port-forward` speaks (the protocol of Go's
//! `moby/spdystream`, which client-go uses): streams opened with SYN_STREAM and answered with
//! SYN_REPLY, DATA frames with FIN, RST_STREAM, PING, GOAWAY. Name/value header blocks are
//! zlib streams that run across all the frames of a direction, primed with the protocol's
//! dictionary. Flow control is neither kept nor asked for: spdystream ignores WINDOW_UPDATE.

use std::collections::BTreeMap;
use std::io;

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The protocol version the frames carry.
const VERSION: u16 = 3;
/// The longest header block accepted once inflated.
const MAX_HEADER_BLOCK: usize = 256 * 1024;
/// The longest frame accepted: kubectl sends data in 32 KiB writes.
const MAX_FRAME: usize = 1024 * 1024;

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;

/// The FIN flag of DATA and control frames.
const FLAG_FIN: u8 = 0x01;

/// RST_STREAM status codes.
pub const PROTOCOL_ERROR: u32 = 1;
pub const CANCEL: u32 = 5;

/// A stream's headers: lowercase names, values split at NUL as SPDY joins them.
pub type Headers = BTreeMap<String, Vec<String>>;

/// A frame read from the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream: u32,
        headers: Headers,
        fin: bool,
    },
    SynReply {
        stream: u32,
    },
    Data {
        stream: u32,
        data: Bytes,
        fin: bool,
    },
    RstStream {
        stream: u32,
        status: u32,
    },
    Ping(u32),
    GoAway,
    /// SETTINGS, HEADERS, WINDOW_UPDATE and frames of unknown types: nothing to act on.
    Ignored,
}

/// The dictionary SPDY/3 header blocks are compressed against (SPDY Protocol Draft 3,
/// section 2.6.10.1).
pub const DICTIONARY: &[u8; 1423] = b"\
    \x00\x00\x00\x07options\x00\x00\x00\x04head\x00\x00\x00\x04post\x00\x00\x00\x03put\x00\x00\
    \x00\x06delete\x00\x00\x00\x05trace\x00\x00\x00\x06accept\x00\x00\x00\x0eaccept-charset\
    \x00\x00\x00\x0faccept-encoding\x00\x00\x00\x0faccept-language\x00\x00\x00\x0daccept-range\
    s\x00\x00\x00\x03age\x00\x00\x00\x05allow\x00\x00\x00\x0dauthorization\x00\x00\x00\x0dcach\
    e-control\x00\x00\x00\x0aconnection\x00\x00\x00\x0ccontent-base\x00\x00\x00\x10content-enc\
    oding\x00\x00\x00\x10content-language\x00\x00\x00\x0econtent-length\x00\x00\x00\x10content\
    -location\x00\x00\x00\x0bcontent-md5\x00\x00\x00\x0dcontent-range\x00\x00\x00\x0ccontent-t\
    ype\x00\x00\x00\x04date\x00\x00\x00\x04etag\x00\x00\x00\x06expect\x00\x00\x00\x07expires\
    \x00\x00\x00\x04from\x00\x00\x00\x04host\x00\x00\x00\x08if-match\x00\x00\x00\x11if-modifie\
    d-since\x00\x00\x00\x0dif-none-match\x00\x00\x00\x08if-range\x00\x00\x00\x13if-unmodified-\
    since\x00\x00\x00\x0dlast-modified\x00\x00\x00\x08location\x00\x00\x00\x0cmax-forwards\x00\
    \x00\x00\x06pragma\x00\x00\x00\x12proxy-authenticate\x00\x00\x00\x13proxy-authorization\
    \x00\x00\x00\x05range\x00\x00\x00\x07referer\x00\x00\x00\x0bretry-after\x00\x00\x00\x06ser\
    ver\x00\x00\x00\x02te\x00\x00\x00\x07trailer\x00\x00\x00\x11transfer-encoding\x00\x00\x00\
    \x07upgrade\x00\x00\x00\x0auser-agent\x00\x00\x00\x04vary\x00\x00\x00\x03via\x00\x00\x00\
    \x07warning\x00\x00\x00\x10www-authenticate\x00\x00\x00\x06method\x00\x00\x00\x03get\x00\
    \x00\x00\x06status\x00\x00\x00\x06200 OK\x00\x00\x00\x07version\x00\x00\x00\x08HTTP/1.1\
    \x00\x00\x00\x03url\x00\x00\x00\x06public\x00\x00\x00\x0aset-cookie\x00\x00\x00\x0akeep-al\
    ive\x00\x00\x00\x06origin10010120120220520630030230330430530630740240540640740840941041141\
    2413414415416417502504505203 Non-Authoritative Information204 No Content301 Moved Permanen\
    tly400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 N\
    ot Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:0\
    0:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif\
    ,application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=gzi\
    p,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.";

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

/// Reads frames from one direction of a connection, inflating its header blocks.
pub struct FrameReader<R> {
    io: R,
    inflate: Decompress,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(io: R) -> Self {
        FrameReader {
            io,
            inflate: Decompress::new(true),
        }
    }

    /// The next frame; None at the end of the connection.
    pub async fn next(&mut self) -> io::Result<Option<Frame>> {
        let mut head = [0u8; 8];
        match self.io.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let first = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let flags = head[4];
        let length = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
        if length > MAX_FRAME {
            return Err(invalid(format!(
                "a frame of {length} bytes is longer than {MAX_FRAME}"
            )));
        }
        let mut body = vec![0u8; length];
        self.io.read_exact(&mut body).await?;
        if first & 0x8000_0000 == 0 {
            return Ok(Some(Frame::Data {
                stream: first & 0x7fff_ffff,
                data: Bytes::from(body),
                fin: flags & FLAG_FIN != 0,
            }));
        }
        let version = ((first >> 16) & 0x7fff) as u16;
        if version != VERSION {
            return Err(invalid(format!("SPDY version {version} is not spoken")));
        }
        let word = |at: usize| -> io::Result<u32> {
            body.get(at..at + 4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or_else(|| invalid("a control frame is shorter than its fields"))
        };
        let frame = match (first & 0xffff) as u16 {
            SYN_STREAM => {
                let stream = word(0)? & 0x7fff_ffff;
                let block = body
                    .get(10..)
                    .ok_or_else(|| invalid("a short SYN_STREAM"))?;
                let headers = parse_headers(&self.inflate_block(block)?)?;
                Frame::SynStream {
                    stream,
                    headers,
                    fin: flags & FLAG_FIN != 0,
                }
            }
            SYN_REPLY => {
                let stream = word(0)? & 0x7fff_ffff;
                // Inflated to keep the header stream in step, then unused.
                self.inflate_block(&body[4..])?;
                Frame::SynReply { stream }
            }
            HEADERS => {
                self.inflate_block(body.get(4..).unwrap_or_default())?;
                Frame::Ignored
            }
            RST_STREAM => Frame::RstStream {
                stream: word(0)? & 0x7fff_ffff,
                status: word(4)?,
            },
            PING => Frame::Ping(word(0)?),
            GOAWAY => Frame::GoAway,
            SETTINGS | WINDOW_UPDATE => Frame::Ignored,
            _ => Frame::Ignored,
        };
        Ok(Some(frame))
    }

    /// One frame's share of the header stream, inflated.
    fn inflate_block(&mut self, mut input: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity((input.len() * 4 + 64).min(MAX_HEADER_BLOCK));
        loop {
            if out.len() == out.capacity() {
                out.reserve(out.len().max(256));
            }
            let (before_in, before_out) = (self.inflate.total_in(), out.len());
            let result = self
                .inflate
                .decompress_vec(input, &mut out, FlushDecompress::Sync);
            input = &input[(self.inflate.total_in() - before_in) as usize..];
            let stalled = self.inflate.total_in() == before_in && out.len() == before_out;
            match result {
                // The header stream runs for the whole connection: it never ends.
                Ok(flate2::Status::StreamEnd) => {
                    return Err(invalid("a header block ended the header stream"));
                }
                Ok(_) if input.is_empty() && out.len() < out.capacity() => return Ok(out),
                Ok(_) if stalled && !input.is_empty() => {
                    return Err(invalid("a header block does not inflate"));
                }
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(DICTIONARY)
                        .map_err(|e| invalid(format!("a header block: {e}")))?;
                }
                Err(e) => return Err(invalid(format!("a header block: {e}"))),
            }
            if out.len() > MAX_HEADER_BLOCK {
                return Err(invalid("a header block is too large"));
            }
        }
    }
}

/// A name/value header block's fields.
fn parse_headers(block: &[u8]) -> io::Result<Headers> {
    let mut rest = block;
    let mut take = |n: usize| -> io::Result<&[u8]> {
        if rest.len() < n {
            return Err(invalid("a header block is shorter than its fields"));
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    let length = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
    let count = length(take(4)?);
    let mut headers = Headers::new();
    for _ in 0..count {
        let n = length(take(4)?);
        let name = String::from_utf8_lossy(take(n)?).to_lowercase();
        let n = length(take(4)?);
        let value = String::from_utf8_lossy(take(n)?).into_owned();
        headers
            .entry(name)
            .or_default()
            .extend(value.split('\0').map(str::to_string));
    }
    Ok(headers)
}

/// Writes frames in one direction, deflating header blocks into one stream.
pub struct FrameWriter {
    deflate: Compress,
}

impl Default for FrameWriter {
    fn default() -> Self {
        FrameWriter {
            deflate: Compress::new(Compression::default(), true),
        }
    }
}

fn control(frame_type: u16, flags: u8, body: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(
        &(0x8000_0000 | (u32::from(VERSION) << 16) | u32::from(frame_type)).to_be_bytes(),
    );
    out.extend_from_slice(&((u32::from(flags) << 24) | body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
}

impl FrameWriter {
    /// A SYN_REPLY with no headers, accepting the peer's `stream`.
    pub fn reply(&mut self, stream: u32, out: &mut Vec<u8>) {
        let mut body = stream.to_be_bytes().to_vec();
        self.deflate_block(&0u32.to_be_bytes(), &mut body);
        control(SYN_REPLY, 0, &body, out);
    }

    /// DATA frames carrying `data` on `stream`, the last with FIN when `fin`.
    pub fn data(stream: u32, data: &[u8], fin: bool, out: &mut Vec<u8>) {
        // The length field has 24 bits.
        const MAX: usize = 0xff_ffff;
        if data.is_empty() {
            Self::data_frame(stream, data, fin, out);
            return;
        }
        let count = data.len().div_ceil(MAX);
        for (i, chunk) in data.chunks(MAX).enumerate() {
            Self::data_frame(stream, chunk, fin && i + 1 == count, out);
        }
    }

    fn data_frame(stream: u32, data: &[u8], fin: bool, out: &mut Vec<u8>) {
        out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
        let flags = if fin { FLAG_FIN } else { 0 };
        out.extend_from_slice(&((u32::from(flags) << 24) | data.len() as u32).to_be_bytes());
        out.extend_from_slice(data);
    }

    pub fn rst_stream(stream: u32, status: u32, out: &mut Vec<u8>) {
        let mut body = (stream & 0x7fff_ffff).to_be_bytes().to_vec();
        body.extend_from_slice(&status.to_be_bytes());
        control(RST_STREAM, 0, &body, out);
    }

    pub fn ping(id: u32, out: &mut Vec<u8>) {
        control(PING, 0, &id.to_be_bytes(), out);
    }

    /// `block` deflated onto `out`, flushed so the peer can read it whole.
    fn deflate_block(&mut self, mut block: &[u8], out: &mut Vec<u8>) {
        loop {
            if out.len() == out.capacity() {
                out.reserve(block.len() + 64);
            }
            let before = self.deflate.total_in();
            // Deflating into memory fails only on misuse of the stream.
            let _ = self.deflate.compress_vec(block, out, FlushCompress::Sync);
            block = &block[(self.deflate.total_in() - before) as usize..];
            if block.is_empty() && out.len() < out.capacity() {
                return;
            }
        }
    }

    /// A SYN_STREAM: what a client sends; used to test the server side.
    #[cfg(test)]
    fn syn_stream(&mut self, stream: u32, headers: &[(&str, &str)], out: &mut Vec<u8>) {
        let mut block = (headers.len() as u32).to_be_bytes().to_vec();
        for (name, value) in headers {
            for field in [name, value] {
                block.extend_from_slice(&(field.len() as u32).to_be_bytes());
                block.extend_from_slice(field.as_bytes());
            }
        }
        let mut body = stream.to_be_bytes().to_vec();
        body.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        self.deflate_block(&block, &mut body);
        control(SYN_STREAM, 0, &body, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer whose header stream is primed with the dictionary, as Go's is.
    fn client_writer() -> FrameWriter {
        let mut deflate = Compress::new(Compression::default(), true);
        deflate.set_dictionary(DICTIONARY).unwrap();
        FrameWriter { deflate }
    }

    #[tokio::test]
    async fn header_blocks_inflate_across_frames_with_the_dictionary() {
        let mut client = client_writer();
        let mut wire = Vec::new();
        let headers = [
            ("streamtype", "error"),
            ("port", "8080"),
            ("requestid", "0"),
        ];
        client.syn_stream(1, &headers, &mut wire);
        client.syn_stream(
            3,
            &[("streamtype", "data"), ("port", "8080"), ("requestid", "0")],
            &mut wire,
        );
        FrameWriter::data(3, b"GET / HTTP/1.1\r\n\r\n", true, &mut wire);
        FrameWriter::ping(1, &mut wire);
        let mut reader = FrameReader::new(wire.as_slice());
        let Some(Frame::SynStream {
            stream: 1,
            headers,
            fin: false,
        }) = reader.next().await.unwrap()
        else {
            panic!("not the first stream");
        };
        assert_eq!(headers["streamtype"], ["error"]);
        assert_eq!(headers["port"], ["8080"]);
        let Some(Frame::SynStream {
            stream: 3, headers, ..
        }) = reader.next().await.unwrap()
        else {
            panic!("not the second stream");
        };
        assert_eq!(headers["streamtype"], ["data"]);
        assert_eq!(
            reader.next().await.unwrap(),
            Some(Frame::Data {
                stream: 3,
                data: Bytes::from_static(b"GET / HTTP/1.1\r\n\r\n"),
                fin: true
            })
        );
        assert_eq!(reader.next().await.unwrap(), Some(Frame::Ping(1)));
        assert_eq!(reader.next().await.unwrap(), None);
    }

    #[tokio::test]
    async fn replies_read_back_as_replies_to_their_streams() {
        let mut server = FrameWriter::default();
        let mut wire = Vec::new();
        server.reply(1, &mut wire);
        server.reply(3, &mut wire);
        FrameWriter::rst_stream(5, CANCEL, &mut wire);
        let mut reader = FrameReader::new(wire.as_slice());
        assert_eq!(
            reader.next().await.unwrap(),
            Some(Frame::SynReply { stream: 1 })
        );
        assert_eq!(
            reader.next().await.unwrap(),
            Some(Frame::SynReply { stream: 3 })
        );
        assert_eq!(
            reader.next().await.unwrap(),
            Some(Frame::RstStream {
                stream: 5,
                status: CANCEL
            })
        );
    }

    #[tokio::test]
    async fn a_garbled_header_block_is_an_error_not_a_panic() {
        let mut wire = Vec::new();
        control(
            SYN_STREAM,
            0,
            &[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x78, 0xbb, 1, 2, 3, 4, 9, 9],
            &mut wire,
        );
        let mut reader = FrameReader::new(wire.as_slice());
        assert!(reader.next().await.is_err());
        // A whole zlib stream (it ends) with a byte after it: refused, not looped on.
        let mut deflate = Compress::new(Compression::default(), true);
        let mut ended = Vec::with_capacity(64);
        deflate
            .compress_vec(&[0, 0, 0, 0], &mut ended, FlushCompress::Finish)
            .unwrap();
        ended.push(7);
        let mut body = vec![0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        body.extend_from_slice(&ended);
        let mut wire = Vec::new();
        control(SYN_STREAM, 0, &body, &mut wire);
        assert!(FrameReader::new(wire.as_slice()).next().await.is_err());
        let mut huge = Vec::new();
        FrameWriter::data_frame(1, &[], false, &mut huge);
        huge[5..8].copy_from_slice(&[0xff, 0xff, 0xff]);
        assert!(FrameReader::new(huge.as_slice()).next().await.is_err());
        let mut short = Vec::new();
        control(RST_STREAM, 0, &[0, 0], &mut short);
        assert!(FrameReader::new(short.as_slice()).next().await.is_err());
    }
}
