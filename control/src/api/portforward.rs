//! `pods/NAME/portforward`: connections to a pod's ports, as `kubectl port-forward` makes them.
//! The API server speaks the client's protocol and opens one connection to the pod for every
//! connection the client forwards, through the node that runs the pod:
//!
//! - a websocket with the subprotocol `SPDY/3.1+portforward.k8s.io`, carrying SPDY frames in
//!   binary messages (what kubectl 1.31 and later try first);
//! - `POST` with `Upgrade: SPDY/3.1` and `X-Stream-Protocol-Version: portforward.k8s.io`
//!   (kubectl's fallback, and what older kubectl speaks);
//! - a websocket with `v4.channel.k8s.io` and `?ports=`: one channel pair per port (kube-rs,
//!   the Python client).
//!
//! Over SPDY every forwarded connection is a pair of streams sharing a `requestID`: `error`,
//! where a failure's message is written, and `data`. Either side ends its half of the data
//! stream with FIN; the pod's end of the connection ends the pair, as the kubelet's does.
//!
//! The pod's port is reached from within the pod (a port it serves on localhost only is
//! reached too): in this process for the node running here ([`PodPorts`]), else through the
//! node's endpoint, which upgrades a `POST /portForward/NAMESPACE/POD?uid=&port=` to the
//! connection.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{SinkExt, StreamExt};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use super::objects::read;
use super::spdy::{self, Frame, FrameReader, FrameWriter};
use super::{ApiError, ApiState, Target};
use crate::store::Key;

/// A byte stream both ways.
pub trait Connection: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Connection for T {}

/// Reaches the ports of the pods of the node running in the server's process.
pub trait PodPorts: Send + Sync {
    /// A connection to `port` of pod `uid`, made from within the pod.
    fn connect(&self, uid: &str, port: u16) -> BoxFuture<'static, io::Result<Box<dyn Connection>>>;
}

/// The websocket subprotocol that carries SPDY frames.
const SPDY_TUNNEL: &str = "SPDY/3.1+portforward.k8s.io";
/// The stream protocol a SPDY upgrade negotiates.
const PORT_FORWARD: &str = "portforward.k8s.io";
/// The websocket channel protocols, one channel pair per port.
const CHANNELS: [&str; 2] = ["v4.channel.k8s.io", "channel.k8s.io"];
/// How much of a connection is read at once.
const CHUNK: usize = 32 * 1024;

/// The pod a forward reaches.
#[derive(Clone)]
struct Pod {
    state: Arc<ApiState>,
    namespace: String,
    name: String,
    uid: String,
    node: String,
}

impl Pod {
    /// A connection to the pod's `port`, or the message that says why there is none.
    async fn connect(&self, port: u16) -> Result<Box<dyn Connection>, String> {
        let failed = |why: &dyn std::fmt::Display| {
            format!(
                "error forwarding port {port} to pod {}, uid {}: {why}",
                self.name, self.uid
            )
        };
        if let Some(local) = self
            .state
            .local_node
            .as_ref()
            .filter(|l| l.name == self.node)
        {
            return local.ports.connect(&self.uid, port).await.map_err(|e| {
                failed(&format!(
                    "failed to connect to localhost:{port} inside the pod: {e}"
                ))
            });
        }
        let nodes = crate::registry::find("", "v1", "nodes").expect("nodes are served");
        let key = Key::new(&nodes.storage_name(), "", &self.node);
        let node = match self.state.store.get(&key).await {
            Ok(Some(node)) => node,
            Ok(None) => return Err(failed(&format!("node {} is not registered", self.node))),
            Err(e) => return Err(failed(&e)),
        };
        let path = format!(
            "/portForward/{}/{}?{}",
            self.namespace,
            self.name,
            form_urlencoded::Serializer::new(String::new())
                .append_pair("uid", &self.uid)
                .append_pair("port", &port.to_string())
                .finish()
        );
        self.state
            .nodes
            .upgrade(&self.node, &node.value, &path)
            .await
            .map(|io| Box::new(io) as Box<dyn Connection>)
            .map_err(|e| failed(&e))
    }
}

