//! A body over `CONFLUX_MAX_BODY_BYTES` is answered `413 payload_too_large` with the
//! JSON error body, whole, even while the client is still sending it on a keep-alive
//! connection: the server reads (and drops) the rest of the body, within bounds, after
//! answering, instead of closing a socket that still has unread bytes (which resets the
//! connection, and the client can lose the answer). A raw TCP client sends the headers
//! and then the body in chunks, reading at the same time, many times over, with
//! `Content-Length` and with chunked transfer-encoding; after a body the server drained,
//! the same connection serves the next request. An HTTP client (reqwest, over hyper,
//! which gives a request up when its body cannot be written) sending bodies of 2 to 30
//! times the limit on pooled keep-alive connections gets every `413` too.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;

use crate::auth::ADMIN_TOKEN;
use crate::harness::{TestServer, MAX_BODY_BYTES};

/// How many times each kind of raw upload is tried.
const ROUNDS: usize = 12;
/// How many oversized requests the HTTP client sends: before the fix, about one in ten
/// failed (a broken pipe writing the body, or a pooled connection closed under it).
const CLIENT_REQUESTS: usize = 40;
/// The size of each write of the body.
const CHUNK: usize = 16 * 1024;

/// How the body is framed.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Framing {
    Length,
    Chunked,
}

