//! The node's one wasmtime engine, the WASI host it links components against, and running a
//! `wasi:cli/run` component as a container process.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{
    CallHook, Config, Engine, ResourceLimiter, Store, StoreLimits, StoreLimitsBuilder,
    UpdateDeadline,
};
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::sockets::WasiSocketsCtxView;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::cpu::{CpuLimit, CpuMeter};
use crate::image::{Image, ImageError, ImageStore};
use crate::logs::StreamWriter;
use crate::net::PodAddress;
use crate::net::sockets::PodSockets;
use crate::usage::{ContainerUsage, metered};

/// How often the engine's epoch advances: the granularity of stopping a running guest and of
/// sharing the CPU between guests.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// What a component is, judged by its exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Exports `wasi:cli/run`: runs as a process.
    Command,
    /// Exports `wasi:http/incoming-handler`: served per request.
    HttpHandler,
}

/// Why a component cannot run here.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("compiling the component: {0}")]
    Compile(String),
    #[error("the component exports neither wasi:cli/run nor wasi:http/incoming-handler")]
    NoEntryPoint,
    #[error("{0}")]
    Unsupported(String),
}

/// The per-instance state: WASI and WASI HTTP contexts, resources and memory limits.
pub struct Host {
    ctx: WasiCtx,
    http: wasmtime_wasi_http::WasiHttpCtx,
    table: ResourceTable,
    limits: Limits,
    /// The CPU meter of a guest with a CPU limit.
    cpu: Option<CpuMeter>,
    /// The instance's view of the pod network.
    net: PodSockets,
    /// Where its outgoing HTTP requests go.
    http_hooks: crate::net::http::PodHttp,
}

impl Host {
    /// The instance's resource table.
    pub(crate) fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }

    /// The pod network view and the stock sockets host, for the socket layer.
    pub(crate) fn pod_sockets(&mut self) -> (&mut PodSockets, WasiSocketsCtxView<'_>) {
        (
            &mut self.net,
            WasiSocketsCtxView {
                ctx: self.ctx.sockets(),
                table: &mut self.table,
            },
        )
    }
}

impl wasmtime_wasi_http::WasiHttpView for Host {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.http_hooks,
        }
    }
}

impl WasiView for Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

/// An instance's memory limits, which also count the memory it holds into its container's
/// usage, and take it out again when the instance goes.
struct Limits {
    limits: StoreLimits,
    usage: Arc<ContainerUsage>,
    /// Linear memory the instance holds, in bytes. A growth allowed that then failed (the
    /// host out of memory) stays counted until the instance goes: wasmtime does not say which
    /// growth failed.
    held: u64,
}

impl ResourceLimiter for Limits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if allowed && maximum.is_none_or(|m| desired <= m) {
            let growth = desired.saturating_sub(current) as u64;
            self.held += growth;
            self.usage.grew(growth);
        }
        Ok(allowed)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

impl Drop for Limits {
    fn drop(&mut self) {
        self.usage.released(self.held);
    }
}

/// One container run: what it gets and where its output goes.
pub struct RunSpec {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub stdout: StreamWriter,
    pub stderr: StreamWriter,
    /// `resources.limits.memory`, in bytes.
    pub memory_limit: Option<usize>,
    /// `resources.limits.cpu`: the share all the container's instances draw on.
    pub cpu: Option<CpuLimit>,
    /// Volumes, at their mount paths.
    pub preopens: Vec<Preopen>,
    /// Where the CPU time and memory the run uses are counted.
    pub usage: Arc<ContainerUsage>,
    /// The pod's address, which its sockets live on.
    pub pod: PodAddress,
    /// What the node's pods share of the pod network.
    pub network: Arc<crate::net::NodeNetwork>,
    /// How the pod resolves names.
    pub dns: Arc<crate::net::dns::PodDns>,
}

/// A host directory the guest sees at `guest`.
pub struct Preopen {
    pub host: std::path::PathBuf,
    pub guest: String,
    pub read_only: bool,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    pub code: i32,
    /// Kubernetes' terminated reason: Completed, Error or OOMKilled.
    pub reason: &'static str,
    pub message: Option<String>,
}

/// The wasmtime engine and WASI linker of a node.
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    linker: Arc<Linker<Host>>,
    /// Names compiled components so that another engine build never loads them.
    engine_key: String,
    /// Components loaded, checked and linked, by the digest of their image: every pod of an
    /// image shares one, so a start after the first only instantiates.
    loaded: Arc<std::sync::Mutex<HashMap<String, Loaded>>>,
}

/// Components kept loaded at most; past it the cache starts over.
const LOADED_MAX: usize = 256;

/// A component ready to run: what it is, and its imports linked.
#[derive(Clone)]
pub struct Loaded {
    pub kind: Kind,
    pre: Pre,
}