/// The protocol a request asks for.
enum Protocol {
    /// SPDY, over the upgraded connection or inside a websocket.
    Spdy { websocket: bool },
    /// Websocket channels for `ports`.
    Channels {
        ports: Vec<u16>,
        protocol: &'static str,
    },
}

/// The subprotocols a websocket request offers, in order.
fn offered(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// The `ports` a channel request names (repeated, or comma-separated).
fn ports(query: &super::Query) -> Result<Vec<u16>, ApiError> {
    let mut ports = Vec::new();
    for (_, value) in query.0.iter().filter(|(k, _)| k == "ports") {
        for text in value.split(',').map(str::trim) {
            match text.parse::<u16>() {
                Ok(port) if port > 0 => ports.push(port),
                _ => {
                    return Err(ApiError::BadRequest(format!(
                        "invalid port \"{text}\": must be a number from 1 to 65535"
                    )));
                }
            }
        }
    }
    if ports.is_empty() {
        return Err(ApiError::BadRequest(
            "query parameter \"ports\" is required".into(),
        ));
    }
    // Each port takes two channels of a byte's 256.
    if ports.len() > 127 {
        return Err(ApiError::BadRequest(format!(
            "at most 127 ports may be forwarded at once, not {}",
            ports.len()
        )));
    }
    Ok(ports)
}

/// Which protocol the request asks for.
fn negotiate(headers: &HeaderMap, query: &super::Query) -> Result<Protocol, ApiError> {
    let upgrade = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if upgrade == "websocket" {
        let offered = offered(headers);
        if offered.iter().any(|p| p == SPDY_TUNNEL) {
            return Ok(Protocol::Spdy { websocket: true });
        }
        if let Some(protocol) = CHANNELS
            .into_iter()
            .find(|c| offered.iter().any(|p| p == c))
        {
            return Ok(Protocol::Channels {
                ports: ports(query)?,
                protocol,
            });
        }
        return Err(ApiError::BadRequest(format!(
            "unable to negotiate a port-forward protocol: client offered [{}], server speaks [{SPDY_TUNNEL} {}]",
            offered.join(" "),
            CHANNELS.join(" ")
        )));
    }
    if upgrade.starts_with("spdy/3.1") {
        let asked: Vec<&str> = headers
            .get_all("X-Stream-Protocol-Version")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        if !asked.is_empty() && !asked.contains(&PORT_FORWARD) {
            return Err(ApiError::Forbidden(format!(
                "unable to upgrade: unable to negotiate protocol: client supports [{}], server supports [{PORT_FORWARD}]",
                asked.join(" ")
            )));
        }
        return Ok(Protocol::Spdy { websocket: false });
    }
    Err(ApiError::BadRequest("Upgrade request required".into()))
}

/// Answers a port-forward request: 101 and the forwarding, or why not.
pub async fn serve(
    state: &Arc<ApiState>,
    target: &Target,
    mut parts: http::request::Parts,
) -> Result<Response, ApiError> {
    let resource = target.resource;
    let namespace = target.namespace.clone().unwrap_or_default();
    let name = target.name.clone().unwrap_or_default();
    let query = super::Query::parse(parts.uri.query());
    let protocol = negotiate(&parts.headers, &query)?;
    let key = Key::new(&resource.storage_name(), &namespace, &name);
    let pod: Value = read(state, resource, &key).await?.value;
    let node = pod["spec"]["nodeName"].as_str().unwrap_or("").to_string();
    if node.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    let Some(on_upgrade) = parts.extensions.remove::<hyper::upgrade::OnUpgrade>() else {
        return Err(ApiError::BadRequest(
            "the connection cannot be upgraded".into(),
        ));
    };
    let pod = Pod {
        state: state.clone(),
        uid: pod["metadata"]["uid"].as_str().unwrap_or("").to_string(),
        namespace,
        name,
        node,
    };
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    let websocket = !matches!(protocol, Protocol::Spdy { websocket: false });
    if websocket {
        let key = parts
            .headers
            .get(header::SEC_WEBSOCKET_KEY)
            .ok_or_else(|| ApiError::BadRequest("Sec-WebSocket-Key is required".into()))?;
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        let chosen = match &protocol {
            Protocol::Channels { protocol, .. } => protocol,
            _ => SPDY_TUNNEL,
        };
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(
            header::SEC_WEBSOCKET_ACCEPT,
            HeaderValue::from_str(&accept).expect("base64 is a header value"),
        );
        headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(chosen),
        );
    } else {
        headers.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        headers.insert(
            "X-Stream-Protocol-Version",
            HeaderValue::from_static(PORT_FORWARD),
        );
    }
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => TokioIo::new(upgraded),
            Err(e) => {
                tracing::debug!(error = %e, "a port-forward upgrade failed");
                return;
            }
        };
        match protocol {
            Protocol::Spdy { websocket: false } => spdy_session(pod, upgraded).await,
            Protocol::Spdy { websocket: true } => {
                let ws =
                    WebSocketStream::from_raw_socket(upgraded, Role::Server, Some(limits())).await;
                let (near, far) = tokio::io::duplex(4 * CHUNK);
                tokio::join!(spdy_session(pod, near), tunnel(ws, far));
            }
            Protocol::Channels { ports, .. } => {
                let ws =
                    WebSocketStream::from_raw_socket(upgraded, Role::Server, Some(limits())).await;
                channels(pod, ws, ports).await;
            }
        }
    });
    Ok(response)
}

