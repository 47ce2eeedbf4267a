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

/// The wasmtime engines and WASI linkers of a node.
#[derive(Clone)]
pub struct Runtime {
    /// Allocates each instance's memories, tables and stack when it starts and frees them when
    /// it ends: for commands, which run for as long as their containers, and for requests the
    /// pool has no room for.
    engine: Engine,
    linker: Arc<Linker<Host>>,
    /// Keeps a pool of memories, tables and stacks that requests' instances take and give
    /// back, as `wasmtime serve` does: an instance per request then costs no mapping of
    /// memory. None where the address space is too small for the pool.
    pooled: Option<(Engine, Arc<Linker<Host>>)>,
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
    Http {
        /// Linked in the pooling engine, where there is one.
        pooled: Option<ProxyPre<Host>>,
        /// Linked in the engine that allocates on demand.
        on_demand: ProxyPre<Host>,
    },
}

/// Instances the pool holds at most, of components and of their parts; past them, a request's
/// instance is allocated on demand. A component's instance is a few core instances, with
/// their memories and tables.
const POOL_COMPONENT_INSTANCES: u32 = 1000;
const POOL_CORE_INSTANCES: u32 = 4000;
const POOL_MEMORIES: u32 = 1000;
const POOL_TABLES: u32 = 4000;

/// Whether an instantiation failed for want of room in the pool.
fn pool_full(error: &wasmtime::Error) -> bool {
    error
        .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
        .is_some()
}

/// The engine settings both engines share, so that a component compiled once runs in either.
fn engine_config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config
}

/// A linker with WASI, WASI HTTP and the pod network's sockets.
fn linker(engine: &Engine) -> anyhow::Result<Linker<Host>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| anyhow::anyhow!("{e:#}"))?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
        .map_err(|e| anyhow::anyhow!("{e:#}"))?;
    crate::net::sockets::add_to_linker(&mut linker).map_err(|e| anyhow::anyhow!("{e:#}"))?;
    Ok(linker)
}

/// The pooling engine, unless the pool's address space cannot be reserved here (a 39-bit
/// address space, or a limit on it).
fn pooled_engine() -> Option<Engine> {
    let mut pool = wasmtime::PoolingAllocationConfig::default();
    pool.total_component_instances(POOL_COMPONENT_INSTANCES)
        .total_core_instances(POOL_CORE_INSTANCES)
        .total_memories(POOL_MEMORIES)
        .total_tables(POOL_TABLES)
        .total_stacks(POOL_COMPONENT_INSTANCES);
    let mut config = engine_config();
    config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
    match Engine::new(&config) {
        Ok(engine) => Some(engine),
        Err(e) => {
            tracing::info!(error = %format!("{e:#}"), "no instance pool: every instance is allocated on demand");
            None
        }
    }
}

