//! Split equivalence: a frame cut anywhere decodes as `Incomplete` until its last byte arrives,
//! and a stream fed in pieces yields the same replies as the same stream decoded in one go.
//!
//! Self-contained on purpose: the valid frames are listed again here rather than shared with
//! `resp_vectors.rs`.

use resplock::resp::{decode, Limits, Reply, Status};
use resplock::ProtocolError;

/// An owned reply, to compare replies decoded from different buffers.
#[derive(Clone, Debug, PartialEq, Eq)]
enum V {
    Simple(Vec<u8>),
    Error(Vec<u8>),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<V>>),
}

fn owned(reply: Reply<'_>) -> V {
    match reply {
        Reply::Simple(line) => V::Simple(line.to_vec()),
        Reply::Error(line) => V::Error(line.to_vec()),
        Reply::Integer(value) => V::Int(value),
        Reply::Bulk(payload) => V::Bulk(payload.map(<[u8]>::to_vec)),
        Reply::Array(array) => V::Array(array.map(|array| array.iter().map(owned).collect())),
    }
}

fn show(input: &[u8]) -> String {
    let shown: String = input
        .iter()
        .take(80)
        .flat_map(|b| b.escape_ascii())
        .map(char::from)
        .collect();
    if input.len() > 80 {
        format!("{shown}... ({} bytes)", input.len())
    } else {
        shown
    }
}

fn nested(levels: usize, leaf: &[u8]) -> Vec<u8> {
    let mut out = b"*1\r\n".repeat(levels);
    out.extend_from_slice(leaf);
    out
}

fn bulk_frame(payload: &[u8]) -> Vec<u8> {
    let mut out = format!("${}\r\n", payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
    out
}

fn hundred_bulks() -> Vec<u8> {
    let mut out = b"*100\r\n".to_vec();
    for i in 0..100 {
        out.extend(bulk_frame(format!("element-{i}").as_bytes()));
    }
    out
}

/// Every valid frame, each decoding to exactly one reply under `Limits::LOCK_CLIENT`.
fn valid_frames() -> Vec<Vec<u8>> {
    let mut frames: Vec<Vec<u8>> = [
        &b"+OK\r\n"[..],
        b"+\r\n",
        b"+  hello world \r\n",
        b"+\xff\xfe\x80\xc3\r\n",
        b"+a\x00\tb\r\n",
        b"-ERR unknown command 'foo'\r\n",
        b"-NOSCRIPT No matching script. Please use EVAL.\r\n",
        b"-MOVED 3999 127.0.0.1:6381\r\n",
        b"-\r\n",
        b":0\r\n",
        b":1\r\n",
        b":-1\r\n",
        b":1000\r\n",
        b":9223372036854775807\r\n",
        b":-9223372036854775808\r\n",
        b"$-1\r\n",
        b"$0\r\n\r\n",
        b"$3\r\nfoo\r\n",
        b"$10\r\n0123456789\r\n",
        b"$8\r\n\r\n\x00\xff\n\ra\r\r\n",
        b"$2\r\n\r\n\r\n",
        b"$1\r\n\r\r\n",
        b"$1\r\n\n\r\n",
        b"*-1\r\n",
        b"*0\r\n",
        b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n",
        b"*5\r\n+OK\r\n-ERR x\r\n:7\r\n$-1\r\n*-1\r\n",
        b"*2\r\n*2\r\n:1\r\n:2\r\n*1\r\n$1\r\nx\r\n",
        b"*2\r\n*0\r\n*-1\r\n",
        b"*3\r\n*1\r\n*1\r\n:1\r\n*2\r\n:2\r\n:3\r\n:4\r\n",
        b"*2\r\n*2\r\n*1\r\n:1\r\n:2\r\n:3\r\n",
        b"*3\r\n$0\r\n\r\n$-1\r\n$2\r\n\r\n\r\n",
    ]
    .iter()
    .map(|frame| frame.to_vec())
    .collect();
    frames.push(nested(8, b":1\r\n"));
    // An empty array is a nesting level too: seven `*1` and a `*0` make depth 8.
    frames.push(nested(7, b"*0\r\n"));
    frames.push(hundred_bulks());
    frames.push(bulk_frame(&vec![b'\r'; 300]));
    frames.push(bulk_frame(&(0..=255).collect::<Vec<u8>>()));
    let mut long_line = b"+".to_vec();
    long_line.resize(1 + 4096, b'x');
    long_line.extend_from_slice(b"\r\n");
    frames.push(long_line);
    frames
}

/// Frames that can never become valid, each with the error its whole form gives.
fn invalid_frames() -> Vec<(&'static [u8], ProtocolError)> {
    vec![
        (b"+O\nK\r\n", ProtocolError::BadLine),
        (b"-ERR\rx\r\n", ProtocolError::BadLine),
        (b":9223372036854775808\r\n", ProtocolError::BadInteger),
        (b":-0\r\n", ProtocolError::BadInteger),
        (b":05\r\n", ProtocolError::BadInteger),
        (b":\r\n", ProtocolError::BadInteger),
        (b"$-2\r\n", ProtocolError::LengthOutOfRange),
        (b"$65537\r\n", ProtocolError::TooLarge),
        (b"$3\r\nfoob\r\n", ProtocolError::MissingCrlf),
        (b"$3\r\nfoo\rx", ProtocolError::MissingCrlf),
        (b"*1025\r\n", ProtocolError::TooManyElements),
        (b"*2\r\n:1\r\n_\r\n", ProtocolError::BadTypeByte),
        (
            b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
            ProtocolError::TooDeep,
        ),
    ]
}

const LIMITS: Limits = Limits::LOCK_CLIENT;

fn one_shot(frame: &[u8]) -> (V, usize) {
    match decode(frame, &LIMITS) {
        Ok(Status::Complete((reply, used))) => (owned(reply), used),
        other => panic!("{} should decode: {other:?}", show(frame)),
    }
}

#[test]
fn every_strict_prefix_of_a_valid_frame_is_incomplete() {
    for frame in valid_frames() {
        for cut in 0..frame.len() {
            assert_eq!(
                decode(&frame[..cut], &LIMITS),
                Ok(Status::Incomplete),
                "{} cut at {cut}",
                show(&frame)
            );
        }
        let (_, used) = one_shot(&frame);
        assert_eq!(used, frame.len(), "{}", show(&frame));
    }
}

#[test]
fn a_frame_reassembled_from_two_reads_decodes_like_one_read() {
    for frame in valid_frames() {
        let whole = one_shot(&frame);
        for cut in 0..=frame.len() {
            // What a reader holds after the first read, then after the second.
            let mut buffer = frame[..cut].to_vec();
            let first = decode(&buffer, &LIMITS);
            assert_eq!(first.map(|s| s.is_complete()), Ok(cut == frame.len()));
            buffer.extend_from_slice(&frame[cut..]);
            buffer.extend_from_slice(b"+next\r\n");
            assert_eq!(one_shot(&buffer), whole);
        }
    }
}

#[test]
fn prefixes_of_an_invalid_frame_are_incomplete_or_the_same_error() {
    for (frame, kind) in invalid_frames() {
        assert_eq!(decode(frame, &LIMITS), Err(kind));
        let mut failed_at = None;
        for cut in 0..frame.len() {
            match decode(&frame[..cut], &LIMITS) {
                Ok(Status::Incomplete) => {
                    assert_eq!(failed_at, None, "an error never turns back into Incomplete")
                }
                Err(found) => {
                    assert_eq!(found, kind);
                    failed_at.get_or_insert(cut);
                }
                Ok(Status::Complete(_)) => panic!("a prefix of an invalid frame decoded"),
            }
        }
    }
}

/// Decodes every frame of `stream` from one buffer holding all of it.
fn decode_all(stream: &[u8]) -> Vec<(V, usize)> {
    let mut out = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        let (reply, used) = one_shot(rest);
        out.push((reply, used));
        rest = &rest[used..];
    }
    out
}