/// The largest websocket messages taken: kubectl's are a SPDY frame or a 32 KiB read.
fn limits() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(2 * 1024 * 1024))
        .max_frame_size(Some(2 * 1024 * 1024))
}

/// Carries a byte stream in a websocket's binary messages, both ways, until either ends.
async fn tunnel<S>(ws: WebSocketStream<S>, stream: tokio::io::DuplexStream)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut sink, mut messages) = ws.split();
    let (mut from, mut to) = tokio::io::split(stream);
    let inbound = async {
        while let Some(Ok(message)) = messages.next().await {
            match message {
                Message::Binary(data) if to.write_all(&data).await.is_err() => break,
                Message::Binary(_) => {}
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = to.shutdown().await;
    };
    let outbound = async {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if sink
                        .send(Message::Binary(Bytes::copy_from_slice(&buf[..n])))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
        let _ = sink.close().await;
    };
    tokio::select! {
        _ = inbound => {}
        _ = outbound => {}
    }
}

/// What the SPDY session writes.
enum Out {
    Reply(u32),
    Data { stream: u32, data: Bytes, fin: bool },
    Reset(u32, u32),
    Ping(u32),
}

/// Writes the session's frames, a batch at a time, until every sender is gone.
async fn write_frames<W: AsyncWrite + Unpin>(mut io: W, mut frames: mpsc::Receiver<Out>) {
    let mut writer = FrameWriter::default();
    let mut buf = Vec::with_capacity(2 * CHUNK);
    while let Some(first) = frames.recv().await {
        buf.clear();
        let mut next = Some(first);
        while let Some(frame) = next.take() {
            match frame {
                Out::Reply(stream) => writer.reply(stream, &mut buf),
                Out::Data { stream, data, fin } => FrameWriter::data(stream, &data, fin, &mut buf),
                Out::Reset(stream, status) => FrameWriter::rst_stream(stream, status, &mut buf),
                Out::Ping(id) => FrameWriter::ping(id, &mut buf),
            }
            if buf.len() < 4 * CHUNK {
                next = frames.try_recv().ok();
            }
        }
        if io.write_all(&buf).await.is_err() || io.flush().await.is_err() {
            return;
        }
    }
    let _ = io.shutdown().await;
}

/// A forwarded connection's streams, as they arrive.
struct Pair {
    port: String,
    error: Option<u32>,
    data: Option<u32>,
    /// When its first stream came.
    since: std::time::Instant,
}

/// How long a pair's second stream may take to come, as the kubelet's stream creation
/// timeout.
const PAIRING: std::time::Duration = std::time::Duration::from_secs(30);
/// Streams a connection may have open at once.
const MAX_STREAMS: usize = 1024;
/// The RST_STREAM status for a stream the server will not take.
const REFUSED_STREAM: u32 = 3;

fn header<'a>(headers: &'a spdy::Headers, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.first())
        .map(String::as_str)
        .unwrap_or("")
}