impl Runtime {
    pub fn new() -> anyhow::Result<Runtime> {
        let engine = Engine::new(&engine_config()).map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let linker = linker(&engine)?;
        let pooled = match pooled_engine() {
            Some(pooled) => {
                let linker = self::linker(&pooled)?;
                Some((pooled, Arc::new(linker)))
            }
            None => None,
        };
        let mut hasher = std::hash::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = format!("{:016x}", hasher.finish());
        // The epochs tick for the life of the process; weak handles end the thread with the
        // engines.
        let weak = engine.weak();
        let weak_pooled = pooled.as_ref().map(|(e, _)| e.weak());
        std::thread::Builder::new()
            .name("skiff-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    if let Some(pooled) = weak_pooled.as_ref().and_then(|w| w.upgrade()) {
                        pooled.increment_epoch();
                    }
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })?;
        Ok(Runtime {
            engine,
            linker: Arc::new(linker),
            pooled,
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
        let component = self.load(&self.engine, images, image)?;
        let (kind, linked) = self.check(&component)?;
        let unsupported = |e: wasmtime::Error| LoadError::Unsupported(format!("{e:#}"));
        let pre = match kind {
            Kind::Command => Pre::Command(CommandPre::new(linked).map_err(unsupported)?),
            Kind::HttpHandler => {
                // The compiled component runs in either engine: the pooling one loads it
                // from the file just written.
                let pooled = match &self.pooled {
                    Some((engine, linker)) => {
                        let component = self.load(engine, images, image)?;
                        let linked = linker.instantiate_pre(&component).map_err(unsupported)?;
                        Some(ProxyPre::new(linked).map_err(unsupported)?)
                    }
                    None => None,
                };
                Pre::Http {
                    pooled,
                    on_demand: ProxyPre::new(linked).map_err(unsupported)?,
                }
            }
        };
        let loaded = Loaded { kind, pre };
        let mut cache = cache();
        if cache.len() >= LOADED_MAX {
            cache.clear();
        }
        cache.insert(image.digest.clone(), loaded.clone());
        Ok(loaded)
    }

    /// The component of `image` in `engine`, compiled on first use and loaded from the
    /// compiled cache after.
    fn load(
        &self,
        engine: &Engine,
        images: &ImageStore,
        image: &Image,
    ) -> Result<Component, LoadError> {
        let compiled = images.compiled_path(image, &self.engine_key);
        if compiled.exists() {
            // SAFETY: the file was written by `Component::serialize` of an engine with this
            // compatibility hash, in the node's own image store (which only the node writes),
            // and is replaced atomically, so it is never a partial or foreign artifact.
            #[allow(unsafe_code)]
            let loaded = unsafe { Component::deserialize_file(engine, &compiled) };
            match loaded {
                Ok(component) => return Ok(component),
                Err(e) => tracing::warn!(path = %compiled.display(), error = %e, "recompiling"),
            }
        }
        let bytes = images.read(image)?;
        let component =
            Component::new(engine, &bytes).map_err(|e| LoadError::Compile(format!("{e:#}")))?;
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

    /// A store in `engine` for one instance: the container's argv, environment, output,
    /// volumes and limits.
    fn store(&self, engine: &Engine, spec: &RunSpec) -> Result<Store<Host>, String> {
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
            engine,
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
        let Pre::Http { pooled, on_demand } = loaded.pre.clone() else {
            return Exit {
                code: 128,
                reason: "ContainerCannotRun",
                message: Some("the component is not an HTTP handler".into()),
            };
        };
        // The node's proxies reach the container at its pod address in process.
        let places: Vec<std::net::SocketAddrV4> = listeners
            .iter()
            .filter_map(|l| match l.local_addr() {
                Ok(std::net::SocketAddr::V4(at)) if *at.ip() == spec.pod.loopback => {
                    Some(std::net::SocketAddrV4::new(spec.pod.ip, at.port()))
                }
                _ => None,
            })
            .collect();
        let local_servers = spec.network.local.clone();
        let server = Arc::new(HttpServer {
            runtime: self.clone(),
            pooled,
            on_demand,
            spec,
        });
        let (handing, mut handed) = tokio::sync::mpsc::unbounded_channel();
        let registration = local_servers.register(
            places,
            Arc::new(LocalServer {
                server: server.clone(),
                handing,
            }),
        );
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
        let serve = |tcp: tokio::net::TcpStream| {
            let server = server.clone();
            let mut drain = drain.clone();
            async move {
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
            }
        };
        loop {
            tokio::select! {
                Some(accepted) = accepts.next() => {
                    let Ok((tcp, _)) = accepted else { continue };
                    let _ = tcp.set_nodelay(true);
                    connections.spawn(serve(tcp));
                }
                Some(tcp) = handed.recv() => {
                    connections.spawn(serve(tcp));
                }
                Some(_) = connections.join_next() => {}
                () = &mut stop => break,
            }
        }
        // No new connections; the open ones, and those handed over meanwhile, finish what
        // they are doing.
        drop(registration);
        drop(accepts);
        handed.close();
        while let Some(tcp) = handed.recv().await {
            connections.spawn(serve(tcp));
        }
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
        let mut store = match self.store(&self.engine, &spec) {
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

/// An HTTP component being served: each request gets a fresh instance, from the pool while
/// it has room.
struct HttpServer {
    runtime: Runtime,
    pooled: Option<ProxyPre<Host>>,
    on_demand: ProxyPre<Host>,
    spec: RunSpec,
}

type HttpResponse = hyper::Response<wasmtime_wasi_http::p2::body::HyperOutgoingBody>;

/// An HTTP container as the node's proxies reach it: connections go to its serving loop,
/// requests straight to its handler.
struct LocalServer {
    server: Arc<HttpServer>,
    handing: tokio::sync::mpsc::UnboundedSender<tokio::net::TcpStream>,
}

impl crate::net::local::Server for LocalServer {
    fn connection(&self, stream: tokio::net::TcpStream) -> Result<(), tokio::net::TcpStream> {
        self.handing.send(stream).map_err(|refused| refused.0)
    }

    fn request(
        &self,
        request: hyper::Request<hyper::body::Incoming>,
    ) -> futures::future::BoxFuture<'static, hyper::Response<crate::net::local::Body>> {
        use http_body_util::BodyExt;
        let server = self.server.clone();
        Box::pin(async move {
            let Ok(response) = server.handle(request).await;
            response.map(|body| {
                body.map_err(|e| Box::new(e) as crate::net::local::BoxError)
                    .boxed_unsync()
            })
        })
    }
}

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

    /// A new instance of the component, in the pool if it has room, with its store.
    async fn instantiate(
        &self,
    ) -> Result<(Store<Host>, wasmtime_wasi_http::p2::bindings::Proxy), String> {
        let usage = &self.spec.usage;
        if let Some(pre) = &self.pooled {
            let mut store = self.runtime.store(pre.engine(), &self.spec)?;
            match metered(usage, pre.instantiate_async(&mut store)).await {
                Ok(proxy) => return Ok((store, proxy)),
                Err(e) if pool_full(&e) => {
                    tracing::debug!(error = %e, "the instance pool is full; allocating on demand");
                }
                Err(e) => return Err(format!("the component failed: {e:#}")),
            }
        }
        let pre = &self.on_demand;
        let mut store = self.runtime.store(pre.engine(), &self.spec)?;
        match metered(usage, pre.instantiate_async(&mut store)).await {
            Ok(proxy) => Ok((store, proxy)),
            Err(e) => Err(format!("the component failed: {e:#}")),
        }
    }

    async fn instance(
        &self,
        request: hyper::Request<hyper::body::Incoming>,
    ) -> Result<HttpResponse, String> {
        use wasmtime_wasi_http::WasiHttpView;
        use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
        let (mut store, proxy) = self.instantiate().await?;
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
        let usage = self.spec.usage.clone();
        // The guest may keep writing the body after it sent the head: run it on its own task.
        let task = tokio::spawn(async move {
            metered(
                &usage,
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(store, request, out),
            )
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `(component)`: a component with nothing in it.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    #[tokio::test]
    async fn an_instantiation_the_pool_has_no_room_for_is_told_apart() {
        let mut pool = wasmtime::PoolingAllocationConfig::default();
        pool.total_component_instances(1);
        let mut config = engine_config();
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).unwrap();
        let component = Component::new(&engine, EMPTY_COMPONENT).unwrap();
        let pre = Linker::<()>::new(&engine)
            .instantiate_pre(&component)
            .unwrap();
        let mut first = Store::new(&engine, ());
        pre.instantiate_async(&mut first).await.unwrap();
        let mut second = Store::new(&engine, ());
        let full = pre.instantiate_async(&mut second).await.unwrap_err();
        assert!(pool_full(&full), "{full:#}");
        // Once the first instance goes, its room is taken again.
        drop(first);
        let mut third = Store::new(&engine, ());
        pre.instantiate_async(&mut third).await.unwrap();
        // Any other failure is not the pool's.
        let other = Component::new(&engine, b"\0asm\x0d\0\x01\0\xff").unwrap_err();
        assert!(!pool_full(&other), "{other:#}");
    }
}
