//! A small network tool for the pod network, over `wasi:sockets` through the standard library:
//!
//! - `netkit serve ADDR [TEXT]`: a one-request-per-connection HTTP server on ADDR (such as
//!   `127.0.0.1:8080` or `0.0.0.0:8080`) answering TEXT (default: `$MESSAGE`, else `hello`).
//!   It logs each caller's address: `served 10.42.0.7:41234`.
//! - `netkit proxy ADDR TARGET`: the ambassador pattern: passes each request it takes on ADDR to
//!   TARGET (`HOST:PORT`, a name or an address) and the answer back.
//! - `netkit get TARGET [PATH]`: asks TARGET for PATH (default `/`) every `$INTERVAL_MS`
//!   (default 500), `$COUNT` times (default: without end), and logs each answer's body, or the
//!   error, as `TARGET: ...`.
//! - `netkit resolve NAME`: logs NAME's addresses every `$INTERVAL_MS`, `$COUNT` times:
//!   `NAME: 10.42.0.5 10.42.0.6`, or the error.
//! - `netkit udp-echo ADDR`: answers every datagram on ADDR with `echo ` and the datagram.
//! - `netkit udp-send TARGET TEXT`: sends TEXT to TARGET and logs the answer.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["serve", addr] => serve(addr, &message()),
        ["serve", addr, text] => serve(addr, text),
        ["proxy", addr, target] => proxy(addr, target),
        ["get", target] => get(target, "/"),
        ["get", target, path] => get(target, path),
        ["resolve", name] => resolve(name),
        ["udp-echo", addr] => udp_echo(addr),
        ["udp-send", target, text] => udp_send(target, text),
        _ => Err("usage: netkit serve|proxy|get|resolve|udp-echo|udp-send ...".to_string()),
    };
    if let Err(e) = result {
        eprintln!("netkit: {e}");
        std::process::exit(1);
    }
}

fn message() -> String {
    std::env::var("MESSAGE").unwrap_or_else(|_| "hello".into())
}

fn env_number(key: &str) -> Option<u64> {
    std::env::var(key).ok().and_then(|v| v.parse().ok())
}

/// The caller's address, as the pod network shows it.
fn peer_of(stream: &TcpStream) -> String {
    stream
        .peer_addr()
        .map(|p| p.to_string())
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

/// Reads an HTTP request's head: the lines up to the blank one.
fn read_head(stream: &TcpStream) -> std::io::Result<String> {
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(head);
        }
        head.push_str(&line);
        if line == "\r\n" || line == "\n" {
            return Ok(head);
        }
    }
}

fn serve(addr: &str, text: &str) -> Result<(), String> {
    let listener = TcpListener::bind(addr).map_err(|e| format!("binding {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    println!("listening on {local}");
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let peer = peer_of(&stream);
        if read_head(&stream).is_err() {
            continue;
        }
        let body = format!("{text}\n");
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(answer.as_bytes());
        let _ = stream.flush();
        println!("served {peer}");
    }
    Ok(())
}

fn proxy(addr: &str, target: &str) -> Result<(), String> {
    let listener = TcpListener::bind(addr).map_err(|e| format!("binding {addr}: {e}"))?;
    println!("proxying {addr} to {target}");
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let peer = peer_of(&stream);
        // A caller that leaves without asking (a TCP probe, say) gets nothing passed on.
        let Ok(head) = read_head(&stream) else {
            continue;
        };
        if head.trim().is_empty() {
            continue;
        }
        let answer = TcpStream::connect(target).and_then(|mut upstream| {
            upstream.write_all(head.as_bytes())?;
            let mut answer = Vec::new();
            upstream.read_to_end(&mut answer)?;
            Ok(answer)
        });
        match answer {
            Ok(answer) => {
                let _ = stream.write_all(&answer);
                println!("proxied {peer} to {target}");
            }
            Err(e) => {
                let body = format!("{target}: {e}\n");
                let answer = format!(
                    "HTTP/1.1 502 Bad Gateway\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes());
                println!("proxying to {target} failed: {e}");
            }
        }
    }
    Ok(())
}

/// One request to `target`: the answer's body.
fn fetch(target: &str, path: &str) -> std::io::Result<String> {
    let addr = target
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other("no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    let host = target.rsplit_once(':').map_or(target, |(host, _)| host);
    write!(stream, "GET {path} HTTP/1.0\r\nhost: {host}\r\n\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let body = answer
        .split_once("\r\n\r\n")
        .map_or(answer.as_str(), |(_, body)| body);
    Ok(body.trim_end().to_string())
}

fn get(target: &str, path: &str) -> Result<(), String> {
    repeat(|| match fetch(target, path) {
        Ok(body) => println!("{target}: {body}"),
        Err(e) => println!("{target}: error: {e}"),
    });
    Ok(())
}

/// Does `each` every `$INTERVAL_MS` (default 500), `$COUNT` times (default: without end).
fn repeat(mut each: impl FnMut()) {
    let interval = Duration::from_millis(env_number("INTERVAL_MS").unwrap_or(500));
    let count = env_number("COUNT");
    let mut done = 0;
    loop {
        each();
        done += 1;
        if count.is_some_and(|c| done >= c) {
            return;
        }
        std::thread::sleep(interval);
    }
}

fn resolve(name: &str) -> Result<(), String> {
    repeat(|| match (name, 0).to_socket_addrs() {
        Ok(found) => {
            let mut ips: Vec<String> = found.map(|a| a.ip().to_string()).collect();
            ips.sort();
            ips.dedup();
            println!("{name}: {}", ips.join(" "));
        }
        Err(e) => println!("{name}: error: {e}"),
    });
    Ok(())
}

fn udp_echo(addr: &str) -> Result<(), String> {
    let socket = UdpSocket::bind(addr).map_err(|e| format!("binding {addr}: {e}"))?;
    println!(
        "echoing on {}",
        socket.local_addr().map_err(|e| e.to_string())?
    );
    let mut buf = [0u8; 2048];
    loop {
        let (n, peer) = socket.recv_from(&mut buf).map_err(|e| e.to_string())?;
        let mut answer = b"echo ".to_vec();
        answer.extend_from_slice(&buf[..n]);
        let _ = socket.send_to(&answer, peer);
        println!("echoed {peer}");
    }
}

fn udp_send(target: &str, text: &str) -> Result<(), String> {
    let socket = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    socket
        .send_to(text.as_bytes(), target)
        .map_err(|e| format!("sending to {target}: {e}"))?;
    let mut buf = [0u8; 2048];
    let (n, peer) = socket
        .recv_from(&mut buf)
        .map_err(|e| format!("waiting for {target}: {e}"))?;
    println!("{peer}: {}", String::from_utf8_lossy(&buf[..n]));
    Ok(())
}