/// Serves one SPDY connection: each stream pair is forwarded to the pod on its own.
async fn spdy_session<S: AsyncRead + AsyncWrite + Send + 'static>(pod: Pod, io: S) {
    let (read, write) = tokio::io::split(io);
    let (out, frames) = mpsc::channel::<Out>(64);
    let writer = tokio::spawn(write_frames(write, frames));
    let mut reader = FrameReader::new(read);
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    // Where each data stream's bytes go, and the forwarding of each stream's pair.
    let mut inbound: HashMap<u32, mpsc::Sender<Bytes>> = HashMap::new();
    let mut forwards: HashMap<u32, tokio::task::AbortHandle> = HashMap::new();
    loop {
        let frame = match reader.next().await {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(pod = %pod.name, error = %e, "a port-forward connection broke");
                break;
            }
        };
        match frame {
            Frame::SynStream {
                stream, headers, ..
            } => {
                let kind = header(&headers, "streamtype");
                let request = match header(&headers, "requestid") {
                    "" if kind == "data" => stream.saturating_sub(2).to_string(),
                    "" => stream.to_string(),
                    id => id.to_string(),
                };
                if !matches!(kind, "error" | "data") {
                    let _ = out.send(Out::Reset(stream, spdy::PROTOCOL_ERROR)).await;
                    continue;
                }
                // Pairs whose second stream never came are given up, as the kubelet does.
                let now = std::time::Instant::now();
                for (_, stale) in pairs.extract_if(|_, p| now.duration_since(p.since) > PAIRING) {
                    for stream in [stale.error, stale.data].into_iter().flatten() {
                        let _ = out.send(Out::Reset(stream, spdy::CANCEL)).await;
                    }
                }
                inbound.retain(|_, sender| !sender.is_closed());
                forwards.retain(|_, task| !task.is_finished());
                if pairs.len() + forwards.len() >= MAX_STREAMS {
                    let _ = out.send(Out::Reset(stream, REFUSED_STREAM)).await;
                    continue;
                }
                let _ = out.send(Out::Reply(stream)).await;
                let pair = pairs.entry(request.clone()).or_insert_with(|| Pair {
                    port: String::new(),
                    error: None,
                    data: None,
                    since: now,
                });
                pair.port = header(&headers, "port").to_string();
                if kind == "error" {
                    pair.error = Some(stream);
                } else {
                    pair.data = Some(stream);
                }
                let whole = pair.error.is_some() && pair.data.is_some();
                if let Some(Pair {
                    port,
                    error: Some(error),
                    data: Some(data),
                    ..
                }) = whole.then(|| pairs.remove(&request)).flatten()
                {
                    // The data stream's bytes are taken from the moment the pair is whole.
                    let (sender, receiver) = mpsc::channel(16);
                    inbound.insert(data, sender);
                    let task = tokio::spawn(forward(
                        pod.clone(),
                        port,
                        Streams { error, data },
                        receiver,
                        out.clone(),
                    ));
                    forwards.insert(error, task.abort_handle());
                    forwards.insert(data, task.abort_handle());
                }
            }
            Frame::Data { stream, data, fin } => {
                if let Some(sender) = inbound.get(&stream) {
                    if !data.is_empty() && sender.send(data).await.is_err() {
                        inbound.remove(&stream);
                    }
                    if fin {
                        inbound.remove(&stream);
                    }
                }
            }
            Frame::RstStream { stream, .. } => {
                inbound.remove(&stream);
                if let Some(task) = forwards.remove(&stream) {
                    task.abort();
                }
            }
            Frame::Ping(id) => {
                let _ = out.send(Out::Ping(id)).await;
            }
            Frame::GoAway => break,
            Frame::SynReply { .. } | Frame::Ignored => {}
        }
    }
    for task in forwards.values() {
        task.abort();
    }
    drop(out);
    // What is left to write goes out, unless the client has stopped reading.
    let mut writer = writer;
    if tokio::time::timeout(std::time::Duration::from_secs(5), &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
}