#[derive(Clone)]
enum Pre {
    Command(CommandPre<Host>),
    Http(ProxyPre<Host>),
}

impl Runtime {
    pub fn new() -> anyhow::Result<Runtime> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        let engine = Engine::new(&config).map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        crate::net::sockets::add_to_linker(&mut linker).map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let mut hasher = std::hash::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = format!("{:016x}", hasher.finish());
        // The epoch ticks for the life of the process; a weak handle ends the thread with the
        // engine.
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("skiff-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })?;
        Ok(Runtime {
            engine,
            linker: Arc::new(linker),
            engine_key,
            loaded: Arc::default(),
        })
    }

    /// The component of `image`, checked (see [`Runtime::check`]) and linked: from memory when
    /// a pod of the image started before, else compiled on first use and loaded from the
    /// compiled cache after.
    pub fn prepare(&self, images: &ImageStore, image: &Image) -> Result<Loaded, LoadError> {
        let cache = || self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(loaded) = cache().get(&image.digest) {
            return Ok(loaded.clone());
        }
        let component = self.load(images, image)?;
        let (kind, linked) = self.check(&component)?;
        let pre = match kind {
            Kind::Command => CommandPre::new(linked).map(Pre::Command),
            Kind::HttpHandler => ProxyPre::new(linked).map(Pre::Http),
        }
        .map_err(|e| LoadError::Unsupported(format!("{e:#}")))?;
        let loaded = Loaded { kind, pre };
        let mut cache = cache();
        if cache.len() >= LOADED_MAX {
            cache.clear();
        }
        cache.insert(image.digest.clone(), loaded.clone());
        Ok(loaded)
    }

    /// The component of `image`, compiled on first use and loaded from the compiled cache after.
    pub fn load(&self, images: &ImageStore, image: &Image) -> Result<Component, LoadError> {
        let compiled = images.compiled_path(image, &self.engine_key);
        if compiled.exists() {
            // SAFETY: the file was written by `Component::serialize` of an engine with this
            // compatibility hash, in the node's own image store (which only the node writes),
            // and is replaced atomically, so it is never a partial or foreign artifact.
            #[allow(unsafe_code)]
            let loaded = unsafe { Component::deserialize_file(&self.engine, &compiled) };
            match loaded {
                Ok(component) => return Ok(component),
                Err(e) => tracing::warn!(path = %compiled.display(), error = %e, "recompiling"),
            }
        }
        let bytes = images.read(image)?;
        let component = Component::new(&self.engine, &bytes)
            .map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        match component.serialize() {
            Ok(serialized) => {
                if let Err(e) = images.store_compiled(&compiled, &serialized) {
                    tracing::warn!(error = %e, "keeping the compiled component failed");
                }
            }
            Err(e) => tracing::warn!(error = %e, "serializing the compiled component failed"),
        }
        Ok(component)
    }

    /// What `component` is, and whether this node provides everything it imports.
    pub fn check(
        &self,
        component: &Component,
    ) -> Result<(Kind, wasmtime::component::InstancePre<Host>), LoadError> {
        let ty = component.component_type();
        let exports: Vec<&str> = ty.exports(&self.engine).map(|(name, _)| name).collect();
        let kind = if exports.iter().any(|e| e.starts_with("wasi:cli/run@0.2")) {
            Kind::Command
        } else if exports
            .iter()
            .any(|e| e.starts_with("wasi:http/incoming-handler@0.2"))
        {
            Kind::HttpHandler
        } else {
            return Err(LoadError::NoEntryPoint);
        };
        let linked = self
            .linker
            .instantiate_pre(component)
            .map_err(|e| LoadError::Unsupported(format!("{e:#}")))?;
        Ok((kind, linked))
    }

