//! The HTTP frontend: a `wasi:http/incoming-handler` component that answers each request by
//! calling its backend (`BACKEND_URL`, such as `http://backend/`: a Service name) with an
//! outgoing `wasi:http` request, and passing on what the backend said under a line of its own.

use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingRequest, OutgoingResponse, ResponseOutparam,
    Scheme,
};

struct Frontend;

/// The backend's status and body, or why it could not be reached.
fn call(url: &str) -> Result<(u16, String), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("{url}: not a URL"))?;
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    let request = OutgoingRequest::new(Fields::new());
    request
        .set_scheme(Some(&if scheme == "https" {
            Scheme::Https
        } else {
            Scheme::Http
        }))
        .map_err(|()| "bad scheme".to_string())?;
    request
        .set_authority(Some(authority))
        .map_err(|()| "bad authority".to_string())?;
    request
        .set_path_with_query(Some(path))
        .map_err(|()| "bad path".to_string())?;
    let pending = wasi::http::outgoing_handler::handle(request, None)
        .map_err(|e| format!("calling {url}: {e:?}"))?;
    pending.subscribe().block();
    let response = pending
        .get()
        .ok_or("no response")?
        .map_err(|()| "response taken twice".to_string())?
        .map_err(|e| format!("calling {url}: {e:?}"))?;
    let status = response.status();
    let body = response.consume().map_err(|()| "no body".to_string())?;
    let stream = body.stream().map_err(|()| "no body stream".to_string())?;
    let mut text = Vec::new();
    while let Ok(chunk) = stream.blocking_read(64 * 1024) {
        text.extend(chunk);
    }
    Ok((status, String::from_utf8_lossy(&text).into_owned()))
}

impl wasi::exports::http::incoming_handler::Guest for Frontend {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        let backend = std::env::var("BACKEND_URL").unwrap_or_else(|_| "http://backend/".into());
        let (status, text) = match call(&backend) {
            Ok((status, body)) => (200, format!("frontend: {backend} said {status}\n{body}")),
            Err(e) => (502, format!("frontend: {e}\n")),
        };
        println!("{backend}: {}", text.lines().next().unwrap_or(""));
        let response = OutgoingResponse::new(Fields::new());
        response.set_status_code(status).expect("a valid status");
        let body = response.body().expect("the response body");
        ResponseOutparam::set(out, Ok(response));
        let stream = body.write().expect("the body stream");
        stream
            .blocking_write_and_flush(text.as_bytes())
            .expect("writing the body");
        drop(stream);
        OutgoingBody::finish(body, None).expect("finishing the body");
    }
}

wasi::http::proxy::export!(Frontend);