/// A forwarded connection's two streams.
struct Streams {
    error: u32,
    data: u32,
}

/// Forwards one connection: the client's data stream to the pod's `port` and back, until the
/// pod's end closes; a failure's message goes on the error stream.
async fn forward(
    pod: Pod,
    port: String,
    streams: Streams,
    from_client: mpsc::Receiver<Bytes>,
    out: mpsc::Sender<Out>,
) {
    let connection = match port.parse::<u16>() {
        Ok(number) if number > 0 => pod.connect(number).await,
        _ => Err(format!(
            "error forwarding port {port} to pod {}, uid {}: invalid port \"{port}\"",
            pod.name, pod.uid
        )),
    };
    let fin = |stream: u32| Out::Data {
        stream,
        data: Bytes::new(),
        fin: true,
    };
    let connection = match connection {
        Ok(connection) => connection,
        Err(message) => {
            tracing::debug!(pod = %pod.name, %message, "port-forward");
            let _ = out
                .send(Out::Data {
                    stream: streams.error,
                    data: Bytes::from(message),
                    fin: true,
                })
                .await;
            let _ = out.send(fin(streams.data)).await;
            return;
        }
    };
    let data = streams.data;
    pump(connection, from_client, &out, |chunk| Out::Data {
        stream: data,
        data: Bytes::copy_from_slice(chunk),
        fin: false,
    })
    .await;
    let _ = out.send(fin(streams.data)).await;
    let _ = out.send(fin(streams.error)).await;
}

/// Carries one forwarded connection: what the client sends (`from_client`, ended by its
/// half-close) to the pod, and what the pod sends to `out`, each read wrapped by `message`,
/// until the pod's end closes or writing to it fails.
async fn pump<M>(
    connection: Box<dyn Connection>,
    mut from_client: mpsc::Receiver<Bytes>,
    out: &mpsc::Sender<M>,
    message: impl Fn(&[u8]) -> M,
) {
    let (mut from_pod, mut to_pod) = tokio::io::split(connection);
    let up = async {
        while let Some(chunk) = from_client.recv().await {
            to_pod.write_all(&chunk).await?;
        }
        // The client is done sending: the pod reads the end, and may still answer.
        to_pod.shutdown().await
    };
    let down = async {
        let mut buf = vec![0u8; CHUNK];
        while let Ok(n) = from_pod.read(&mut buf).await {
            if n == 0 || out.send(message(&buf[..n])).await.is_err() {
                break;
            }
        }
    };
    tokio::pin!(up, down);
    tokio::select! {
        _ = &mut down => {}
        sent = &mut up => {
            if sent.is_ok() {
                down.await;
            }
        }
    }
}

