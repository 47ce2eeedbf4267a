//! The HTTP hello: a `wasi:http/incoming-handler` component. The node serves it on its pod's
//! containerPort, one instance per request; it answers with a greeting, the request's method
//! and path, and the pod's name from its environment. `/status/NNN` answers with status NNN.

use wasi::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Hello;

impl wasi::exports::http::incoming_handler::Guest for Hello {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let method = match request.method() {
            Method::Get => "GET".to_string(),
            Method::Post => "POST".to_string(),
            Method::Put => "PUT".to_string(),
            Method::Delete => "DELETE".to_string(),
            Method::Head => "HEAD".to_string(),
            other => format!("{other:?}"),
        };
        let path = request.path_with_query().unwrap_or_else(|| "/".into());
        let name = std::env::var("GREETING_NAME").unwrap_or_else(|_| "world".into());
        let pod = std::env::var("POD_NAME").unwrap_or_default();
        let text = format!("hello, {name}\n{method} {path}\npod {pod}\n");
        println!("{method} {path}");
        let headers = Fields::from_list(&[(
            "content-type".to_string(),
            b"text/plain; charset=utf-8".to_vec(),
        )])
        .expect("valid headers");
        let response = OutgoingResponse::new(headers);
        // `/status/NNN` answers with that status, for probes and clients that need a failure.
        if let Some(code) = path
            .strip_prefix("/status/")
            .and_then(|c| c.parse::<u16>().ok())
        {
            response
                .set_status_code(code)
                .expect("a valid status code");
        }
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

wasi::http::proxy::export!(Hello);