/// One HTTP/1.1 answer: status, headers (lower-case names) and body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one answer (headers, then a `Content-Length` or chunked body) from `stream`,
/// keeping what follows it in `buffer`.
async fn read_answer(
    stream: &mut (impl AsyncReadExt + Unpin),
    buffer: &mut Vec<u8>,
) -> Result<Answer, String> {
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        fill(stream, buffer).await?;
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    buffer.drain(..head_end);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status line in {head:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut answer = Answer {
        status,
        headers,
        body: Vec::new(),
    };
    if let Some(length) = answer.header("content-length") {
        let length: usize = length.parse().map_err(|_| "bad content-length")?;
        while buffer.len() < length {
            fill(stream, buffer).await?;
        }
        answer.body = buffer.drain(..length).collect();
    } else if answer.header("transfer-encoding") == Some("chunked") {
        loop {
            let line_end = loop {
                if let Some(at) = buffer.windows(2).position(|w| w == b"\r\n") {
                    break at;
                }
                fill(stream, buffer).await?;
            };
            let size = String::from_utf8_lossy(&buffer[..line_end]).into_owned();
            let size = usize::from_str_radix(size.trim(), 16).map_err(|_| "bad chunk size")?;
            while buffer.len() < line_end + 2 + size + 2 {
                fill(stream, buffer).await?;
            }
            answer
                .body
                .extend_from_slice(&buffer[line_end + 2..line_end + 2 + size]);
            buffer.drain(..line_end + 2 + size + 2);
            if size == 0 {
                break;
            }
        }
    }
    Ok(answer)
}

async fn fill(
    stream: &mut (impl AsyncReadExt + Unpin),
    buffer: &mut Vec<u8>,
) -> Result<(), String> {
    let mut chunk = [0u8; 8192];
    match stream.read(&mut chunk).await {
        Ok(0) => Err(format!(
            "the connection closed after {} bytes of the answer",
            buffer.len()
        )),
        Ok(n) => {
            buffer.extend_from_slice(&chunk[..n]);
            Ok(())
        }
        Err(e) => Err(format!("reading the answer failed: {e}")),
    }
}

/// Writes the body of `total` bytes in [`CHUNK`]s, pausing `pause` after each; stops
/// quietly at the first write the server refuses (it may close after answering).
async fn send_body(
    mut writer: OwnedWriteHalf,
    framing: Framing,
    total: usize,
    pause: Duration,
) -> (OwnedWriteHalf, bool) {
    let data = vec![b' '; CHUNK];
    let mut sent = 0;
    while sent < total {
        let n = CHUNK.min(total - sent);
        let written = match framing {
            Framing::Length => writer.write_all(&data[..n]).await,
            Framing::Chunked => {
                let mut frame = format!("{n:x}\r\n").into_bytes();
                frame.extend_from_slice(&data[..n]);
                frame.extend_from_slice(b"\r\n");
                writer.write_all(&frame).await
            }
        };
        if written.is_err() {
            return (writer, false);
        }
        sent += n;
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
    if framing == Framing::Chunked && writer.write_all(b"0\r\n\r\n").await.is_err() {
        return (writer, false);
    }
    (writer, true)
}

/// Sends one oversized `POST /api/v1/workflows` of `total` bytes, reading while it
/// sends; returns the answer, and the connection when the whole body went out.
async fn upload(
    server: &TestServer,
    framing: Framing,
    total: usize,
    pause: Duration,
) -> (Answer, Option<(TcpStream, Vec<u8>)>) {
    let addr = server.base.trim_start_matches("http://");
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    let framing_header = match framing {
        Framing::Length => format!("content-length: {total}"),
        Framing::Chunked => "transfer-encoding: chunked".to_owned(),
    };
    let head = format!(
        "POST /api/v1/workflows HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {ADMIN_TOKEN}\r\n\
         content-type: application/json\r\n{framing_header}\r\n\r\n"
    );
    writer.write_all(head.as_bytes()).await.expect("headers");
    let sending = tokio::spawn(send_body(writer, framing, total, pause));
    let mut buffer = Vec::new();
    let answer = tokio::time::timeout(
        Duration::from_secs(20),
        read_answer(&mut reader, &mut buffer),
    )
    .await
    .unwrap_or_else(|_| panic!("{framing:?}, {total} bytes: no answer within 20 s"))
    .unwrap_or_else(|e| panic!("{framing:?}, {total} bytes: {e}"));
    let (writer, whole) = sending.await.expect("sender");
    let connection = whole.then(|| {
        let stream = reader.reunite(writer).expect("the same socket");
        (stream, buffer)
    });
    (answer, connection)
}

fn assert_413(answer: &Answer, what: &str) {
    assert_eq!(answer.status, 413, "{what}");
    let body: Value = serde_json::from_slice(&answer.body).unwrap_or_else(|e| {
        panic!(
            "{what}: the 413's body is not JSON ({e}): {:?}",
            String::from_utf8_lossy(&answer.body)
        )
    });
    assert_eq!(body["error"]["code"], "payload_too_large", "{what}: {body}");
}

/// Oversized bodies, sent fast and slowly, with a length and chunked, always get
/// their whole `413` answer; a body the server drained leaves the connection usable.
pub async fn oversized_bodies_get_their_413_on_keep_alive(server: &TestServer) {
    let head = server.head().await;
    let started = std::time::Instant::now();
    for framing in [Framing::Length, Framing::Chunked] {
        for round in 0..ROUNDS {
            // Mostly several times the limit, sent as fast as possible; every third
            // round slowly, with pauses between the chunks.
            let pause = if round % 3 == 2 {
                Duration::from_millis(2)
            } else {
                Duration::ZERO
            };
            let total = MAX_BODY_BYTES * (2 + round % 4);
            let what = format!("{framing:?} round {round}: {total} bytes, pause {pause:?}");
            let (answer, connection) = upload(server, framing, total, pause).await;
            assert_413(&answer, &what);
            // The rest of the body was read: the connection serves the next request.
            let (mut stream, mut buffer) =
                connection.unwrap_or_else(|| panic!("{what}: the body was not read to its end"));
            let next = "GET /health HTTP/1.1\r\nhost: conflux\r\n\r\n";
            stream.write_all(next.as_bytes()).await.expect("next");
            let answer = tokio::time::timeout(
                Duration::from_secs(10),
                read_answer(&mut stream, &mut buffer),
            )
            .await
            .unwrap_or_else(|_| panic!("{what}: no answer to the next request"))
            .unwrap_or_else(|e| panic!("{what}: the next request: {e}"));
            assert_eq!(answer.status, 200, "{what}: the next request");
        }
    }
    // An HTTP client on pooled keep-alive connections.
    let client = crate::auth::client();
    let mut failed = Vec::new();
    for i in 0..CLIENT_REQUESTS {
        let size = MAX_BODY_BYTES * (2 + (i * 7) % 29);
        let sent = client
            .post(format!("{}/api/v1/workflows", server.base))
            .header("content-type", "application/json")
            .body(vec![b' '; size])
            .send()
            .await;
        match sent {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let body: Result<Value, _> = resp.json().await;
                match body {
                    Ok(body) if status == 413 && body["error"]["code"] == "payload_too_large" => {}
                    other => failed.push(format!("{size} bytes: {status} {other:?}")),
                }
            }
            Err(e) => failed.push(format!("{size} bytes: {e:?}")),
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {CLIENT_REQUESTS} failed: {failed:#?}",
        failed.len()
    );
    // A body far over what the server reads after answering: the answer still comes
    // whole, before the server gives the connection up.
    let (answer, _) = upload(server, Framing::Length, 1 << 30, Duration::ZERO).await;
    assert_413(&answer, "a 1 GiB body");
    assert_eq!(server.head().await, head, "nothing was recorded");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
}