/// Serves websocket channels: for the `i`th port, data on channel `2i` and errors on `2i+1`,
/// each opened with the port number (two bytes, little-endian), as the kubelet does.
async fn channels<S>(pod: Pod, ws: WebSocketStream<S>, ports: Vec<u16>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let (mut sink, mut messages) = ws.split();
    for (i, port) in ports.iter().enumerate() {
        let number = port.to_le_bytes();
        for channel in [2 * i as u8, 2 * i as u8 + 1] {
            let opening = Bytes::copy_from_slice(&[channel, number[0], number[1]]);
            if sink.send(Message::Binary(opening)).await.is_err() {
                return;
            }
        }
    }
    let (out, mut outgoing) = mpsc::channel::<Vec<u8>>(64);
    let mut to_pods: Vec<Option<mpsc::Sender<Bytes>>> = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, port) in ports.iter().enumerate() {
        let (data, error) = (2 * i as u8, 2 * i as u8 + 1);
        let (sender, receiver) = mpsc::channel::<Bytes>(16);
        to_pods.push(Some(sender));
        let (pod, out, port) = (pod.clone(), out.clone(), *port);
        tasks.spawn(async move {
            let connection = match pod.connect(port).await {
                Ok(connection) => connection,
                Err(message) => {
                    let mut frame = vec![error];
                    frame.extend_from_slice(message.as_bytes());
                    let _ = out.send(frame).await;
                    return;
                }
            };
            pump(connection, receiver, &out, |chunk| {
                let mut frame = Vec::with_capacity(chunk.len() + 1);
                frame.push(data);
                frame.extend_from_slice(chunk);
                frame
            })
            .await;
        });
    }
    drop(out);
    // What the pods send goes out on its own, so that a pod slow to read never holds up
    // another's answers.
    let writer = async {
        while let Some(frame) = outgoing.recv().await {
            if sink
                .send(Message::Binary(Bytes::from(frame)))
                .await
                .is_err()
            {
                break;
            }
        }
        // Every port's forwarding has ended.
        let _ = sink.close().await;
    };
    let reader = async {
        while let Some(Ok(message)) = messages.next().await {
            let payload = match message {
                Message::Binary(payload) => payload,
                Message::Close(_) => break,
                _ => continue,
            };
            let Some(&channel) = payload.first() else {
                continue;
            };
            // Only data channels carry anything from the client.
            let slot = to_pods
                .get_mut(usize::from(channel / 2))
                .filter(|_| channel % 2 == 0);
            if let Some(slot) = slot
                && let Some(sender) = slot
                && sender.send(payload.slice(1..)).await.is_err()
            {
                *slot = None;
            }
        }
    };
    tokio::select! {
        _ = writer => {}
        _ = reader => {}
    }
    tasks.abort_all();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    #[test]
    fn kubectl_websocket_and_spdy_requests_negotiate_spdy() {
        let query = super::super::Query::parse(None);
        let ws = headers(&[
            ("upgrade", "websocket"),
            ("sec-websocket-protocol", "SPDY/3.1+portforward.k8s.io"),
        ]);
        assert!(matches!(
            negotiate(&ws, &query),
            Ok(Protocol::Spdy { websocket: true })
        ));
        let spdy = headers(&[
            ("upgrade", "SPDY/3.1"),
            ("x-stream-protocol-version", "portforward.k8s.io"),
        ]);
        assert!(matches!(
            negotiate(&spdy, &query),
            Ok(Protocol::Spdy { websocket: false })
        ));
        let other = headers(&[
            ("upgrade", "SPDY/3.1"),
            ("x-stream-protocol-version", "v4.channel.k8s.io"),
        ]);
        assert!(matches!(
            negotiate(&other, &query),
            Err(ApiError::Forbidden(_))
        ));
        let plain = headers(&[]);
        let Err(ApiError::BadRequest(message)) = negotiate(&plain, &query) else {
            panic!("a plain request must be refused");
        };
        assert_eq!(message, "Upgrade request required");
    }

    #[test]
    fn channel_requests_need_valid_ports() {
        let ws = headers(&[
            ("upgrade", "websocket"),
            ("sec-websocket-protocol", "v4.channel.k8s.io"),
        ]);
        let query = super::super::Query::parse(Some("ports=8080,9090&ports=53"));
        let Ok(Protocol::Channels { ports, protocol }) = negotiate(&ws, &query) else {
            panic!("channels were offered");
        };
        assert_eq!(ports, [8080, 9090, 53]);
        assert_eq!(protocol, "v4.channel.k8s.io");
        for bad in [None, Some("ports=0"), Some("ports=http")] {
            let query = super::super::Query::parse(bad);
            assert!(
                matches!(negotiate(&ws, &query), Err(ApiError::BadRequest(_))),
                "{bad:?}"
            );
        }
        let unknown = headers(&[
            ("upgrade", "websocket"),
            ("sec-websocket-protocol", "v5.channel.k8s.io"),
        ]);
        assert!(matches!(
            negotiate(&unknown, &query),
            Err(ApiError::BadRequest(_))
        ));
    }
}