    /// A store for one instance: the container's argv, environment, output, volumes and limits.
    fn store(&self, spec: &RunSpec) -> Result<Store<Host>, String> {
        let mut wasi = WasiCtx::builder();
        wasi.args(&spec.argv)
            .envs(&spec.env)
            .stdout(LogOutput(spec.stdout.clone()))
            .stderr(LogOutput(spec.stderr.clone()))
            // Addresses reach the stock sockets host translated (see `crate::net::sockets`).
            .inherit_network()
            .allow_tcp(true)
            .allow_udp(true)
            .allow_ip_name_lookup(true);
        for preopen in &spec.preopens {
            let perms = if preopen.read_only {
                wasmtime_wasi::FsPerms::ReadOnly
            } else {
                wasmtime_wasi::FsPerms::ReadWrite
            };
            wasi.preopened_dir(&preopen.host, &preopen.guest, perms)
                .map_err(|e| {
                    format!(
                        "mounting {} at {}: {e:#}",
                        preopen.host.display(),
                        preopen.guest
                    )
                })?;
        }
        let mut limits = StoreLimitsBuilder::new().trap_on_grow_failure(true);
        if let Some(bytes) = spec.memory_limit {
            limits = limits.memory_size(bytes);
        }
        let mut store = Store::new(
            &self.engine,
            Host {
                ctx: wasi.build(),
                http: wasmtime_wasi_http::WasiHttpCtx::new(),
                table: ResourceTable::new(),
                limits: Limits {
                    limits: limits.build(),
                    usage: spec.usage.clone(),
                    held: 0,
                },
                cpu: None,
                net: PodSockets::new(spec.pod, spec.network.clone(), spec.dns.clone()),
                http_hooks: crate::net::http::PodHttp::new(
                    spec.pod,
                    spec.network.clone(),
                    spec.dns.clone(),
                ),
            },
        );
        store.limiter(|host| &mut host.limits);
        // Yield to the scheduler at every epoch tick, so a busy guest shares its thread and can
        // be stopped; a guest with a CPU limit is metered, and paused at a tick when it has
        // used more than its share.
        match &spec.cpu {
            None => store.epoch_deadline_async_yield_and_update(1),
            Some(limit) => {
                store.data_mut().cpu = Some(CpuMeter::new(limit));
                store.call_hook(|mut ctx, hook| {
                    if let Some(meter) = ctx.data_mut().cpu.as_mut() {
                        match hook {
                            CallHook::CallingWasm | CallHook::ReturningFromHost => {
                                meter.enter(Instant::now())
                            }
                            CallHook::CallingHost | CallHook::ReturningFromWasm => {
                                meter.leave(Instant::now())
                            }
                        }
                    }
                    Ok(())
                });
                store.epoch_deadline_callback(|mut ctx| {
                    let pause = ctx
                        .data_mut()
                        .cpu
                        .as_mut()
                        .and_then(|m| m.tick(Instant::now()));
                    Ok(match pause {
                        Some(pause) => UpdateDeadline::YieldCustom(
                            1,
                            Box::pin(async move { tokio::time::sleep(pause).await }),
                        ),
                        None => UpdateDeadline::Yield(1),
                    })
                });
            }
        }
        Ok(store)
    }

    /// Serves a `wasi:http/incoming-handler` component on `listeners`, an instance per
    /// request. Once `stop` resolves, it stops listening, lets the requests under way finish
    /// (closing idle keep-alive connections) and returns; dropping the future stops it at once,
    /// connections and all.
    pub async fn serve_http(
        &self,
        loaded: &Loaded,
        spec: RunSpec,
        listeners: Vec<tokio::net::TcpListener>,
        stop: impl std::future::Future<Output = ()>,
    ) -> Exit {
        let Pre::Http(pre) = loaded.pre.clone() else {
            return Exit {
                code: 128,
                reason: "ContainerCannotRun",
                message: Some("the component is not an HTTP handler".into()),
            };
        };
        let server = Arc::new(HttpServer {
            runtime: self.clone(),
            pre,
            spec,
        });
        let mut accepts = futures::stream::select_all(listeners.into_iter().map(|listener| {
            futures::stream::unfold(listener, |listener| async move {
                let accepted = listener.accept().await;
                Some((accepted, listener))
            })
            .boxed()
        }));
        let (draining, drain) = tokio::sync::watch::channel(false);
        let mut connections = tokio::task::JoinSet::new();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                Some(accepted) = accepts.next() => {
                    let Ok((tcp, _)) = accepted else { continue };
                    let _ = tcp.set_nodelay(true);
                    let server = server.clone();
                    let mut drain = drain.clone();
                    connections.spawn(async move {
                        let service = hyper::service::service_fn(move |request| {
                            let server = server.clone();
                            async move { server.handle(request).await }
                        });
                        let connection = hyper::server::conn::http1::Builder::new()
                            .keep_alive(true)
                            .serve_connection(wasmtime_wasi_http::io::TokioIo::new(tcp), service);
                        tokio::pin!(connection);
                        tokio::select! {
                            _ = &mut connection => {}
                            () = async { let _ = drain.wait_for(|d| *d).await; } => {
                                connection.as_mut().graceful_shutdown();
                                let _ = connection.await;
                            }
                        }
                    });
                }
                Some(_) = connections.join_next() => {}
                () = &mut stop => break,
            }
        }
        // No new connections; the open ones finish what they are doing.
        drop(accepts);
        let _ = draining.send(true);
        while connections.join_next().await.is_some() {}
        Exit {
            code: 0,
            reason: "Completed",
            message: None,
        }
    }

    /// Runs a `wasi:cli/run` component to its end.
    pub async fn run_command(&self, loaded: &Loaded, spec: RunSpec) -> Exit {
        let Pre::Command(pre) = loaded.pre.clone() else {
            return Exit {
                code: 128,
                reason: "ContainerCannotRun",
                message: Some("the component is not a command".into()),
            };
        };
        let mut store = match self.store(&spec) {
            Ok(store) => store,
            Err(message) => {
                let _ = spec.stderr.write(format!("{message}\n").as_bytes());
                let _ = spec.stderr.finish();
                return Exit {
                    code: 128,
                    reason: "ContainerCannotRun",
                    message: Some(message),
                };
            }
        };
        let outcome = metered(&spec.usage, async {
            let command = pre.instantiate_async(&mut store).await?;
            command.wasi_cli_run().call_run(&mut store).await
        })
        .await;
        drop(store);
        let _ = spec.stdout.finish();
        let _ = spec.stderr.finish();
        match outcome {
            Ok(Ok(())) => Exit {
                code: 0,
                reason: "Completed",
                message: None,
            },
            Ok(Err(())) => Exit {
                code: 1,
                reason: "Error",
                message: None,
            },
            Err(e) => {
                if let Some(exit) = e.downcast_ref::<wasmtime_wasi::I32Exit>() {
                    return Exit {
                        code: exit.0,
                        reason: if exit.0 == 0 { "Completed" } else { "Error" },
                        message: None,
                    };
                }
                let text = format!("{e:#}");
                if text.contains("forcing trap when growing memory") {
                    return Exit {
                        code: 137,
                        reason: "OOMKilled",
                        message: Some(format!(
                            "the container exceeded its memory limit of {} bytes",
                            spec.memory_limit.unwrap_or_default()
                        )),
                    };
                }
                let _ = spec.stderr.write(format!("{text}\n").as_bytes());
                let _ = spec.stderr.finish();
                Exit {
                    code: 1,
                    reason: "Error",
                    message: Some(text),
                }
            }
        }
    }
}

