//! The HTTP containers of this node, by the pod addresses they serve at, so that the node's
//! own Service proxy and Ingress reach them without a second connection. A connection to a
//! node port or load balancer whose endpoint is one of them is served by the container's
//! HTTP server as one it accepted itself; a request the Ingress routes to one is handed to the
//! container as it was parsed. What the container sees is what it would over a connection
//! from the node: `wasi:http` gives a handler no peer address. A container that no longer
//! takes connections (it is stopping) is left out, and the caller connects as to any other
//! endpoint.

use std::collections::HashMap;
use std::net::SocketAddrV4;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::combinators::UnsyncBoxBody;
use tokio::net::TcpStream;

/// An error a response body gives.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A response body.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// An HTTP container's server, as the node reaches it in process.
pub trait Server: Send + Sync {
    /// Serves `stream` as a connection the container accepted; gives it back when the
    /// container no longer takes connections.
    fn connection(&self, stream: TcpStream) -> Result<(), TcpStream>;

    /// Answers `request` with a new instance of the container.
    fn request(
        &self,
        request: hyper::Request<hyper::body::Incoming>,
    ) -> BoxFuture<'static, hyper::Response<Body>>;
}

type Table = HashMap<SocketAddrV4, Arc<dyn Server>>;

/// The HTTP containers of this node, by pod address and port.
#[derive(Clone, Default)]
pub struct LocalServers(Arc<RwLock<Table>>);

impl std::fmt::Debug for LocalServers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let table = self.0.read().unwrap_or_else(|p| p.into_inner());
        f.debug_set().entries(table.keys()).finish()
    }
}

impl LocalServers {
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Table> {
        self.0.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Lists `server` at each of `places` until the registration is dropped.
    pub fn register(&self, places: Vec<SocketAddrV4>, server: Arc<dyn Server>) -> Registration {
        let mut table = self.write();
        for at in &places {
            table.insert(*at, server.clone());
        }
        Registration {
            servers: self.clone(),
            places,
            server,
        }
    }

    /// The container serving at `at`, if it is on this node.
    pub fn at(&self, at: SocketAddrV4) -> Option<Arc<dyn Server>> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&at)
            .cloned()
    }
}

/// A container's places in [`LocalServers`]; dropping it takes them out.
pub struct Registration {
    servers: LocalServers,
    places: Vec<SocketAddrV4>,
    server: Arc<dyn Server>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut table = self.servers.write();
        for at in &self.places {
            // A place a newer container took over (a restart) stays the newer one's.
            if table.get(at).is_some_and(|s| Arc::ptr_eq(s, &self.server)) {
                table.remove(at);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Refusing;

    impl Server for Refusing {
        fn connection(&self, stream: TcpStream) -> Result<(), TcpStream> {
            Err(stream)
        }

        fn request(
            &self,
            _: hyper::Request<hyper::body::Incoming>,
        ) -> BoxFuture<'static, hyper::Response<Body>> {
            unreachable!("no request is sent in these tests")
        }
    }

    #[test]
    fn a_registration_lists_its_places_until_dropped_and_spares_a_successor() {
        let servers = LocalServers::default();
        let at: SocketAddrV4 = "10.42.0.5:8080".parse().unwrap();
        let other: SocketAddrV4 = "10.42.0.5:9090".parse().unwrap();
        let first = servers.register(vec![at, other], Arc::new(Refusing));
        assert!(servers.at(at).is_some() && servers.at(other).is_some());
        assert!(servers.at("10.42.0.6:8080".parse().unwrap()).is_none());
        // A restarted container registers before the old registration goes.
        let second = servers.register(vec![at], Arc::new(Refusing));
        drop(first);
        assert!(servers.at(at).is_some(), "the successor keeps its place");
        assert!(servers.at(other).is_none());
        drop(second);
        assert!(servers.at(at).is_none());
    }
}