/// Feeds `stream` to a small buffering reader `chunk` bytes at a time, decoding whatever is
/// complete after each read, and returns the replies in order.
fn decode_fed(stream: &[u8], chunk: usize) -> Vec<(V, usize)> {
    let mut buffer = Vec::new();
    let mut out = Vec::new();
    for piece in stream.chunks(chunk) {
        buffer.extend_from_slice(piece);
        loop {
            match decode(&buffer, &LIMITS) {
                Ok(Status::Complete((reply, used))) => {
                    out.push((owned(reply), used));
                    buffer.drain(..used);
                }
                Ok(Status::Incomplete) => break,
                Err(kind) => panic!("valid stream failed with {kind:?}"),
            }
        }
    }
    assert!(buffer.is_empty(), "bytes left over: {buffer:?}");
    out
}

#[test]
fn a_stream_fed_one_byte_at_a_time_gives_the_same_replies() {
    let frames = valid_frames();
    let stream = frames.concat();
    let expected = decode_all(&stream);
    assert_eq!(expected.len(), frames.len());
    for (frame, (reply, used)) in frames.iter().zip(&expected) {
        assert_eq!(*used, frame.len());
        assert_eq!(*reply, one_shot(frame).0);
    }
    assert_eq!(decode_fed(&stream, 1), expected);
}

#[test]
fn a_stream_fed_in_uneven_chunks_gives_the_same_replies() {
    let mut frames = valid_frames();
    frames.reverse();
    let stream = frames.concat();
    let expected = decode_all(&stream);
    for chunk in [2, 3, 5, 7, 64, 1000, stream.len()] {
        assert_eq!(decode_fed(&stream, chunk), expected, "chunks of {chunk}");
    }
}