/// A container's stdout or stderr, into its log.
struct LogOutput(StreamWriter);

impl wasmtime_wasi::cli::IsTerminal for LogOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for LogOutput {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(LogWriter(self.0.clone()))
    }
}

struct LogWriter(StreamWriter);

impl tokio::io::AsyncWrite for LogWriter {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::task::Poll::Ready(self.0.write(buf).map(|()| buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// An HTTP component being served: each request gets a fresh instance.
struct HttpServer {
    runtime: Runtime,
    pre: ProxyPre<Host>,
    spec: RunSpec,
}

type HttpResponse = hyper::Response<wasmtime_wasi_http::p2::body::HyperOutgoingBody>;

impl HttpServer {
    async fn handle(
        &self,
        request: hyper::Request<hyper::body::Incoming>,
    ) -> Result<HttpResponse, std::convert::Infallible> {
        Ok(match self.instance(request).await {
            Ok(response) => response,
            Err(message) => {
                let _ = self.spec.stderr.write(format!("{message}\n").as_bytes());
                error_response(&message)
            }
        })
    }

    async fn instance(
        &self,
        request: hyper::Request<hyper::body::Incoming>,
    ) -> Result<HttpResponse, String> {
        use wasmtime_wasi_http::WasiHttpView;
        use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
        let mut store = self.runtime.store(&self.spec)?;
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let request = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, request)
            .map_err(|e| format!("{e:#}"))?;
        let out = store
            .data_mut()
            .http()
            .new_response_outparam(sender)
            .map_err(|e| format!("{e:#}"))?;
        let (pre, usage) = (self.pre.clone(), self.spec.usage.clone());
        // The guest may keep writing the body after it sent the head: run it on its own task.
        let task = tokio::spawn(async move {
            metered(&usage, async {
                let proxy = pre.instantiate_async(&mut store).await?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(store, request, out)
                    .await
            })
            .await
        });
        match receiver.await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => Err(format!("the component answered with an error: {e:?}")),
            Err(_) => Err(match task.await {
                Ok(Ok(())) => "the component never set a response".to_string(),
                Ok(Err(e)) => format!("the component failed: {e:#}"),
                Err(e) => format!("the component's task failed: {e}"),
            }),
        }
    }
}

/// A 500 carrying `message`, the node's answer for a component that failed.
fn error_response(message: &str) -> HttpResponse {
    use http_body_util::BodyExt;
    let body: wasmtime_wasi_http::p2::body::HyperOutgoingBody =
        http_body_util::Full::new(bytes::Bytes::from(format!("{message}\n")))
            .map_err(|never| match never {})
            .boxed_unsync();
    let mut response = hyper::Response::new(body);
    *response.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
    response
}
